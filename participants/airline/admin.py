"""Admin of the airline service: operators size flights and set their response time; holds are shown only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.airline.models import Flight, SeatHold


@admin.register(Flight)
class FlightAdmin(admin.ModelAdmin):
    list_display = ["number", "departs_on", "seats_total", "seats_held", "response_ms"]
    list_editable = ["seats_total", "response_ms"]
    list_filter = ["departs_on"]
    search_fields = ["number"]
    date_hierarchy = "departs_on"
    fields = ["number", "departs_on", "seats_total", "seats_held", "response_ms"]

    def get_readonly_fields(self, request: HttpRequest, obj: Flight | None = None) -> list[str]:
        # Only holds and releases move "seats held"; the number is what travellers book by.
        return ["seats_held"] if obj is None else ["number", "seats_held"]

    def has_delete_permission(self, request: HttpRequest, obj: Flight | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Flight, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        # A plain save() would also write back the "seats held" count read when the form loaded,
        # undoing any hold or release that committed in between.
        changed = [name for name in form.changed_data if name in {"departs_on", "seats_total", "response_ms"}]
        if changed:
            obj.save(update_fields=changed)


@admin.register(SeatHold)
class SeatHoldAdmin(admin.ModelAdmin):
    list_display = ["id", "flight", "traveller_email", "status", "created_at", "released_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "flight__number", "traveller_email", "idempotency_key", "release_key"]
    list_select_related = ["flight"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
