"""Tests of the shipping service."""

from __future__ import annotations

from typing import Any

import pytest

from participants.shipping.errors import InvalidAddress, ShipmentNotFound, ShippingError, UnserviceableAddress
from participants.shipping.models import DeliveryZone, Shipment, ShipmentStatus
from participants.shipping.services import shipment_cancel, shipment_schedule
from tests.factories import ADDRESS, DeliveryZoneFactory, ShipmentFactory


@pytest.fixture
def netherlands() -> None:
    DeliveryZoneFactory.create(country="NL", active=True)


@pytest.mark.django_db
@pytest.mark.usefixtures("netherlands")
def test_schedule_books_a_shipment_with_a_tracking_number() -> None:
    shipment = shipment_schedule(order_id=42, address=ADDRESS, idempotency_key="ship-1")

    shipment.refresh_from_db()
    assert shipment.order_id == 42
    assert shipment.address == ADDRESS
    assert shipment.status == ShipmentStatus.SCHEDULED
    assert shipment.tracking_number.startswith("TRK-")


@pytest.mark.django_db
@pytest.mark.usefixtures("netherlands")
def test_schedule_with_same_key_twice_books_once() -> None:
    first = shipment_schedule(order_id=42, address=ADDRESS, idempotency_key="ship-1")
    second = shipment_schedule(order_id=42, address=ADDRESS, idempotency_key="ship-1")

    assert second.pk == first.pk
    assert second.tracking_number == first.tracking_number
    assert Shipment.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("netherlands")
def test_schedule_repeated_after_the_zone_closed_returns_the_first_shipment() -> None:
    first = shipment_schedule(order_id=42, address=ADDRESS, idempotency_key="ship-1")
    DeliveryZone.objects.update(active=False)

    second = shipment_schedule(order_id=42, address=ADDRESS, idempotency_key="ship-1")

    assert second.pk == first.pk


@pytest.mark.django_db
@pytest.mark.usefixtures("netherlands")
def test_schedule_gives_every_shipment_its_own_tracking_number() -> None:
    shipments = [shipment_schedule(order_id=n, address=ADDRESS, idempotency_key=f"ship-{n}") for n in range(20)]

    assert len({shipment.tracking_number for shipment in shipments}) == 20


@pytest.mark.django_db
@pytest.mark.usefixtures("netherlands")
def test_schedule_accepts_a_lower_case_country_and_keeps_extra_lines() -> None:
    address = {**ADDRESS, "country": " nl ", "line2": "3rd floor"}

    shipment = shipment_schedule(order_id=42, address=address, idempotency_key="ship-1")

    assert shipment.address["country"] == "NL"
    assert shipment.address["line2"] == "3rd floor"


@pytest.mark.django_db
@pytest.mark.usefixtures("netherlands")
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ({}, "has no country, city, line1, postal_code"),
        ({**ADDRESS, "city": ""}, "has no city"),
        ({**ADDRESS, "line1": "   "}, "has no line1"),
        ({key: value for key, value in ADDRESS.items() if key != "postal_code"}, "has no postal_code"),
        ({**ADDRESS, "country": None}, "has no country"),
        ({**ADDRESS, "country": "Netherlands"}, "two-letter ISO code"),
    ],
)
def test_schedule_refuses_an_incomplete_address_and_books_nothing(address: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidAddress, match=message) as excinfo:
        shipment_schedule(order_id=42, address=address, idempotency_key="ship-1")

    assert excinfo.value.code == "invalid_address"
    assert Shipment.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("netherlands")
def test_schedule_to_a_country_without_zone_raises_unserviceable_address() -> None:
    with pytest.raises(UnserviceableAddress, match="We do not deliver to country 'FR'") as excinfo:
        shipment_schedule(order_id=42, address={**ADDRESS, "country": "FR"}, idempotency_key="ship-1")

    assert excinfo.value.code == "unserviceable_address"
    assert Shipment.objects.count() == 0


@pytest.mark.django_db
def test_schedule_to_an_inactive_zone_raises_unserviceable_address() -> None:
    DeliveryZoneFactory.create(country="NL", active=False)

    with pytest.raises(UnserviceableAddress, match="order 42 cannot ship"):
        shipment_schedule(order_id=42, address=ADDRESS, idempotency_key="ship-1")

    assert Shipment.objects.count() == 0


@pytest.mark.django_db
def test_cancel_marks_the_shipment_cancelled_and_records_the_key() -> None:
    shipment = ShipmentFactory.create()

    cancelled = shipment_cancel(shipment_id=shipment.pk, idempotency_key="cancel-1")

    shipment.refresh_from_db()
    assert cancelled.pk == shipment.pk
    assert shipment.status == ShipmentStatus.CANCELLED
    assert shipment.cancel_key == "cancel-1"
    assert shipment.cancelled_at is not None


@pytest.mark.django_db
def test_cancel_with_same_key_twice_changes_nothing_the_second_time() -> None:
    shipment = ShipmentFactory.create()
    first = shipment_cancel(shipment_id=shipment.pk, idempotency_key="cancel-1")

    second = shipment_cancel(shipment_id=shipment.pk, idempotency_key="cancel-1")

    assert second.pk == first.pk
    assert second.cancelled_at == first.cancelled_at


@pytest.mark.django_db
def test_cancel_of_cancelled_shipment_with_another_key_keeps_the_first_cancellation() -> None:
    shipment = ShipmentFactory.create()
    first = shipment_cancel(shipment_id=shipment.pk, idempotency_key="cancel-1")

    second = shipment_cancel(shipment_id=shipment.pk, idempotency_key="cancel-2")

    assert second.cancel_key == "cancel-1"
    assert second.cancelled_at == first.cancelled_at


@pytest.mark.django_db
def test_cancel_of_missing_shipment_raises_shipment_not_found() -> None:
    with pytest.raises(ShipmentNotFound, match="Shipment 999 does not exist") as excinfo:
        shipment_cancel(shipment_id=999, idempotency_key="cancel-1")

    assert excinfo.value.code == "shipment_not_found"


def test_shipping_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidAddress, UnserviceableAddress, ShipmentNotFound]

    assert all(issubclass(error, ShippingError) for error in errors)
    assert [error.code for error in errors] == [
        "invalid_address",
        "unserviceable_address",
        "shipment_not_found",
    ]
