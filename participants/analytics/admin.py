"""Admin of the analytics service: counts and the messages behind them are written by the service, so shown only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.analytics.models import CountedMessage, SagaOutcomeCount


class ReadOnlyAdminMixin:
    """Shows rows the service writes without letting anyone add, change or delete them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SagaOutcomeCount)
class SagaOutcomeCountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["day", "saga_name", "outcome", "count"]
    list_filter = ["outcome", "saga_name", "day"]
    search_fields = ["saga_name"]
    date_hierarchy = "day"


@admin.register(CountedMessage)
class CountedMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["idempotency_key", "outcome_count", "created_at"]
    list_filter = ["outcome_count__outcome", "created_at"]
    search_fields = ["idempotency_key", "outcome_count__saga_name"]
    list_select_related = ["outcome_count"]
    date_hierarchy = "created_at"
