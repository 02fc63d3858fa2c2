"""Writes of the inventory service: reserve stock and release it, both idempotent on their key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from participants.inventory.errors import InvalidReservation, OutOfStock, ReservationNotFound, UnknownSku
from participants.inventory.models import Reservation, ReservationLine, ReservationStatus, StockItem


def stock_reserve(*, lines: Sequence[Mapping[str, Any]], idempotency_key: str) -> Reservation:
    """Move the requested units from available to reserved, for every line or for none.

    ``lines`` are ``{"sku", "quantity"}`` dicts; lines with the same SKU are added up. A repeat
    with the same ``idempotency_key`` returns the first call's reservation and moves nothing.
    Raises ``InvalidReservation``, ``UnknownSku`` or ``OutOfStock``, having reserved nothing.
    """
    wanted = _sum_lines(lines)
    with transaction.atomic():
        # Locking in SKU order means two reservations of overlapping SKUs queue, never deadlock.
        items = list(StockItem.objects.select_for_update().filter(sku__in=wanted).order_by("sku"))
        # Looked up after the locks: a concurrent call with this key that held them has committed by now.
        existing = Reservation.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing

        unknown = sorted(set(wanted) - {item.sku for item in items})
        if unknown:
            names = ", ".join(repr(sku) for sku in unknown)
            raise UnknownSku(f"SKU {names} is not stocked." if len(unknown) == 1 else f"SKUs {names} are not stocked.")
        short = [item for item in items if item.available < wanted[item.sku]]
        if short:
            raise OutOfStock(
                "; ".join(
                    f"SKU {item.sku!r} has {item.available} available, {wanted[item.sku]} requested" for item in short
                )
                + "."
            )

        try:
            # A savepoint, so losing the race to a concurrent call with the same key (but other
            # SKUs, hence other locks) leaves the outer transaction usable to read the winner's row.
            with transaction.atomic():
                reservation = Reservation.objects.create(idempotency_key=idempotency_key)
        except IntegrityError:
            existing = Reservation.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing

        ReservationLine.objects.bulk_create(
            ReservationLine(reservation=reservation, item=item, quantity=wanted[item.sku]) for item in items
        )
        for item in items:
            item.available -= wanted[item.sku]
            item.reserved += wanted[item.sku]
        StockItem.objects.bulk_update(items, ["available", "reserved"])
        return reservation


def stock_release(*, reservation_id: int, idempotency_key: str) -> Reservation:
    """Move a reservation's units back from reserved to available, once.

    Releasing an already released reservation returns it unchanged.
    Raises ``ReservationNotFound`` when no reservation has ``reservation_id``.
    """
    with transaction.atomic():
        reservation = Reservation.objects.select_for_update().filter(pk=reservation_id).first()
        if reservation is None:
            raise ReservationNotFound(f"Reservation {reservation_id} does not exist, so it cannot be released.")
        if reservation.status == ReservationStatus.RELEASED:
            return reservation

        held = {line.item_id: line.quantity for line in reservation.lines.all()}
        items = list(StockItem.objects.select_for_update().filter(pk__in=held).order_by("sku"))
        for item in items:
            item.reserved -= held[item.pk]
            item.available += held[item.pk]
        StockItem.objects.bulk_update(items, ["available", "reserved"])

        reservation.status = ReservationStatus.RELEASED
        reservation.release_key = idempotency_key
        reservation.released_at = timezone.now()
        reservation.save(update_fields=["status", "release_key", "released_at"])
        return reservation


def _sum_lines(lines: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    if not lines:
        raise InvalidReservation("A reservation needs at least one line.")
    wanted: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        sku = line.get("sku")
        if not isinstance(sku, str) or not sku:
            raise InvalidReservation(f"Line {number} has no SKU.")
        quantity = line.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise InvalidReservation(f"Line {number} (SKU {sku!r}) has quantity {quantity!r}; it must be at least 1.")
        wanted[sku] = wanted.get(sku, 0) + quantity
    return wanted
