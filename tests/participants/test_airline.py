"""Tests of the airline service."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from django.db import transaction
from django.utils import timezone

from participants.airline.errors import AirlineError, FlightNotFound, HoldNotFound, NoSeatsLeft
from participants.airline.models import Flight, HoldStatus, SeatHold
from participants.airline.services import seat_hold, seat_release
from tests.factories import FlightFactory

if TYPE_CHECKING:
    from tests.conftest import RunConcurrently


def seats(number: str) -> tuple[int, int]:
    flight = Flight.objects.get(number=number)
    return flight.seats_total, flight.seats_held


def conserved() -> bool:
    """Every flight's seats_held equals the number of its active holds."""
    return all(
        flight.seats_held == flight.holds.filter(status=HoldStatus.HELD).count() for flight in Flight.objects.all()
    )


@pytest.mark.django_db
def test_hold_takes_a_seat_and_records_the_call() -> None:
    FlightFactory.create(number="KL1001", seats_total=3)
    before = timezone.now()

    hold = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")

    assert hold.status == HoldStatus.HELD
    assert hold.traveller_email == "ada@example.com"
    assert before <= hold.started_at <= hold.finished_at <= timezone.now()
    assert seats("KL1001") == (3, 1)


@pytest.mark.django_db
def test_hold_with_same_key_twice_holds_once() -> None:
    FlightFactory.create(number="KL1001", seats_total=3)

    first = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")
    second = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")

    assert second.pk == first.pk
    assert SeatHold.objects.count() == 1
    assert seats("KL1001") == (3, 1)


@pytest.mark.django_db
def test_hold_repeated_after_the_flight_filled_up_returns_the_first_hold() -> None:
    FlightFactory.create(number="KL1001", seats_total=1)
    first = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")

    second = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")

    assert second.pk == first.pk
    assert seats("KL1001") == (1, 1)


@pytest.mark.django_db
def test_hold_on_an_unknown_flight_raises_flight_not_found_and_holds_nothing() -> None:
    with pytest.raises(FlightNotFound, match="Flight 'XX999' does not exist") as excinfo:
        seat_hold(flight_number="XX999", traveller_email="ada@example.com", idempotency_key="h-1")

    assert excinfo.value.code == "flight_not_found"
    assert SeatHold.objects.count() == 0


@pytest.mark.django_db
def test_hold_on_a_full_flight_raises_no_seats_left_and_holds_nothing() -> None:
    FlightFactory.create(number="KL1001", seats_total=1)
    seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")

    with pytest.raises(NoSeatsLeft, match=r"KL1001 on .* has all 1 seats held") as excinfo:
        seat_hold(flight_number="KL1001", traveller_email="bob@example.com", idempotency_key="h-2")

    assert excinfo.value.code == "no_seats_left"
    assert SeatHold.objects.count() == 1
    assert seats("KL1001") == (1, 1)


@pytest.mark.django_db
def test_release_puts_the_seat_back_on_sale() -> None:
    FlightFactory.create(number="KL1001", seats_total=1)
    hold = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")

    released = seat_release(hold_id=hold.pk, idempotency_key="h-1:compensate")

    assert released.status == HoldStatus.RELEASED
    assert released.release_key == "h-1:compensate"
    assert released.released_at is not None
    assert seats("KL1001") == (1, 0)
    seat_hold(flight_number="KL1001", traveller_email="bob@example.com", idempotency_key="h-2")
    assert seats("KL1001") == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("second_key", ["r-1", "r-2"])
def test_releasing_twice_releases_once(second_key: str) -> None:
    FlightFactory.create(number="KL1001", seats_total=3)
    hold = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")
    seat_hold(flight_number="KL1001", traveller_email="bob@example.com", idempotency_key="h-2")
    first = seat_release(hold_id=hold.pk, idempotency_key="r-1")

    second = seat_release(hold_id=hold.pk, idempotency_key=second_key)

    assert second.pk == first.pk
    assert second.release_key == "r-1"
    assert second.released_at == first.released_at
    assert seats("KL1001") == (3, 1)


@pytest.mark.django_db
def test_release_of_a_missing_hold_raises_hold_not_found() -> None:
    with pytest.raises(HoldNotFound, match="Seat hold 999 does not exist") as excinfo:
        seat_release(hold_id=999, idempotency_key="r-1")

    assert excinfo.value.code == "hold_not_found"


@pytest.mark.django_db
def test_seats_held_always_equals_the_active_holds() -> None:
    FlightFactory.create(number="KL1001", seats_total=2)
    FlightFactory.create(number="KL2002", seats_total=1)

    a = seat_hold(flight_number="KL1001", traveller_email="a@example.com", idempotency_key="a")
    assert conserved()
    seat_hold(flight_number="KL1001", traveller_email="a@example.com", idempotency_key="a")
    assert conserved()
    b = seat_hold(flight_number="KL1001", traveller_email="b@example.com", idempotency_key="b")
    with pytest.raises(NoSeatsLeft):
        seat_hold(flight_number="KL1001", traveller_email="c@example.com", idempotency_key="c")
    assert conserved()
    seat_hold(flight_number="KL2002", traveller_email="c@example.com", idempotency_key="d")
    seat_release(hold_id=a.pk, idempotency_key="release-a")
    seat_release(hold_id=a.pk, idempotency_key="release-a")
    assert conserved()
    seat_release(hold_id=b.pk, idempotency_key="release-b")

    assert conserved()
    assert seats("KL1001") == (2, 0)
    assert seats("KL2002") == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_holds_never_overbook_the_flight(run_concurrently: RunConcurrently) -> None:
    FlightFactory.create(number="KL1001", seats_total=3)

    results = run_concurrently(
        *(
            lambda n=n: seat_hold(flight_number="KL1001", traveller_email=f"t{n}@example.com", idempotency_key=f"h-{n}")
            for n in range(10)
        )
    )

    assert len([result for result in results if isinstance(result, SeatHold)]) == 3
    assert len([result for result in results if isinstance(result, NoSeatsLeft)]) == 7
    assert seats("KL1001") == (3, 3)
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_concurrent_holds_with_the_same_key_hold_once(run_concurrently: RunConcurrently) -> None:
    # One seat only, so a repeat that missed the first hold would fail with no_seats_left.
    FlightFactory.create(number="KL1001", seats_total=1)

    results = run_concurrently(
        *(
            lambda: seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="same")
            for _ in range(4)
        )
    )

    assert all(isinstance(result, SeatHold) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert seats("KL1001") == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_releases_of_one_hold_release_once(run_concurrently: RunConcurrently) -> None:
    FlightFactory.create(number="KL1001", seats_total=3)
    hold = seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")
    seat_hold(flight_number="KL1001", traveller_email="bob@example.com", idempotency_key="h-2")

    results = run_concurrently(*(lambda n=n: seat_release(hold_id=hold.pk, idempotency_key=f"r-{n}") for n in range(4)))

    assert all(isinstance(result, SeatHold) for result in results), results
    assert len({result.release_key for result in results}) == 1
    assert seats("KL1001") == (3, 1)
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_two_slow_holds_on_one_flight_wait_for_the_airline_at_the_same_time(
    run_concurrently: RunConcurrently,
) -> None:
    FlightFactory.create(number="KL1001", seats_total=5, response_ms=500)

    first, second = run_concurrently(
        lambda: seat_hold(flight_number="KL1001", traveller_email="a@example.com", idempotency_key="h-1"),
        lambda: seat_hold(flight_number="KL1001", traveller_email="b@example.com", idempotency_key="h-2"),
    )

    assert isinstance(first, SeatHold), first
    assert isinstance(second, SeatHold), second
    for hold in (first, second):
        assert hold.finished_at - hold.started_at >= timedelta(milliseconds=500)
    # Overlapping, and together well under the 1 s that waiting one after the other would take.
    assert max(first.started_at, second.started_at) < min(first.finished_at, second.finished_at)
    assert max(first.finished_at, second.finished_at) - min(first.started_at, second.started_at) < timedelta(
        milliseconds=900
    )
    assert seats("KL1001") == (5, 2)


@pytest.mark.django_db(transaction=True)
def test_a_slow_hold_locks_no_flight_while_it_waits(run_concurrently: RunConcurrently) -> None:
    flight = FlightFactory.create(number="KL1001", seats_total=5, response_ms=600)

    def lock_the_flight_meanwhile() -> datetime:
        time.sleep(0.2)
        with transaction.atomic():
            # NOWAIT raises at once if the slow hold holds the row.
            Flight.objects.select_for_update(nowait=True).get(pk=flight.pk)
            return timezone.now()

    hold, locked_at = run_concurrently(
        lambda: seat_hold(flight_number="KL1001", traveller_email="a@example.com", idempotency_key="h-1"),
        lock_the_flight_meanwhile,
    )

    assert isinstance(hold, SeatHold), hold
    assert isinstance(locked_at, datetime), locked_at
    assert hold.started_at < locked_at < hold.finished_at


@pytest.mark.django_db(transaction=True)
def test_a_slow_release_locks_neither_hold_nor_flight_while_it_waits(run_concurrently: RunConcurrently) -> None:
    flight = FlightFactory.create(number="KL1001", seats_total=5)
    hold = seat_hold(flight_number="KL1001", traveller_email="a@example.com", idempotency_key="h-1")
    Flight.objects.filter(pk=flight.pk).update(response_ms=600)

    def lock_both_meanwhile() -> datetime:
        time.sleep(0.2)
        with transaction.atomic():
            SeatHold.objects.select_for_update(nowait=True).get(pk=hold.pk)
            Flight.objects.select_for_update(nowait=True).get(pk=flight.pk)
            return timezone.now()

    started_at = timezone.now()
    released, locked_at = run_concurrently(
        lambda: seat_release(hold_id=hold.pk, idempotency_key="r-1"), lock_both_meanwhile
    )

    assert isinstance(released, SeatHold), released
    assert isinstance(locked_at, datetime), locked_at
    assert released.released_at is not None
    assert started_at < locked_at < released.released_at
    assert released.released_at - started_at >= timedelta(milliseconds=600)


def test_airline_errors_share_a_base_with_stable_codes() -> None:
    errors = [FlightNotFound, NoSeatsLeft, HoldNotFound]

    assert all(issubclass(error, AirlineError) for error in errors)
    assert [error.code for error in errors] == ["flight_not_found", "no_seats_left", "hold_not_found"]
