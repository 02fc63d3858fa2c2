"""Every saga in participants/ passes sagas.testing: each step is compensable or says why not, and every
compensation, run against the real participant services, undoes its action exactly once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import sagas
from participants.airline.models import Flight, HoldStatus, SeatHold
from participants.cars.models import CarClass, CarRental, RentalStatus
from participants.checkout.sagas import PlaceOrder
from participants.hotels.models import BookingStatus, Hotel, RoomBooking
from participants.payments.models import Account
from participants.travel.sagas import BookTrip
from sagas import registry
from sagas.testing import assert_compensable, check_compensation
from tests.factories import AccountFactory, CarClassFactory, FlightFactory, HotelFactory
from tests.integration.conftest import Shop, ledger


def participant_sagas() -> list[type[sagas.Saga]]:
    """The current version of each participant saga (older versions are kept as they were declared, for the runs
    started under them: docs/versions.md)."""
    names = sorted({saga.name for saga in registry.all_sagas() if saga.__module__.startswith("participants.")})
    return [registry.get_saga(name) for name in names]


def test_every_participant_saga_is_found() -> None:
    assert {saga.name for saga in participant_sagas()} >= {PlaceOrder.name, BookTrip.name}


@pytest.mark.parametrize("saga", participant_sagas(), ids=lambda saga: saga.name)
def test_every_step_of_every_participant_saga_is_compensable_or_says_why_not(saga: type[sagas.Saga]) -> None:
    kinds = assert_compensable(saga)
    assert "undeclared" not in kinds.values()


@pytest.mark.django_db
@pytest.mark.parametrize("step", [s.name for s in PlaceOrder.steps if s.compensation is not None])
def test_place_order_compensations_restore_the_shop_once(step: str) -> None:
    shop = Shop()
    check = check_compensation(PlaceOrder, step, shop.payload(), snapshot=ledger)
    assert check.after_action != check.before


def travel_state() -> dict[str, Any]:
    """Everything BookTrip's suppliers and the payments service hold that a booking changes."""
    return {
        "seats_held": dict(Flight.objects.values_list("number", "seats_held")),
        "holds": SeatHold.objects.filter(status=HoldStatus.HELD).count(),
        "rooms_booked": dict(Hotel.objects.values_list("pk", "rooms_booked")),
        "bookings": RoomBooking.objects.filter(status=BookingStatus.BOOKED).count(),
        "cars_rented": dict(CarClass.objects.values_list("pk", "cars_rented")),
        "rentals": CarRental.objects.filter(status=RentalStatus.RENTED).count(),
        "balances": dict(Account.objects.values_list("pk", "balance")),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("step", [s.name for s in BookTrip.steps if s.compensation is not None])
def test_book_trip_compensations_restore_the_suppliers_once(step: str) -> None:
    flight, hotel, car = FlightFactory(), HotelFactory(), CarClassFactory()
    account = AccountFactory(balance=Decimal("2000.00"))
    payload = {
        "traveller_email": "ada@example.com",
        "account_id": account.pk,
        "flight_number": flight.number,
        "hotel_id": hotel.pk,
        "nights": 3,
        "car_class_id": car.pk,
        "amount": "1250.00",
    }
    check = check_compensation(BookTrip, step, payload, snapshot=travel_state)
    assert check.after_action != check.before
