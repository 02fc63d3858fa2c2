"""Tests of the travel services' admin: inventory and the blocked list are the operators' to edit."""

from __future__ import annotations

import pytest
from django.db import models
from django.test import Client

from participants.airline.models import Flight
from participants.airline.services import seat_hold
from participants.cars.models import CarClass
from participants.cars.services import car_rent
from participants.fraud.models import BlockedTraveller
from participants.hotels.models import Hotel
from participants.hotels.services import room_book
from tests import factories
from tests.participants.test_admin import admin_url


def list_edit(model: type[models.Model], pk: int, **fields: str) -> dict[str, str]:
    """The POST of a changelist whose one row gets ``fields``."""
    return {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(pk),
        **{f"form-0-{name}": value for name, value in fields.items()},
        "_save": "Save",
    }


@pytest.mark.django_db
def test_operator_blocks_a_traveller(admin_client: Client) -> None:
    response = admin_client.post(
        admin_url(BlockedTraveller, "add"), {"email": "mallory@example.com", "reason": "stolen card"}
    )

    assert response.status_code == 302
    assert BlockedTraveller.objects.get().email == "mallory@example.com"


@pytest.mark.django_db
def test_operator_resizing_a_flight_keeps_its_held_seats(admin_client: Client) -> None:
    flight = factories.FlightFactory.create(number="KL1001", seats_total=10)
    seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")

    response = admin_client.post(
        admin_url(Flight, "changelist"), list_edit(Flight, flight.pk, seats_total="50", response_ms="300")
    )

    flight.refresh_from_db()
    assert response.status_code == 302
    assert (flight.seats_total, flight.seats_held, flight.response_ms) == (50, 1, 300)


@pytest.mark.django_db
def test_operator_cannot_shrink_a_flight_below_its_held_seats(admin_client: Client) -> None:
    flight = factories.FlightFactory.create(number="KL1001", seats_total=10)
    seat_hold(flight_number="KL1001", traveller_email="ada@example.com", idempotency_key="h-1")
    seat_hold(flight_number="KL1001", traveller_email="bob@example.com", idempotency_key="h-2")

    response = admin_client.post(
        admin_url(Flight, "changelist"), list_edit(Flight, flight.pk, seats_total="1", response_ms="0")
    )

    flight.refresh_from_db()
    assert response.status_code == 200
    assert "2 seats are held" in response.content.decode()
    assert (flight.seats_total, flight.seats_held) == (10, 2)


@pytest.mark.django_db
def test_operator_resizing_a_hotel_keeps_its_booked_rooms(admin_client: Client) -> None:
    hotel = factories.HotelFactory.create(rooms_total=10)
    room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    response = admin_client.post(
        admin_url(Hotel, "changelist"), list_edit(Hotel, hotel.pk, rooms_total="4", response_ms="250")
    )

    hotel.refresh_from_db()
    assert response.status_code == 302
    assert (hotel.rooms_total, hotel.rooms_booked, hotel.response_ms) == (4, 1, 250)


@pytest.mark.django_db
def test_operator_cannot_shrink_a_hotel_below_its_booked_rooms(admin_client: Client) -> None:
    hotel = factories.HotelFactory.create(rooms_total=10)
    room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    response = admin_client.post(
        admin_url(Hotel, "change", hotel.pk),
        {"name": hotel.name, "city": hotel.city, "rooms_total": "0", "response_ms": "0"},
    )

    hotel.refresh_from_db()
    assert response.status_code == 200
    assert "1 rooms are booked" in response.content.decode()
    assert (hotel.rooms_total, hotel.rooms_booked) == (10, 1)


@pytest.mark.django_db
def test_operator_resizing_a_car_class_keeps_its_rented_cars(admin_client: Client) -> None:
    car_class = factories.CarClassFactory.create(cars_total=10)
    car_rent(car_class_id=car_class.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    response = admin_client.post(
        admin_url(CarClass, "changelist"), list_edit(CarClass, car_class.pk, cars_total="3", response_ms="150")
    )

    car_class.refresh_from_db()
    assert response.status_code == 302
    assert (car_class.cars_total, car_class.cars_rented, car_class.response_ms) == (3, 1, 150)


@pytest.mark.django_db
def test_operator_cannot_shrink_a_car_class_below_its_rented_cars(admin_client: Client) -> None:
    car_class = factories.CarClassFactory.create(cars_total=10)
    car_rent(car_class_id=car_class.pk, traveller_email="ada@example.com", days=2, idempotency_key="c-1")

    response = admin_client.post(
        admin_url(CarClass, "changelist"), list_edit(CarClass, car_class.pk, cars_total="0", response_ms="0")
    )

    car_class.refresh_from_db()
    assert response.status_code == 200
    assert "1 cars are rented out" in response.content.decode()
    assert (car_class.cars_total, car_class.cars_rented) == (10, 1)
