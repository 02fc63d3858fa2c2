"""Tests of the travel orchestrator: BookTrip's declared graph and its step functions, called directly."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

import sagas
from participants.airline.models import Flight, HoldStatus, SeatHold
from participants.cars.models import CarClass, CarRental, RentalStatus
from participants.fraud.models import Screening, Verdict
from participants.hotels.models import BookingStatus, Hotel, RoomBooking
from participants.notifications.models import Notification
from participants.payments.models import Account, CardStatus, Payment
from participants.travel.sagas import (
    BookTrip,
    book_hotel,
    cancel_flight,
    cancel_hotel,
    charge_payment,
    check_fraud,
    refund_payment,
    rent_car,
    reserve_flight,
    return_car,
    send_itinerary,
)
from tests import factories

if TYPE_CHECKING:
    from tests.conftest import RunConcurrently

SAGA_ID = uuid.UUID("00000000-0000-0000-0000-00000000b00c")
FORWARD = [check_fraud, reserve_flight, book_hotel, rent_car, charge_payment, send_itinerary]


def context(
    step: str, payload: dict[str, Any], results: dict[str, Any] | None = None, *, result: Any = None
) -> sagas.StepContext:
    """The context the framework would pass; a compensation is asked for by giving the forward ``result``."""
    suffix = ":compensate" if result is not None else ""
    return sagas.StepContext(
        saga_id=SAGA_ID,
        saga_name=BookTrip.name,
        step=step,
        payload={**payload, **{key: value for output in (results or {}).values() for key, value in output.items()}},
        results=dict(results or {}),
        idempotency_key=f"{SAGA_ID}:{step}{suffix}",
        attempt=1,
        result=result,
    )


def run_forward(payload: dict[str, Any]) -> dict[str, Any]:
    """Every forward step in an order the graph allows, as the framework would; returns the outputs."""
    results: dict[str, Any] = {}
    for action in FORWARD:
        results[action.__name__] = action(context(action.__name__, payload, results))
    return results


@pytest.fixture
def trip() -> dict[str, Any]:
    """A bookable trip's payload: a flight, a hotel and a car class with room to spare, and a funded account."""
    flight = factories.FlightFactory.create(number="TP1234", seats_total=10)
    hotel = factories.HotelFactory.create(rooms_total=10)
    car_class = factories.CarClassFactory.create(cars_total=10)
    account = factories.AccountFactory.create(balance=Decimal("2000.00"))
    return {
        "traveller_email": "ada@example.com",
        "account_id": account.pk,
        "flight_number": flight.number,
        "hotel_id": hotel.pk,
        "nights": 3,
        "car_class_id": car_class.pk,
        "amount": "1250.00",
    }


def in_use() -> dict[str, int]:
    return {
        "seats": sum(Flight.objects.values_list("seats_held", flat=True)),
        "rooms": sum(Hotel.objects.values_list("rooms_booked", flat=True)),
        "cars": sum(CarClass.objects.values_list("cars_rented", flat=True)),
    }


# --- the declaration ---


def test_book_trip_is_registered_under_its_name() -> None:
    assert sagas.get_saga("travel.book_trip") is BookTrip
    assert (BookTrip.version, BookTrip.timeout) == (2, 300)
    assert tuple(BookTrip.searchable) == ("traveller_email", "account_id")


def test_book_trip_screens_first_books_the_three_suppliers_in_parallel_then_charges_then_notifies() -> None:
    assert BookTrip.dependencies() == {
        "check_fraud": frozenset(),
        "reserve_flight": frozenset({"check_fraud"}),
        "book_hotel": frozenset({"check_fraud"}),
        "rent_car": frozenset({"check_fraud"}),
        "charge_payment": frozenset({"reserve_flight", "book_hotel", "rent_car"}),
        "send_itinerary": frozenset({"charge_payment"}),
    }


def test_book_trip_charges_only_after_every_booking_and_notifies_last() -> None:
    ancestors = BookTrip.ancestors()
    suppliers = {"reserve_flight", "book_hotel", "rent_car"}

    assert ancestors["charge_payment"] == {"check_fraud"} | suppliers
    assert ancestors["send_itinerary"] == {"check_fraud", "charge_payment"} | suppliers
    # No supplier waits for another: they run side by side.
    assert all(ancestors[name] == {"check_fraud"} for name in suppliers)


def test_book_trip_releases_the_flight_first_then_hotel_and_car_together() -> None:
    priorities = {step.name: step.priority for step in BookTrip.steps if step.compensation is not None}

    assert priorities == {"reserve_flight": 2, "book_hotel": 1, "rent_car": 1, "charge_payment": 0}


def test_book_trip_screening_and_itinerary_have_no_compensation() -> None:
    assert BookTrip.step("check_fraud").compensation is None
    assert BookTrip.step("send_itinerary").compensation is None


def test_book_trip_names_the_service_of_every_step() -> None:
    assert {step.name: step.service for step in BookTrip.steps} == {
        "check_fraud": "fraud",
        "reserve_flight": "airline",
        "book_hotel": "hotels",
        "rent_car": "cars",
        "charge_payment": "payments",
        "send_itinerary": "notifications",
    }


def test_book_trip_charge_retries_and_refunds_harder() -> None:
    charge = BookTrip.step("charge_payment")

    assert charge.timeout == 30
    assert charge.retry == sagas.RetryPolicy(max_attempts=3, backoff=0.5, backoff_max=5.0)
    assert charge.compensation_retry == sagas.RetryPolicy(max_attempts=4, backoff=0.5, backoff_max=5.0)


# --- the step functions, called as the framework would ---


@pytest.mark.django_db
def test_every_step_returns_small_json_ids(trip: dict[str, Any]) -> None:
    results = run_forward(trip)

    assert json.loads(json.dumps(results)) == results
    assert results == {
        "check_fraud": {"screening_id": Screening.objects.get().pk},
        "reserve_flight": {"hold_id": SeatHold.objects.get().pk},
        "book_hotel": {"booking_id": RoomBooking.objects.get().pk},
        "rent_car": {"rental_id": CarRental.objects.get().pk},
        "charge_payment": {"payment_id": Payment.objects.get().pk, "amount": "1250.00"},
        "send_itinerary": {"notification_id": Notification.objects.get().pk},
    }


@pytest.mark.django_db
def test_a_booked_trip_holds_a_seat_room_and_car_charges_the_total_and_mails_the_itinerary(
    trip: dict[str, Any],
) -> None:
    results = run_forward(trip)

    assert in_use() == {"seats": 1, "rooms": 1, "cars": 1}
    assert RoomBooking.objects.get().nights == 3
    assert CarRental.objects.get().days == 3
    assert Screening.objects.get().verdict == Verdict.APPROVED
    assert Account.objects.get(pk=trip["account_id"]).balance == Decimal("750.00")
    notification = Notification.objects.get()
    assert notification.recipient == "ada@example.com"
    assert notification.subject == "Your trip on flight TP1234 is booked"
    assert f"seat hold {results['reserve_flight']['hold_id']}" in notification.body
    assert f"rental {results['rent_car']['rental_id']}" in notification.body
    assert "Charged 1250.00" in notification.body


@pytest.mark.django_db
def test_each_service_gets_the_step_idempotency_key(trip: dict[str, Any]) -> None:
    run_forward(trip)

    for model, step in [
        (Screening, "check_fraud"),
        (SeatHold, "reserve_flight"),
        (RoomBooking, "book_hotel"),
        (CarRental, "rent_car"),
        (Payment, "charge_payment"),
        (Notification, "send_itinerary"),
    ]:
        assert model._default_manager.values_list("idempotency_key", flat=True).get() == f"{SAGA_ID}:{step}", model


@pytest.mark.django_db
def test_steps_run_again_return_the_same_ids_and_book_nothing_more(trip: dict[str, Any]) -> None:
    first = run_forward(trip)

    second = run_forward(trip)

    assert second == first
    assert in_use() == {"seats": 1, "rooms": 1, "cars": 1}
    assert Account.objects.get(pk=trip["account_id"]).balance == Decimal("750.00")


@pytest.mark.django_db
def test_compensations_undo_every_booking_and_the_charge_even_when_run_twice(trip: dict[str, Any]) -> None:
    results = run_forward(trip)
    compensations = [
        (refund_payment, "charge_payment"),
        (cancel_flight, "reserve_flight"),
        (cancel_hotel, "book_hotel"),
        (return_car, "rent_car"),
    ]

    for _ in range(2):
        for compensation, step in compensations:
            assert compensation(context(step, trip, results, result=results[step])) is None

    assert in_use() == {"seats": 0, "rooms": 0, "cars": 0}
    assert SeatHold.objects.get().status == HoldStatus.RELEASED
    assert RoomBooking.objects.get().status == BookingStatus.CANCELLED
    assert CarRental.objects.get().status == RentalStatus.RETURNED
    assert Account.objects.get(pk=trip["account_id"]).balance == Decimal("2000.00")
    assert SeatHold.objects.get().release_key == f"{SAGA_ID}:reserve_flight:compensate"


@pytest.mark.django_db
def test_a_blocked_traveller_fails_the_screening_step_for_good(trip: dict[str, Any]) -> None:
    factories.BlockedTravellerFactory.create(email="ada@example.com")

    with pytest.raises(sagas.StepFailed, match=r"ada@example\.com is on the blocked list") as excinfo:
        check_fraud(context("check_fraud", trip))

    assert excinfo.value.code == "traveller_blocked"
    assert Screening.objects.get().verdict == Verdict.REFUSED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("step", "change", "code"),
    [
        (reserve_flight, {"flight_number": "XX0000"}, "flight_not_found"),
        (book_hotel, {"hotel_id": 0}, "hotel_not_found"),
        (book_hotel, {"nights": 0}, "invalid_stay"),
        (rent_car, {"car_class_id": 0}, "car_class_not_found"),
        (charge_payment, {"amount": "5000.00"}, "insufficient_funds"),
        (check_fraud, {"amount": "-1"}, "invalid_screening"),
        (send_itinerary, {"traveller_email": "not-an-address"}, "invalid_recipient"),
    ],
)
def test_a_business_refusal_fails_its_step_with_the_service_code(
    trip: dict[str, Any], step: sagas.definitions.StepFunction, change: dict[str, Any], code: str
) -> None:
    done = {
        "check_fraud": {"screening_id": 1},
        "reserve_flight": {"hold_id": 1},
        "book_hotel": {"booking_id": 1},
        "rent_car": {"rental_id": 1},
        "charge_payment": {"payment_id": 1, "amount": "1250.00"},
    }
    results = {name: done[name] for name in BookTrip.ancestors()[step.__name__]}

    with pytest.raises(sagas.StepFailed) as excinfo:
        step(context(step.__name__, {**trip, **change}, results))

    assert excinfo.value.code == code


@pytest.mark.django_db
def test_full_suppliers_fail_their_steps_and_book_nothing(trip: dict[str, Any]) -> None:
    Flight.objects.update(seats_total=0)
    Hotel.objects.update(rooms_total=0)
    CarClass.objects.update(cars_total=0)

    codes = []
    for step in (reserve_flight, book_hotel, rent_car):
        with pytest.raises(sagas.StepFailed) as excinfo:
            step(context(step.__name__, trip))
        codes.append(excinfo.value.code)

    assert codes == ["no_seats_left", "fully_booked", "no_cars_available"]
    assert in_use() == {"seats": 0, "rooms": 0, "cars": 0}


@pytest.mark.django_db
def test_a_declined_card_fails_the_charge_step(trip: dict[str, Any]) -> None:
    Account.objects.filter(pk=trip["account_id"]).update(card_status=CardStatus.DECLINED)

    with pytest.raises(sagas.StepFailed) as excinfo:
        charge_payment(context("charge_payment", trip))

    assert excinfo.value.code == "card_declined"


@pytest.mark.django_db
def test_a_refund_while_the_gateway_is_down_is_retried_without_blaming_the_payments_service(
    trip: dict[str, Any],
) -> None:
    charged = charge_payment(context("charge_payment", trip))
    Account.objects.filter(pk=trip["account_id"]).update(refund_gateway_down=True)

    with pytest.raises(sagas.TransientError) as excinfo:
        refund_payment(context("charge_payment", trip, result=charged))

    assert excinfo.value.code == "refund_gateway_unavailable"
    assert excinfo.value.service_fault is False


@pytest.mark.django_db(transaction=True)
def test_the_three_suppliers_are_called_at_the_same_time(
    trip: dict[str, Any], run_concurrently: RunConcurrently
) -> None:
    Flight.objects.update(response_ms=500)
    Hotel.objects.update(response_ms=500)
    CarClass.objects.update(response_ms=500)
    results = {"check_fraud": check_fraud(context("check_fraud", trip))}

    outputs = run_concurrently(
        *(
            lambda step=step: step(context(step.__name__, trip, results))
            for step in (reserve_flight, book_hotel, rent_car)
        )
    )

    assert all(isinstance(output, dict) for output in outputs), outputs
    calls: list[SeatHold | RoomBooking | CarRental] = [
        SeatHold.objects.get(pk=outputs[0]["hold_id"]),
        RoomBooking.objects.get(pk=outputs[1]["booking_id"]),
        CarRental.objects.get(pk=outputs[2]["rental_id"]),
    ]
    started = [call.started_at for call in calls]
    finished = [call.finished_at for call in calls]
    assert max(started) < min(finished)
    # One after the other they would take 1.5 s.
    assert max(finished) - min(started) < timedelta(milliseconds=1200)
