"""Saga definitions as synced from code: name, version, steps and the spec they hash."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString

from sagas.admin.common import ConsoleAdmin, ReadOnlyAdminMixin, pretty_json
from sagas.models import SagaDefinition

DEFINITION_FIELDS = ("name", "version", "spec_hash", "created_at", "spec_pretty")


@admin.register(SagaDefinition)
class SagaDefinitionAdmin(ReadOnlyAdminMixin, ConsoleAdmin):
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
    def spec_pretty(self, obj: SagaDefinition) -> SafeString:
        return pretty_json(obj.spec)
