"""Admin of the inventory service: an operator restocks items; reservations are only shown."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.inventory.models import Reservation, ReservationLine, StockItem


class ReadOnlyAdminMixin:
    """Shows rows the service writes without letting anyone add, change or delete them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StockItem)
class StockItemAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "available", "reserved"]
    list_editable = ["available"]
    search_fields = ["sku", "name"]
    fields = ["sku", "name", "available", "reserved"]

    def get_readonly_fields(self, request: HttpRequest, obj: StockItem | None = None) -> list[str]:
        # Only reservations move units into "reserved"; the SKU is what reservation lines point at.
        return ["reserved"] if obj is None else ["sku", "reserved"]

    def has_delete_permission(self, request: HttpRequest, obj: StockItem | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: StockItem, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        # A plain save() would also write back the "reserved" count read when the form loaded,
        # undoing any reservation that committed in between.
        changed = [name for name in form.changed_data if name in {"name", "available"}]
        if changed:
            obj.save(update_fields=changed)


class ReservationLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ReservationLine
    fields = ["item", "quantity"]
    extra = 0


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "status", "created_at", "released_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "idempotency_key", "release_key"]
    date_hierarchy = "created_at"
    inlines = [ReservationLineInline]


@admin.register(ReservationLine)
class ReservationLineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "reservation", "item", "quantity"]
    list_filter = ["reservation__status"]
    search_fields = ["item__sku", "=reservation__id"]
    list_select_related = ["reservation", "item"]
