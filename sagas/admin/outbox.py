"""Outbox messages and receipts: what each run announced, whether it went out, and who received it."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from sagas import outbox
from sagas.admin.common import ConsoleAdmin, ReadOnlyAdminMixin, pretty_json
from sagas.masking import masked
from sagas.models import SagaOutbox, SagaReceipt

OUTBOX_FIELDS = (
    "id", "topic", "run_link", "event", "created_at", "published_at", "attempts", "receivers", "redeliveries",
    "settled_at", "message_pretty",
)  # fmt: skip


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("no", "Not yet (waiting for the relay)"),
            ("yes", "Published"),
            ("redelivered", "Published again (a delivery was lost)"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SagaOutbox]) -> QuerySet[SagaOutbox]:
        if self.value() == "no":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(published_at__isnull=False)
        if self.value() == "redelivered":
            return queryset.filter(redeliveries__gt=0)
        return queryset


@admin.register(SagaOutbox)
class SagaOutboxAdmin(ReadOnlyAdminMixin, ConsoleAdmin):
    list_display = ["topic", "run_link", "created_at", "published_at", "attempts", "redeliveries"]
    list_filter = [PublishedFilter]
    search_fields = ["=id", "topic", "=run__id"]
    date_hierarchy = "created_at"
    fields = OUTBOX_FIELDS
    readonly_fields = OUTBOX_FIELDS
    list_select_related = ["run"]
    actions = ["relay_now"]

    @admin.display(description="run")
    def run_link(self, obj: SagaOutbox) -> SafeString:
        url = reverse("admin:sagas_sagarun_change", args=[obj.run_id])
        return format_html('<a href="{}">{}</a>', url, obj.run_id)

    @admin.display(description="message")
    def message_pretty(self, obj: SagaOutbox) -> SafeString:
        return pretty_json(masked(obj.message))

    @admin.action(description="Relay the selected unpublished messages now", permissions=["retry"])
    def relay_now(self, request: HttpRequest, queryset: QuerySet[SagaOutbox]) -> None:
        ids = list(queryset.filter(published_at__isnull=True).values_list("pk", flat=True))
        published = outbox.relay(ids)
        level = messages.SUCCESS if published == len(ids) else messages.WARNING
        self.message_user(request, f"Relayed {published} of {len(ids)} unpublished message(s).", level)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sagas.retry_sagarun"))


@admin.register(SagaReceipt)
class SagaReceiptAdmin(ReadOnlyAdminMixin, ConsoleAdmin):
    list_display = ["receiver", "message_id", "received_at", "duplicates"]
    list_filter = ["receiver"]
    search_fields = ["=message_id", "receiver"]
    date_hierarchy = "received_at"
