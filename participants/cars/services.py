"""Writes of the car rental service: rent a car and return it, both idempotent on their key."""

from __future__ import annotations

import time

from django.db import IntegrityError, transaction
from django.utils import timezone

from participants.cars.errors import CarClassNotFound, InvalidRental, NoCarsAvailable, RentalNotFound
from participants.cars.models import CarClass, CarRental, RentalStatus


def car_rent(*, car_class_id: int, traveller_email: str, days: int, idempotency_key: str) -> CarRental:
    """Rent one car of a class to a traveller for ``days``.

    Waits the class's ``response_ms`` first, holding no lock, as a remote rental company would. A
    repeat with the same ``idempotency_key`` returns the first call's rental and rents nothing more.
    Raises ``InvalidRental``, ``CarClassNotFound`` or ``NoCarsAvailable``, having rented nothing.
    """
    started_at = timezone.now()
    existing = CarRental.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise InvalidRental(f"A car cannot be rented for {days!r} days; it must be a whole number of at least 1.")
    response_ms = CarClass.objects.filter(pk=car_class_id).values_list("response_ms", flat=True).first()
    if response_ms is None:
        raise CarClassNotFound(f"Car class {car_class_id} does not exist, so no car of it can be rented.")
    _respond_after(response_ms)

    with transaction.atomic():
        car_class = CarClass.objects.select_for_update().filter(pk=car_class_id).first()
        # Looked up after the lock: a concurrent call with this key that held it has committed by
        # now, so a repeat never fails with no_cars_available because of its own first rental.
        existing = CarRental.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if car_class is None:
            raise CarClassNotFound(f"Car class {car_class_id} does not exist, so no car of it can be rented.")
        if car_class.cars_rented >= car_class.cars_total:
            raise NoCarsAvailable(
                f"Car class {car_class.pk} ({car_class.name} in {car_class.city}) has all "
                f"{car_class.cars_total} cars rented out."
            )

        try:
            # A savepoint, so losing a race on the key leaves the outer transaction usable.
            with transaction.atomic():
                rental = CarRental.objects.create(
                    car_class=car_class,
                    traveller_email=traveller_email,
                    days=days,
                    idempotency_key=idempotency_key,
                    started_at=started_at,
                    finished_at=timezone.now(),
                )
        except IntegrityError:
            existing = CarRental.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing
        car_class.cars_rented += 1
        car_class.save(update_fields=["cars_rented"])
        return rental


def car_return(*, rental_id: int, idempotency_key: str) -> CarRental:
    """Take a rented car back (or cancel its rental), once.

    Waits the class's ``response_ms`` first, holding no lock. Returning an already returned rental
    returns it unchanged. Raises ``RentalNotFound`` when no rental has ``rental_id``.
    """
    rental = CarRental.objects.select_related("car_class").filter(pk=rental_id).first()
    if rental is None:
        raise RentalNotFound(f"Car rental {rental_id} does not exist, so it cannot be returned.")
    if rental.status == RentalStatus.RETURNED:
        return rental
    _respond_after(rental.car_class.response_ms)

    with transaction.atomic():
        rental = CarRental.objects.select_for_update().get(pk=rental_id)
        if rental.status == RentalStatus.RETURNED:
            return rental
        car_class = CarClass.objects.select_for_update().get(pk=rental.car_class_id)
        car_class.cars_rented -= 1
        car_class.save(update_fields=["cars_rented"])

        rental.status = RentalStatus.RETURNED
        rental.return_key = idempotency_key
        rental.returned_at = timezone.now()
        rental.save(update_fields=["status", "return_key", "returned_at"])
        return rental


def _respond_after(response_ms: int) -> None:
    # Outside any transaction of ours: two calls at once overlap here instead of queueing on a row lock.
    if response_ms:
        time.sleep(response_ms / 1000)
