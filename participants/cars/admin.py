"""Admin of the car rental service: operators size the fleet and set its response time; rentals are shown only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.cars.models import CarClass, CarRental


@admin.register(CarClass)
class CarClassAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "city", "cars_total", "cars_rented", "response_ms"]
    list_editable = ["cars_total", "response_ms"]
    list_filter = ["city"]
    search_fields = ["=id", "name", "city"]
    fields = ["name", "city", "cars_total", "cars_rented", "response_ms"]
    readonly_fields = ["cars_rented"]  # only rentals and returns move it

    def has_delete_permission(self, request: HttpRequest, obj: CarClass | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: CarClass, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        # A plain save() would also write back the "cars rented" count read when the form loaded,
        # undoing any rental or return that committed in between.
        changed = [name for name in form.changed_data if name in {"name", "city", "cars_total", "response_ms"}]
        if changed:
            obj.save(update_fields=changed)


@admin.register(CarRental)
class CarRentalAdmin(admin.ModelAdmin):
    list_display = ["id", "car_class", "traveller_email", "days", "status", "created_at", "returned_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "car_class__name", "traveller_email", "idempotency_key", "return_key"]
    list_select_related = ["car_class"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
