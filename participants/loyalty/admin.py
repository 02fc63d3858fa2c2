"""Admin of the loyalty service: operators flip the outage switch; points and entries are read-only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from participants.loyalty.models import LoyaltyAccount, PointsEntry


class LoyaltyAccountForm(forms.ModelForm):
    def clean_customer_email(self) -> str:
        # Awards match addresses without regard to case by storing them lower-cased; so does the admin.
        return str(self.cleaned_data["customer_email"]).strip().lower()


class ReadOnlyAdminMixin:
    """Shows rows the service writes without letting anyone add, change or delete them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PointsEntryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PointsEntry
    fields = ["points", "reason", "idempotency_key", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0


@admin.register(LoyaltyAccount)
class LoyaltyAccountAdmin(admin.ModelAdmin):
    form = LoyaltyAccountForm
    list_display = ["customer_email", "points", "service_down", "updated_at"]
    list_editable = ["service_down"]
    list_filter = ["service_down"]
    search_fields = ["customer_email"]
    fields = ["customer_email", "points", "service_down", "updated_at"]
    inlines = [PointsEntryInline]

    def get_readonly_fields(self, request: HttpRequest, obj: LoyaltyAccount | None = None) -> list[str]:
        # Only awards move the points, so they always equal the sum of the entries. An operator may
        # open an account ahead of its first award, to switch the service down for that customer.
        return ["points", "updated_at"] if obj is None else ["customer_email", "points", "updated_at"]

    def has_delete_permission(self, request: HttpRequest, obj: LoyaltyAccount | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LoyaltyAccount, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        # A plain save() would also write back the points read when the form loaded, undoing any
        # award that committed in between.
        if "service_down" in form.changed_data:
            obj.save(update_fields=["service_down", "updated_at"])


@admin.register(PointsEntry)
class PointsEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "account", "points", "reason", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["=id", "account__customer_email", "reason", "idempotency_key"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"
