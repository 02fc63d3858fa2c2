"""Admin of the hotels service: operators size hotels and set their response time; bookings are shown only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.hotels.models import Hotel, RoomBooking


@admin.register(Hotel)
class HotelAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "city", "rooms_total", "rooms_booked", "response_ms"]
    list_editable = ["rooms_total", "response_ms"]
    list_filter = ["city"]
    search_fields = ["=id", "name", "city"]
    fields = ["name", "city", "rooms_total", "rooms_booked", "response_ms"]
    readonly_fields = ["rooms_booked"]  # only bookings and cancellations move it

    def has_delete_permission(self, request: HttpRequest, obj: Hotel | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Hotel, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        # A plain save() would also write back the "rooms booked" count read when the form loaded,
        # undoing any booking or cancellation that committed in between.
        changed = [name for name in form.changed_data if name in {"name", "city", "rooms_total", "response_ms"}]
        if changed:
            obj.save(update_fields=changed)


@admin.register(RoomBooking)
class RoomBookingAdmin(admin.ModelAdmin):
    list_display = ["id", "hotel", "traveller_email", "nights", "status", "created_at", "cancelled_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "hotel__name", "traveller_email", "idempotency_key", "cancel_key"]
    list_select_related = ["hotel"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
