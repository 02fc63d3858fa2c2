"""Admin of the fraud service: operators edit the blocked list; screenings are shown only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.fraud.models import BlockedTraveller, Screening


@admin.register(BlockedTraveller)
class BlockedTravellerAdmin(admin.ModelAdmin):
    list_display = ["email", "reason", "created_at"]
    search_fields = ["email", "reason"]
    list_filter = ["created_at"]


@admin.register(Screening)
class ScreeningAdmin(admin.ModelAdmin):
    list_display = ["id", "traveller_email", "amount", "verdict", "created_at"]
    list_filter = ["verdict", "created_at"]
    search_fields = ["=id", "traveller_email", "idempotency_key"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
