"""A small shop (stock, an account, a delivery zone) for PlaceOrder runs on the real worker."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from participants.inventory.models import StockItem
from participants.notifications.models import Notification
from participants.orders.models import Order, OrderStatus
from participants.payments.models import Account, Payment, Refund
from participants.shipping.models import Shipment, ShipmentStatus
from tests.factories import AccountFactory, DeliveryZoneFactory, StockItemFactory, order_payload


class Shop:
    def __init__(self) -> None:
        self.mug = StockItemFactory(sku="mug", available=10)
        self.tee = StockItemFactory(sku="tee", available=5)
        self.account = AccountFactory(balance=Decimal("100.00"))
        DeliveryZoneFactory(country="NL")

    def payload(self, **overrides: Any) -> dict[str, Any]:
        return order_payload(**{"account_id": self.account.pk, **overrides})


def ledger() -> dict[str, Any]:
    """Everything the participants hold that a saga may change, to compare before and after."""
    return {
        "stock": {item.sku: (item.available, item.reserved) for item in StockItem.objects.order_by("sku")},
        "balances": {account.pk: account.balance for account in Account.objects.order_by("pk")},
        "placed_orders": Order.objects.filter(status=OrderStatus.PLACED).count(),
        "scheduled_shipments": Shipment.objects.filter(status=ShipmentStatus.SCHEDULED).count(),
        "money_out": sum((p.amount for p in Payment.objects.all()), Decimal(0))
        - sum((r.amount for r in Refund.objects.all()), Decimal(0)),
    }


def effect_counts() -> dict[str, int]:
    return {
        "orders": Order.objects.count(),
        "payments": Payment.objects.count(),
        "refunds": Refund.objects.count(),
        "shipments": Shipment.objects.count(),
        "notifications": Notification.objects.count(),
    }
