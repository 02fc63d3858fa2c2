"""Tests of the car rental service."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.db import transaction
from django.utils import timezone

from participants.cars.errors import CarClassNotFound, CarError, InvalidRental, NoCarsAvailable, RentalNotFound
from participants.cars.models import CarClass, CarRental, RentalStatus
from participants.cars.services import car_rent, car_return
from tests.factories import CarClassFactory

if TYPE_CHECKING:
    from tests.conftest import RunConcurrently


def fleet(car_class: CarClass) -> tuple[int, int]:
    car_class.refresh_from_db()
    return car_class.cars_total, car_class.cars_rented


def conserved() -> bool:
    """Every car class's cars_rented equals the number of its active rentals."""
    return all(
        car_class.cars_rented == car_class.rentals.filter(status=RentalStatus.RENTED).count()
        for car_class in CarClass.objects.all()
    )


@pytest.mark.django_db
def test_rent_takes_a_car_and_records_the_call() -> None:
    compact = CarClassFactory.create(cars_total=3)
    before = timezone.now()

    rental = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=4, idempotency_key="c-1")

    assert rental.status == RentalStatus.RENTED
    assert (rental.traveller_email, rental.days) == ("ada@example.com", 4)
    assert before <= rental.started_at <= rental.finished_at <= timezone.now()
    assert fleet(compact) == (3, 1)


@pytest.mark.django_db
def test_rent_with_same_key_twice_rents_once() -> None:
    compact = CarClassFactory.create(cars_total=3)

    first = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")
    second = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    assert second.pk == first.pk
    assert CarRental.objects.count() == 1
    assert fleet(compact) == (3, 1)


@pytest.mark.django_db
def test_rent_repeated_after_the_fleet_ran_out_returns_the_first_rental() -> None:
    compact = CarClassFactory.create(cars_total=1)
    first = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    second = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    assert second.pk == first.pk
    assert fleet(compact) == (1, 1)


@pytest.mark.django_db
def test_rent_of_an_unknown_class_raises_car_class_not_found_and_rents_nothing() -> None:
    with pytest.raises(CarClassNotFound, match="Car class 999 does not exist") as excinfo:
        car_rent(car_class_id=999, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    assert excinfo.value.code == "car_class_not_found"
    assert CarRental.objects.count() == 0


@pytest.mark.django_db
def test_rent_when_every_car_is_out_raises_no_cars_available_and_rents_nothing() -> None:
    compact = CarClassFactory.create(name="Compact", cars_total=1)
    car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    with pytest.raises(NoCarsAvailable, match=r"\(Compact in Lisbon\) has all 1 cars rented out") as excinfo:
        car_rent(car_class_id=compact.pk, traveller_email="bob@example.com", days=2, idempotency_key="c-2")

    assert excinfo.value.code == "no_cars_available"
    assert CarRental.objects.count() == 1
    assert fleet(compact) == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("days", [0, -1, "3", 2.5, True, None])
def test_rent_for_invalid_days_raises_invalid_rental_and_rents_nothing(days: Any) -> None:
    compact = CarClassFactory.create(cars_total=3)

    with pytest.raises(InvalidRental, match="whole number of at least 1") as excinfo:
        car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=days, idempotency_key="c-1")

    assert excinfo.value.code == "invalid_rental"
    assert CarRental.objects.count() == 0
    assert fleet(compact) == (3, 0)


@pytest.mark.django_db
def test_return_puts_the_car_back_in_the_fleet() -> None:
    compact = CarClassFactory.create(cars_total=1)
    rental = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    returned = car_return(rental_id=rental.pk, idempotency_key="c-1:compensate")

    assert returned.status == RentalStatus.RETURNED
    assert returned.return_key == "c-1:compensate"
    assert returned.returned_at is not None
    assert fleet(compact) == (1, 0)
    car_rent(car_class_id=compact.pk, traveller_email="bob@example.com", days=2, idempotency_key="c-2")
    assert fleet(compact) == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("second_key", ["r-1", "r-2"])
def test_returning_twice_returns_one_car(second_key: str) -> None:
    compact = CarClassFactory.create(cars_total=3)
    rental = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")
    car_rent(car_class_id=compact.pk, traveller_email="bob@example.com", days=2, idempotency_key="c-2")
    first = car_return(rental_id=rental.pk, idempotency_key="r-1")

    second = car_return(rental_id=rental.pk, idempotency_key=second_key)

    assert second.pk == first.pk
    assert second.return_key == "r-1"
    assert second.returned_at == first.returned_at
    assert fleet(compact) == (3, 1)


@pytest.mark.django_db
def test_return_of_a_missing_rental_raises_rental_not_found() -> None:
    with pytest.raises(RentalNotFound, match="Car rental 999 does not exist") as excinfo:
        car_return(rental_id=999, idempotency_key="r-1")

    assert excinfo.value.code == "rental_not_found"


@pytest.mark.django_db
def test_cars_rented_always_equals_the_active_rentals() -> None:
    compact = CarClassFactory.create(cars_total=2)
    estate = CarClassFactory.create(cars_total=1)

    a = car_rent(car_class_id=compact.pk, traveller_email="a@example.com", days=1, idempotency_key="a")
    car_rent(car_class_id=compact.pk, traveller_email="a@example.com", days=1, idempotency_key="a")
    assert conserved()
    b = car_rent(car_class_id=compact.pk, traveller_email="b@example.com", days=1, idempotency_key="b")
    with pytest.raises(NoCarsAvailable):
        car_rent(car_class_id=compact.pk, traveller_email="c@example.com", days=1, idempotency_key="c")
    with pytest.raises(InvalidRental):
        car_rent(car_class_id=estate.pk, traveller_email="c@example.com", days=0, idempotency_key="d")
    assert conserved()
    car_rent(car_class_id=estate.pk, traveller_email="c@example.com", days=1, idempotency_key="e")
    car_return(rental_id=a.pk, idempotency_key="return-a")
    car_return(rental_id=a.pk, idempotency_key="return-a")
    car_return(rental_id=b.pk, idempotency_key="return-b")

    assert conserved()
    assert fleet(compact) == (2, 0)
    assert fleet(estate) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_rentals_never_rent_more_cars_than_the_fleet_has(run_concurrently: RunConcurrently) -> None:
    compact = CarClassFactory.create(cars_total=3)

    results = run_concurrently(
        *(
            lambda n=n: car_rent(
                car_class_id=compact.pk, traveller_email=f"t{n}@example.com", days=2, idempotency_key=f"c-{n}"
            )
            for n in range(10)
        )
    )

    assert len([result for result in results if isinstance(result, CarRental)]) == 3
    assert len([result for result in results if isinstance(result, NoCarsAvailable)]) == 7
    assert fleet(compact) == (3, 3)
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_concurrent_rentals_with_the_same_key_rent_once(run_concurrently: RunConcurrently) -> None:
    # One car only, so a repeat that missed the first rental would fail with no_cars_available.
    compact = CarClassFactory.create(cars_total=1)

    results = run_concurrently(
        *(
            lambda: car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="same")
            for _ in range(4)
        )
    )

    assert all(isinstance(result, CarRental) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert fleet(compact) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_returns_of_one_rental_return_one_car(run_concurrently: RunConcurrently) -> None:
    compact = CarClassFactory.create(cars_total=3)
    rental = car_rent(car_class_id=compact.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")
    car_rent(car_class_id=compact.pk, traveller_email="bob@example.com", days=2, idempotency_key="c-2")

    results = run_concurrently(
        *(lambda n=n: car_return(rental_id=rental.pk, idempotency_key=f"r-{n}") for n in range(4))
    )

    assert all(isinstance(result, CarRental) for result in results), results
    assert len({result.return_key for result in results}) == 1
    assert fleet(compact) == (3, 1)
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_two_slow_rentals_of_one_class_wait_for_the_company_at_the_same_time(
    run_concurrently: RunConcurrently,
) -> None:
    compact = CarClassFactory.create(cars_total=5, response_ms=500)

    first, second = run_concurrently(
        lambda: car_rent(car_class_id=compact.pk, traveller_email="a@example.com", days=2, idempotency_key="c-1"),
        lambda: car_rent(car_class_id=compact.pk, traveller_email="b@example.com", days=2, idempotency_key="c-2"),
    )

    assert isinstance(first, CarRental), first
    assert isinstance(second, CarRental), second
    for rental in (first, second):
        assert rental.finished_at - rental.started_at >= timedelta(milliseconds=500)
    # Overlapping, and together well under the 1 s that waiting one after the other would take.
    assert max(first.started_at, second.started_at) < min(first.finished_at, second.finished_at)
    assert max(first.finished_at, second.finished_at) - min(first.started_at, second.started_at) < timedelta(
        milliseconds=900
    )
    assert fleet(compact) == (5, 2)


@pytest.mark.django_db(transaction=True)
def test_a_slow_rental_locks_no_car_class_while_it_waits(run_concurrently: RunConcurrently) -> None:
    compact = CarClassFactory.create(cars_total=5, response_ms=600)

    def lock_the_class_meanwhile() -> datetime:
        time.sleep(0.2)
        with transaction.atomic():
            # NOWAIT raises at once if the slow rental holds the row.
            CarClass.objects.select_for_update(nowait=True).get(pk=compact.pk)
            return timezone.now()

    rental, locked_at = run_concurrently(
        lambda: car_rent(car_class_id=compact.pk, traveller_email="a@example.com", days=2, idempotency_key="c-1"),
        lock_the_class_meanwhile,
    )

    assert isinstance(rental, CarRental), rental
    assert isinstance(locked_at, datetime), locked_at
    assert rental.started_at < locked_at < rental.finished_at


@pytest.mark.django_db(transaction=True)
def test_a_slow_return_locks_neither_rental_nor_car_class_while_it_waits(run_concurrently: RunConcurrently) -> None:
    compact = CarClassFactory.create(cars_total=5)
    rental = car_rent(car_class_id=compact.pk, traveller_email="a@example.com", days=2, idempotency_key="c-1")
    CarClass.objects.filter(pk=compact.pk).update(response_ms=600)

    def lock_both_meanwhile() -> datetime:
        time.sleep(0.2)
        with transaction.atomic():
            CarRental.objects.select_for_update(nowait=True).get(pk=rental.pk)
            CarClass.objects.select_for_update(nowait=True).get(pk=compact.pk)
            return timezone.now()

    started_at = timezone.now()
    returned, locked_at = run_concurrently(
        lambda: car_return(rental_id=rental.pk, idempotency_key="r-1"), lock_both_meanwhile
    )

    assert isinstance(returned, CarRental), returned
    assert isinstance(locked_at, datetime), locked_at
    assert returned.returned_at is not None
    assert started_at < locked_at < returned.returned_at
    assert returned.returned_at - started_at >= timedelta(milliseconds=600)


def test_car_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidRental, CarClassNotFound, NoCarsAvailable, RentalNotFound]

    assert all(issubclass(error, CarError) for error in errors)
    assert [error.code for error in errors] == [
        "invalid_rental",
        "car_class_not_found",
        "no_cars_available",
        "rental_not_found",
    ]
