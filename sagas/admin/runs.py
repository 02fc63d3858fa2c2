"""Saga runs in the admin: the list a person on call starts from, the run page, and the actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from sagas.admin import live, views
from sagas.admin.common import ConsoleAdmin, ReadOnlyAdminMixin, badge
from sagas.models import SagaRun
from sagas.selectors import awaiting_person, current_step, humanize_seconds, run_duration, stuck


class AttentionFilter(admin.SimpleListFilter):
    """The runs a person is needed for, first in the sidebar."""

    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("person", "Awaiting a person (failed)"), ("stuck", "Stuck (no progress beyond the lease)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SagaRun]) -> QuerySet[SagaRun]:
        if self.value() == "person":
            return awaiting_person(queryset)
        if self.value() == "stuck":
            return stuck(queryset)
        return queryset


@admin.register(SagaRun)
class SagaRunAdmin(ReadOnlyAdminMixin, ConsoleAdmin):
    list_display = ["short_id", "saga", "status_badge", "age", "duration", "step_now", "attempts", "last_change"]
    list_filter = [AttentionFilter, "status", "saga_name", "version"]
    show_facets = admin.ShowFacets.ALWAYS
    search_fields = ["=id", "=idempotency_key", "=correlation_id", "search_text"]
    search_help_text = "Run id, idempotency key or correlation id (exact), or a value the saga marks searchable."
    date_hierarchy = "created_at"
    list_per_page = 100
    actions = ["retry_runs", "resolve_runs", "cancel_runs"]
    change_form_template = "admin/sagas/sagarun/run.html"
    change_list_template = "admin/sagas/sagarun/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[SagaRun]:
        return super().get_queryset(request).prefetch_related("steps")

    # --- list columns ---

    @admin.display(description="run", ordering="id")
    def short_id(self, obj: SagaRun) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="saga", ordering="saga_name")
    def saga(self, obj: SagaRun) -> str:
        return f"{obj.saga_name} v{obj.version}"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: SagaRun) -> SafeString:
        return badge(obj.status)

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: SagaRun) -> str:
        return humanize_seconds((timezone.now() - obj.created_at).total_seconds())

    @admin.display(description="duration")
    def duration(self, obj: SagaRun) -> str:
        return humanize_seconds(run_duration(obj).total_seconds())

    @admin.display(description="step")
    def step_now(self, obj: SagaRun) -> SafeString | str:
        step = current_step(obj.steps.all())
        return format_html("{} {}", step.name, badge(step.status, step=True)) if step else "-"

    @admin.display(description="attempts")
    def attempts(self, obj: SagaRun) -> str:
        step = current_step(obj.steps.all())
        if step is None:
            return "-"
        return f"{step.attempts}" + (f" + {step.compensation_attempts} undo" if step.compensation_attempts else "")

    @admin.display(description="last change", ordering="updated_at")
    def last_change(self, obj: SagaRun) -> str:
        return humanize_seconds((timezone.now() - obj.updated_at).total_seconds()) + " ago"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = {
            "awaiting_person": awaiting_person().count(),
            "stuck_runs": stuck().count(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    # --- the run page ---

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        run = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if run is not None:
            context.update(live.run_context(self, request, run, live.events_before_param(request)))
        return super().change_view(request, object_id, form_url, extra_context=context)

    # --- actions: permissions, pages and bulk versions ---

    def has_permission_to(self, request: HttpRequest, action: str) -> bool:
        return views.may(request, action)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return self.has_permission_to(request, "retry")

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return self.has_permission_to(request, "resolve")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self.has_permission_to(request, "cancel")

    def has_signal_permission(self, request: HttpRequest) -> bool:
        return self.has_permission_to(request, "signal")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path("health/", wrap(lambda request: views.health_view(self, request)), name="sagas_health"),
            path(
                "<path:object_id>/live/",
                wrap(lambda request, object_id: live.live_view(self, request, object_id)),
                name="sagas_sagarun_live",
            ),
            *(
                path(
                    f"<path:object_id>/{name}/",
                    wrap(lambda request, object_id, name=name: views.run_action_view(self, request, object_id, name)),
                    name=f"sagas_sagarun_{name}",
                )
                for name in views.ACTIONS
            ),
        ]
        return own + super().get_urls()

    @admin.action(permissions=["retry"], description="Retry selected runs (failed, stuck or parked)…")
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[SagaRun]) -> HttpResponse | None:
        return views.bulk_action(self, request, queryset, "retry")

    @admin.action(permissions=["resolve"], description="Resolve every failed compensation of selected runs…")
    def resolve_runs(self, request: HttpRequest, queryset: QuerySet[SagaRun]) -> HttpResponse | None:
        return views.bulk_action(self, request, queryset, "resolve")

    @admin.action(permissions=["cancel"], description="Cancel selected runs (compensate what completed)…")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[SagaRun]) -> HttpResponse | None:
        return views.bulk_action(self, request, queryset, "cancel")
