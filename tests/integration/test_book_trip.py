"""BookTrip on a real worker with 2 processes: flight, hotel and car in parallel after the fraud check, payment
after all three, the itinerary last; a failed branch or payment undoes the others once, by priority."""

from __future__ import annotations

from decimal import Decimal
from itertools import combinations
from typing import Any

import pytest

from participants.airline.models import HoldStatus, SeatHold
from participants.cars.models import CarRental, RentalStatus
from participants.hotels.models import BookingStatus, RoomBooking
from participants.payments.models import CardStatus
from participants.travel.sagas import BookTrip
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import AccountFactory, CarClassFactory, FlightFactory, HotelFactory
from tests.worker import WorkerProcess, wait_for_run

SUPPLIER_MS = 600  # each supplier answers after this long, so parallel calls visibly overlap


class Trip:
    def __init__(self) -> None:
        self.flight = FlightFactory(response_ms=SUPPLIER_MS)
        self.hotel = HotelFactory(response_ms=SUPPLIER_MS)
        self.car = CarClassFactory(response_ms=SUPPLIER_MS)
        self.account = AccountFactory(balance=Decimal("2000.00"))

    def payload(self, **overrides: Any) -> dict[str, Any]:
        return {
            "traveller_email": "ada@example.com",
            "account_id": self.account.pk,
            "flight_number": self.flight.number,
            "hotel_id": self.hotel.pk,
            "nights": 3,
            "car_class_id": self.car.pk,
            "amount": "1250.00",
            **overrides,
        }


@pytest.fixture
def trip(worker: WorkerProcess) -> Trip:
    return Trip()


def bookings() -> dict[str, Any]:
    return {"flight": SeatHold.objects.get(), "hotel": RoomBooking.objects.get(), "car": CarRental.objects.get()}


def overlaps(a: Any, b: Any) -> bool:
    return bool(a.started_at < b.finished_at and b.started_at < a.finished_at)


def test_flight_hotel_and_car_are_booked_at_the_same_time_then_paid(trip: Trip, worker: WorkerProcess) -> None:
    run = wait_for_run(BookTrip.start(trip.payload()), worker)

    assert run.status == RunStatus.COMPLETED
    calls = bookings()
    # The suppliers' own records: on 2 worker processes at least two of the three calls overlapped.
    assert any(overlaps(calls[a], calls[b]) for a, b in combinations(calls, 2)), {
        name: (call.started_at, call.finished_at) for name, call in calls.items()
    }
    steps = {step.name: step for step in run.steps.all()}
    assert steps["charge_payment"].started_at >= max(call.finished_at for call in calls.values())
    assert steps["send_itinerary"].started_at >= steps["charge_payment"].finished_at
    trip.account.refresh_from_db()
    assert trip.account.balance == Decimal("750.00")
    assert all(step.attempts == 1 for step in steps.values())


def test_a_failed_branch_undoes_the_others_once(trip: Trip, worker: WorkerProcess) -> None:
    trip.car.cars_total = 0  # the rental company has nothing left
    trip.car.save()
    run = wait_for_run(BookTrip.start(trip.payload()), worker)

    assert run.status == RunStatus.COMPENSATED
    steps = {step.name: step for step in run.steps.all()}
    assert steps["rent_car"].status == StepStatus.FAILED
    assert steps["rent_car"].error["code"] == "no_cars_available"
    assert (steps["charge_payment"].status, steps["send_itinerary"].status) == (StepStatus.SKIPPED,) * 2
    assert (steps["reserve_flight"].status, steps["book_hotel"].status) == (StepStatus.COMPENSATED,) * 2
    assert (steps["reserve_flight"].compensation_attempts, steps["book_hotel"].compensation_attempts) == (1, 1)
    assert SeatHold.objects.get().status == HoldStatus.RELEASED
    assert RoomBooking.objects.get().status == BookingStatus.CANCELLED
    trip.flight.refresh_from_db()
    trip.hotel.refresh_from_db()
    assert (trip.flight.seats_held, trip.hotel.rooms_booked) == (0, 0)
    trip.account.refresh_from_db()
    assert trip.account.balance == Decimal("2000.00")


def test_a_declined_card_undoes_the_flight_first_then_hotel_and_car_together(trip: Trip, worker: WorkerProcess) -> None:
    trip.account.card_status = CardStatus.DECLINED
    trip.account.save()
    run = wait_for_run(BookTrip.start(trip.payload()), worker)

    assert run.status == RunStatus.COMPENSATED
    events = SagaEvent.objects.filter(run=run).order_by("seq")
    started = {e.step: e.created_at for e in events.filter(type=EventType.COMPENSATION_STARTED)}
    done = {e.step: e.created_at for e in events.filter(type=EventType.COMPENSATION_SUCCEEDED)}
    assert set(done) == {"reserve_flight", "book_hotel", "rent_car"}  # the fraud check has nothing to undo
    assert min(started["book_hotel"], started["rent_car"]) >= done["reserve_flight"]  # priority 2 first
    assert started["book_hotel"] < done["rent_car"]
    assert started["rent_car"] < done["book_hotel"]  # priority 1: together, in parallel
    assert {s.status for s in SeatHold.objects.all()} == {HoldStatus.RELEASED}
    assert {r.status for r in CarRental.objects.all()} == {RentalStatus.RETURNED}
    assert SagaRun.objects.get(pk=run.pk).error["code"] == "card_declined"
