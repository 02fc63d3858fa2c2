"""Writes of the airline service: hold a seat and release it, both idempotent on their key."""

from __future__ import annotations

import time

from django.db import IntegrityError, transaction
from django.utils import timezone

from participants.airline.errors import FlightNotFound, HoldNotFound, NoSeatsLeft
from participants.airline.models import Flight, HoldStatus, SeatHold


def seat_hold(*, flight_number: str, traveller_email: str, idempotency_key: str) -> SeatHold:
    """Hold one seat on a flight for a traveller.

    Waits the flight's ``response_ms`` first, holding no lock, as a remote airline would. A repeat with
    the same ``idempotency_key`` returns the first call's hold and holds nothing more. Raises
    ``FlightNotFound`` or ``NoSeatsLeft``, having held nothing.
    """
    started_at = timezone.now()
    existing = SeatHold.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    response_ms = Flight.objects.filter(number=flight_number).values_list("response_ms", flat=True).first()
    if response_ms is None:
        raise FlightNotFound(f"Flight {flight_number!r} does not exist, so no seat can be held on it.")
    _respond_after(response_ms)

    with transaction.atomic():
        flight = Flight.objects.select_for_update().filter(number=flight_number).first()
        # Looked up after the lock: a concurrent call with this key that held it has committed by
        # now, so a repeat never fails with no_seats_left because of its own first hold.
        existing = SeatHold.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if flight is None:
            raise FlightNotFound(f"Flight {flight_number!r} does not exist, so no seat can be held on it.")
        if flight.seats_held >= flight.seats_total:
            raise NoSeatsLeft(f"Flight {flight.number} on {flight.departs_on} has all {flight.seats_total} seats held.")

        try:
            # A savepoint, so losing a race on the key leaves the outer transaction usable.
            with transaction.atomic():
                hold = SeatHold.objects.create(
                    flight=flight,
                    traveller_email=traveller_email,
                    idempotency_key=idempotency_key,
                    started_at=started_at,
                    finished_at=timezone.now(),
                )
        except IntegrityError:
            existing = SeatHold.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing
        flight.seats_held += 1
        flight.save(update_fields=["seats_held"])
        return hold


def seat_release(*, hold_id: int, idempotency_key: str) -> SeatHold:
    """Put a held seat back on sale, once.

    Waits the flight's ``response_ms`` first, holding no lock. Releasing an already released hold
    returns it unchanged. Raises ``HoldNotFound`` when no hold has ``hold_id``.
    """
    hold = SeatHold.objects.select_related("flight").filter(pk=hold_id).first()
    if hold is None:
        raise HoldNotFound(f"Seat hold {hold_id} does not exist, so it cannot be released.")
    if hold.status == HoldStatus.RELEASED:
        return hold
    _respond_after(hold.flight.response_ms)

    with transaction.atomic():
        hold = SeatHold.objects.select_for_update().get(pk=hold_id)
        if hold.status == HoldStatus.RELEASED:
            return hold
        flight = Flight.objects.select_for_update().get(pk=hold.flight_id)
        flight.seats_held -= 1
        flight.save(update_fields=["seats_held"])

        hold.status = HoldStatus.RELEASED
        hold.release_key = idempotency_key
        hold.released_at = timezone.now()
        hold.save(update_fields=["status", "release_key", "released_at"])
        return hold


def _respond_after(response_ms: int) -> None:
    # Outside any transaction of ours: two calls at once overlap here instead of queueing on a row lock.
    if response_ms:
        time.sleep(response_ms / 1000)
