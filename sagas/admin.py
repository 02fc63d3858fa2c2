"""Read-only admin for saga definitions, runs, their steps and their event log."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from sagas.models import SagaDefinition, SagaEvent, SagaRun, SagaStepRun


def pretty_json(value: Any) -> str:
    return format_html("<pre style='margin:0'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


class ReadOnlyAdminMixin:
    """Machine-written rows: visible to staff with the view permission, changed only by the framework."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


DEFINITION_FIELDS = ("name", "version", "spec_hash", "created_at", "spec_pretty")


@admin.register(SagaDefinition)
class SagaDefinitionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "version", "step_names", "short_hash", "created_at"]
    list_filter = ["name"]
    search_fields = ["name"]
    fields = DEFINITION_FIELDS
    readonly_fields = DEFINITION_FIELDS

    @admin.display(description="steps")
    def step_names(self, obj: SagaDefinition) -> str:
        return " → ".join(step["name"] for step in obj.spec.get("steps", []))

    @admin.display(description="spec hash")
    def short_hash(self, obj: SagaDefinition) -> str:
        return obj.spec_hash[:12]

    @admin.display(description="spec")
    def spec_pretty(self, obj: SagaDefinition) -> str:
        return pretty_json(obj.spec)


STEP_FIELDS = (
    "index",
    "name",
    "status",
    "attempts",
    "compensation_attempts",
    "error_message",
    "failed_attempts",
    "task_id",
    "compensation_task_id",
    "started_at",
    "finished_at",
    "compensated_at",
)


class SagaStepRunInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SagaStepRun
    extra = 0
    can_delete = False
    ordering = ["index"]
    fields = STEP_FIELDS
    readonly_fields = STEP_FIELDS

    @admin.display(description="failed attempts")
    def failed_attempts(self, obj: SagaStepRun) -> str:
        if not obj.failures:
            return "-"
        return ", ".join(f"{f['kind'][0]}{f['attempt']} {f['class']}" for f in obj.failures)

    @admin.display(description="last error")
    def error_message(self, obj: SagaStepRun) -> str:
        if not obj.error:
            return "-"
        return f"{obj.error.get('class', '')}: {obj.error.get('message', '')}"


EVENT_FIELDS = ("seq", "created_at", "type", "step", "summary", "actor")


class SagaEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SagaEvent
    fk_name = "run"
    extra = 0
    can_delete = False
    ordering = ["seq"]
    fields = EVENT_FIELDS
    readonly_fields = EVENT_FIELDS

    @admin.display(description="details")
    def summary(self, obj: SagaEvent) -> str:
        return json.dumps(obj.data, sort_keys=True)[:500]


RUN_FIELDS = (
    "id",
    "saga_name",
    "version",
    "status",
    "idempotency_key",
    "correlation_id",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "deadline",
    "error_pretty",
    "payload_pretty",
)


@admin.register(SagaRun)
class SagaRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "saga_name", "version", "status", "age", "current_step", "updated_at"]
    list_filter = ["status", "saga_name"]
    search_fields = ["=id", "=idempotency_key", "=correlation_id"]
    date_hierarchy = "created_at"
    list_select_related = ["definition"]
    inlines = [SagaStepRunInline, SagaEventInline]
    fields = RUN_FIELDS
    readonly_fields = RUN_FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet[SagaRun]:
        return super().get_queryset(request).prefetch_related("steps")

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: SagaRun) -> str:
        return timesince(obj.created_at, timezone.now())

    @admin.display(description="current or failed step")
    def current_step(self, obj: SagaRun) -> str:
        interesting = ("running", "failed", "compensating", "compensation_failed")
        for step in obj.steps.all():
            if step.status in interesting:
                return f"{step.name} ({step.status})"
        return "-"

    @admin.display(description="error")
    def error_pretty(self, obj: SagaRun) -> str:
        return pretty_json(obj.error) if obj.error else "-"

    @admin.display(description="payload")
    def payload_pretty(self, obj: SagaRun) -> str:
        return pretty_json(obj.payload)
