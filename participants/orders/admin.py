"""Admin of the orders service: orders are written by the service, so the admin only shows them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.orders.models import Order, OrderLine


class ReadOnlyAdminMixin:
    """Shows rows the service writes without letting anyone add, change or delete them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OrderLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderLine
    fields = ["sku", "quantity", "unit_price", "subtotal"]
    readonly_fields = ["subtotal"]
    extra = 0


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer_email", "total", "currency", "status", "created_at", "cancelled_at"]
    list_filter = ["status", "currency", "created_at"]
    search_fields = ["=id", "customer_email", "idempotency_key", "cancel_key"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]


@admin.register(OrderLine)
class OrderLineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "order", "sku", "quantity", "unit_price"]
    list_filter = ["order__status"]
    search_fields = ["sku", "=order__id"]
    list_select_related = ["order"]
