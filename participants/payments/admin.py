"""Admin of the payments service: operators flip the card and refund-gateway switches; money is read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from participants.payments.models import Account, Payment, Refund


class ReadOnlyAdminMixin:
    """Shows rows the service writes without letting anyone add, change or delete them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["id", "holder", "email", "balance", "card_status", "refund_gateway_down"]
    list_editable = ["refund_gateway_down"]
    list_filter = ["card_status", "refund_gateway_down"]
    search_fields = ["=id", "holder", "email"]
    fields = ["holder", "email", "balance", "card_status", "refund_gateway_down"]

    def get_readonly_fields(self, request: HttpRequest, obj: Account | None = None) -> list[str]:
        # Only charges and refunds move the balance, so the payments stay accounted for.
        return [] if obj is None else ["holder", "email", "balance"]

    def has_delete_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Account, form: Any, change: bool) -> None:
        if not change:
            obj.save()
            return
        # A plain save() would also write back the balance read when the form loaded, undoing any
        # charge or refund that committed in between.
        changed = [name for name in form.changed_data if name in {"card_status", "refund_gateway_down"}]
        if changed:
            obj.save(update_fields=changed)


class RefundInline(ReadOnlyAdminMixin, admin.StackedInline):
    model = Refund
    fields = ["amount", "idempotency_key", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "account", "amount", "status", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "idempotency_key", "account__holder", "account__email"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"
    inlines = [RefundInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "payment", "amount", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["=id", "=payment__id", "idempotency_key", "payment__account__holder"]
    list_select_related = ["payment"]
    date_hierarchy = "created_at"
