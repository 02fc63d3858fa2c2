"""Admin of the shipping service: an operator manages delivery zones; shipments are shown only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.shipping.models import DeliveryZone, Shipment


@admin.register(DeliveryZone)
class DeliveryZoneAdmin(admin.ModelAdmin):
    list_display = ["country", "active"]
    list_editable = ["active"]
    list_filter = ["active"]
    search_fields = ["country"]


@admin.register(Shipment)
class ShipmentAdmin(admin.ModelAdmin):
    list_display = ["id", "tracking_number", "order_id", "status", "created_at", "cancelled_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "tracking_number", "=order_id", "idempotency_key", "cancel_key"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
