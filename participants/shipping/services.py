"""Writes of the shipping service: schedule a shipment and cancel it, both idempotent on their key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from participants.shipping.errors import InvalidAddress, ShipmentNotFound, UnserviceableAddress
from participants.shipping.models import DeliveryZone, Shipment, ShipmentStatus

REQUIRED_ADDRESS_FIELDS = ("country", "city", "line1", "postal_code")


def shipment_schedule(*, order_id: int, address: Mapping[str, Any], idempotency_key: str) -> Shipment:
    """Book a shipment of an order to ``address`` and give it a tracking number.

    A repeat with the same ``idempotency_key`` returns the first call's shipment and books nothing.
    Raises ``InvalidAddress`` when a required address field is missing or blank, and
    ``UnserviceableAddress`` when no active delivery zone covers the country.
    """
    with transaction.atomic():
        existing = Shipment.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing

        cleaned = _clean_address(address)
        country = cleaned["country"]
        if not DeliveryZone.objects.filter(country=country, active=True).exists():
            raise UnserviceableAddress(f"We do not deliver to country {country!r}, so order {order_id} cannot ship.")

        try:
            # A savepoint, so losing a race on the key leaves the outer transaction usable.
            with transaction.atomic():
                return Shipment.objects.create(order_id=order_id, address=cleaned, idempotency_key=idempotency_key)
        except IntegrityError:
            existing = Shipment.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing


def shipment_cancel(*, shipment_id: int, idempotency_key: str) -> Shipment:
    """Cancel a shipment; cancelling an already cancelled shipment returns it unchanged.

    Raises ``ShipmentNotFound`` when no shipment has ``shipment_id``.
    """
    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().filter(pk=shipment_id).first()
        if shipment is None:
            raise ShipmentNotFound(f"Shipment {shipment_id} does not exist, so it cannot be cancelled.")
        if shipment.status == ShipmentStatus.CANCELLED:
            return shipment
        shipment.status = ShipmentStatus.CANCELLED
        shipment.cancel_key = idempotency_key
        shipment.cancelled_at = timezone.now()
        shipment.save(update_fields=["status", "cancel_key", "cancelled_at"])
        return shipment


def _clean_address(address: Mapping[str, Any]) -> dict[str, Any]:
    missing = [
        name for name in REQUIRED_ADDRESS_FIELDS if not isinstance(address.get(name), str) or not address[name].strip()
    ]
    if missing:
        raise InvalidAddress(f"The shipping address has no {', '.join(missing)}.")
    cleaned = dict(address)
    country = address["country"].strip().upper()
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        raise InvalidAddress(
            f"The shipping address has country {address['country']!r}; use its two-letter ISO code, e.g. 'NL'."
        )
    cleaned["country"] = country
    return cleaned
