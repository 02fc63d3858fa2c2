"""BookTrip: screen the traveller, then hold a seat, book a room and rent a car at once, charge, send the itinerary.

The orchestrator is the only code that talks to several services; the services never import each
other. Each step passes its service an id or two, amounts as strings and ``ctx.idempotency_key``, and
turns the service's business refusals into ``sagas.StepFailed`` so the saga compensates at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sagas
from participants.airline import errors as airline_errors
from participants.airline import services as airline
from participants.cars import errors as car_errors
from participants.cars import services as cars
from participants.fraud import errors as fraud_errors
from participants.fraud import services as fraud
from participants.hotels import errors as hotel_errors
from participants.hotels import services as hotels
from participants.notifications import errors as notification_errors
from participants.notifications import services as notifications
from participants.payments import errors as payment_errors
from participants.payments import services as payments


@contextmanager
def refusals_fail_the_step(*business_errors: type[Exception]) -> Iterator[None]:
    """A service's business refusal is final: raise StepFailed (no retry) with its code."""
    try:
        yield
    except business_errors as exc:
        raise sagas.StepFailed(str(exc), code=getattr(exc, "code", "")) from exc


def check_fraud(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(fraud_errors.FraudError):
        screening = fraud.screening_check(
            traveller_email=ctx.payload["traveller_email"],
            amount=ctx.payload["amount"],
            idempotency_key=ctx.idempotency_key,
        )
    return {"screening_id": screening.pk}


def reserve_flight(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(airline_errors.AirlineError):
        hold = airline.seat_hold(
            flight_number=ctx.payload["flight_number"],
            traveller_email=ctx.payload["traveller_email"],
            idempotency_key=ctx.idempotency_key,
        )
    return {"hold_id": hold.pk}


def cancel_flight(ctx: sagas.StepContext) -> None:
    airline.seat_release(hold_id=ctx.result["hold_id"], idempotency_key=ctx.idempotency_key)


def book_hotel(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(hotel_errors.HotelError):
        booking = hotels.room_book(
            hotel_id=ctx.payload["hotel_id"],
            traveller_email=ctx.payload["traveller_email"],
            nights=ctx.payload["nights"],
            idempotency_key=ctx.idempotency_key,
        )
    return {"booking_id": booking.pk}


def cancel_hotel(ctx: sagas.StepContext) -> None:
    hotels.room_cancel(booking_id=ctx.result["booking_id"], idempotency_key=ctx.idempotency_key)


def rent_car(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(car_errors.CarError):
        rental = cars.car_rent(
            car_class_id=ctx.payload["car_class_id"],
            traveller_email=ctx.payload["traveller_email"],
            days=ctx.payload["nights"],  # the car is kept for as many days as the hotel's nights
            idempotency_key=ctx.idempotency_key,
        )
    return {"rental_id": rental.pk}


def return_car(ctx: sagas.StepContext) -> None:
    cars.car_return(rental_id=ctx.result["rental_id"], idempotency_key=ctx.idempotency_key)


def charge_payment(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(payment_errors.PaymentError):
        payment = payments.payment_charge(
            account_id=ctx.payload["account_id"],
            amount=ctx.payload["amount"],
            idempotency_key=ctx.idempotency_key,
        )
    return {"payment_id": payment.pk, "amount": str(payment.amount)}


def refund_payment(ctx: sagas.StepContext) -> None:
    try:
        payments.payment_refund(payment_id=ctx.result["payment_id"], idempotency_key=ctx.idempotency_key)
    except payment_errors.RefundGatewayUnavailable as exc:
        # One account's refund gateway is down, not the payments service: retry, but leave its breaker be.
        raise sagas.TransientError(str(exc), code=exc.code, service_fault=False) from exc


def send_itinerary(ctx: sagas.StepContext) -> dict[str, Any]:
    payload, results = ctx.payload, ctx.results
    with refusals_fail_the_step(notification_errors.NotificationError):
        notification = notifications.notification_send(
            recipient=payload["traveller_email"],
            subject=f"Your trip on flight {payload['flight_number']} is booked",
            body=(
                f"Flight {payload['flight_number']}: seat hold {results['reserve_flight']['hold_id']}.\n"
                f"Hotel {payload['hotel_id']}, {payload['nights']} nights: "
                f"booking {results['book_hotel']['booking_id']}.\n"
                f"Car class {payload['car_class_id']}, {payload['nights']} days: "
                f"rental {results['rent_car']['rental_id']}.\n"
                f"Charged {results['charge_payment']['amount']} (payment {results['charge_payment']['payment_id']})."
            ),
            idempotency_key=ctx.idempotency_key,
        )
    return {"notification_id": notification.pk}


class BookTrip(sagas.Saga):
    """Payload: ``traveller_email``, ``account_id`` (a payments account), ``flight_number``, ``hotel_id``,
    ``nights`` (an int; the car is rented for as many days), ``car_class_id`` and ``amount`` (the trip's
    total price as a string, e.g. ``"1250.00"``, screened and then charged once).

    After the fraud screening the flight, hotel and car are booked in parallel; the charge waits for all
    three. On failure the flight is released first (a held fare costs money), then the hotel and the
    car together."""

    name = "travel.book_trip"
    version = 2  # 2: the screening is declared read-only and the itinerary irreversible (the steps run as in 1)
    timeout = 300
    searchable = ("traveller_email", "account_id")
    steps = [
        # Read-only: a screening needs no compensation.
        sagas.Step(check_fraud, service="fraud", read_only=True),
        sagas.Step(reserve_flight, cancel_flight, service="airline", depends_on=("check_fraud",), priority=2),
        sagas.Step(book_hotel, cancel_hotel, service="hotels", depends_on=("check_fraud",), priority=1),
        sagas.Step(rent_car, return_car, service="cars", depends_on=("check_fraud",), priority=1),
        sagas.Step(
            charge_payment,
            refund_payment,
            service="payments",
            depends_on=("reserve_flight", "book_hotel", "rent_car"),
            timeout=30,
            retry=sagas.RetryPolicy(max_attempts=3, backoff=0.5, backoff_max=5.0),
            # A refund that cannot get through leaves money taken: try hard before asking a person.
            compensation_retry=sagas.RetryPolicy(max_attempts=4, backoff=0.5, backoff_max=5.0),
        ),
        # The pivot: once the traveller has the itinerary, nothing is undone.
        sagas.Step(send_itinerary, service="notifications", depends_on=("charge_payment",), irreversible=True),
    ]


class BookTripV1(BookTrip):
    """Version 1, kept so that runs started under it finish under it (docs/versions.md): the steps of version 2,
    without the screening declared read-only and the itinerary irreversible."""

    name = BookTrip.name
    version = 1
    steps = [
        sagas.Step(check_fraud, service="fraud"),
        *BookTrip.steps[1:-1],
        sagas.Step(send_itinerary, service="notifications", depends_on=("charge_payment",)),
    ]
