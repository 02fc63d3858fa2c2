"""Tests of the participant services' admin: service-written rows are read-only, operator switches are not."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import models
from django.test import Client, RequestFactory
from django.urls import reverse

from participants.inventory.models import StockItem
from participants.inventory.services import stock_reserve
from participants.payments.models import Account
from participants.payments.services import payment_charge
from tests import factories

# Every participant app with models, and how many it has; a new model also needs a row in every_row and, if only
# its service writes it, a place in READ_ONLY.
SERVICES = {
    "orders": 2,
    "inventory": 3,
    "payments": 3,
    "shipping": 2,
    "notifications": 2,
    "fraud": 2,
    "airline": 2,
    "hotels": 2,
    "cars": 2,
    "loyalty": 2,
    "analytics": 2,
}
READ_ONLY = [
    "orders.Order",
    "orders.OrderLine",
    "inventory.Reservation",
    "inventory.ReservationLine",
    "payments.Payment",
    "payments.Refund",
    "shipping.Shipment",
    "notifications.Notification",
    "fraud.Screening",
    "airline.SeatHold",
    "hotels.RoomBooking",
    "cars.CarRental",
    "loyalty.PointsEntry",
    "analytics.SagaOutcomeCount",
    "analytics.CountedMessage",
]


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def participant_models() -> list[type[models.Model]]:
    return [model for model in apps.get_models() if model.__module__.startswith("participants.")]


@pytest.fixture
def every_row() -> None:
    factories.OrderLineFactory.create()
    factories.ReservationLineFactory.create()
    factories.RefundFactory.create()
    factories.DeliveryZoneFactory.create()
    factories.ShipmentFactory.create()
    factories.SuppressionFactory.create()
    factories.NotificationFactory.create()
    factories.BlockedTravellerFactory.create()
    factories.ScreeningFactory.create()
    factories.SeatHoldFactory.create()
    factories.RoomBookingFactory.create()
    factories.CarRentalFactory.create()
    factories.PointsEntryFactory.create()
    factories.CountedMessageFactory.create()


def test_every_model_of_the_services_is_registered() -> None:
    assert Counter(model._meta.app_label for model in participant_models()) == SERVICES
    assert all(admin.site.is_registered(model) for model in participant_models())


@pytest.mark.django_db
@pytest.mark.usefixtures("every_row")
def test_every_changelist_and_change_page_renders_and_add_pages_unless_read_only(admin_client: Client) -> None:
    for model in participant_models():
        assert admin_client.get(admin_url(model, "changelist")).status_code == 200, model
        row = model._default_manager.first()
        assert row is not None, model
        assert admin_client.get(admin_url(model, "change", row.pk)).status_code == 200, model
        add = 403 if model._meta.label in READ_ONLY else 200
        assert admin_client.get(admin_url(model, "add")).status_code == add, model


@pytest.mark.django_db
@pytest.mark.parametrize("label", READ_ONLY)
def test_rows_the_services_write_cannot_be_added_changed_or_deleted(
    label: str, rf: RequestFactory, admin_user: Any
) -> None:
    model_admin = admin.site.get_model_admin(apps.get_model(label))
    request = rf.get("/")
    request.user = admin_user

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


@pytest.mark.django_db
def test_operator_toggles_the_refund_gateway_from_the_account_list(admin_client: Client) -> None:
    account = factories.AccountFactory.create(balance=Decimal("100.00"))
    payment_charge(account_id=account.pk, amount="30.00", idempotency_key="pay-1")

    response = admin_client.post(
        admin_url(Account, "changelist"),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(account.pk),
            "form-0-refund_gateway_down": "on",
            "_save": "Save",
        },
    )

    account.refresh_from_db()
    assert response.status_code == 302
    assert account.refund_gateway_down is True
    assert account.balance == Decimal("70.00")


@pytest.mark.django_db
def test_operator_restocking_an_item_keeps_its_reserved_units(admin_client: Client) -> None:
    item = factories.StockItemFactory.create(sku="mug", available=10)
    stock_reserve(lines=[{"sku": "mug", "quantity": 4}], idempotency_key="r-1")

    response = admin_client.post(
        admin_url(StockItem, "changelist"),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(item.pk),
            "form-0-available": "50",
            "_save": "Save",
        },
    )

    item.refresh_from_db()
    assert response.status_code == 302
    assert (item.available, item.reserved) == (50, 4)
