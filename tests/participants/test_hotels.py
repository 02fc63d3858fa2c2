"""Tests of the hotels service."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.db import transaction
from django.utils import timezone

from participants.hotels.errors import BookingNotFound, FullyBooked, HotelError, HotelNotFound, InvalidStay
from participants.hotels.models import BookingStatus, Hotel, RoomBooking
from participants.hotels.services import room_book, room_cancel
from tests.factories import HotelFactory

if TYPE_CHECKING:
    from tests.conftest import RunConcurrently


def rooms(hotel: Hotel) -> tuple[int, int]:
    hotel.refresh_from_db()
    return hotel.rooms_total, hotel.rooms_booked


def conserved() -> bool:
    """Every hotel's rooms_booked equals the number of its active bookings."""
    return all(
        hotel.rooms_booked == hotel.bookings.filter(status=BookingStatus.BOOKED).count()
        for hotel in Hotel.objects.all()
    )


@pytest.mark.django_db
def test_book_takes_a_room_and_records_the_call() -> None:
    hotel = HotelFactory.create(rooms_total=3)
    before = timezone.now()

    booking = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=4, idempotency_key="b-1")

    assert booking.status == BookingStatus.BOOKED
    assert (booking.traveller_email, booking.nights) == ("ada@example.com", 4)
    assert before <= booking.started_at <= booking.finished_at <= timezone.now()
    assert rooms(hotel) == (3, 1)


@pytest.mark.django_db
def test_book_with_same_key_twice_books_once() -> None:
    hotel = HotelFactory.create(rooms_total=3)

    first = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")
    second = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    assert second.pk == first.pk
    assert RoomBooking.objects.count() == 1
    assert rooms(hotel) == (3, 1)


@pytest.mark.django_db
def test_book_repeated_after_the_hotel_filled_up_returns_the_first_booking() -> None:
    hotel = HotelFactory.create(rooms_total=1)
    first = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    second = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    assert second.pk == first.pk
    assert rooms(hotel) == (1, 1)


@pytest.mark.django_db
def test_book_at_an_unknown_hotel_raises_hotel_not_found_and_books_nothing() -> None:
    with pytest.raises(HotelNotFound, match="Hotel 999 does not exist") as excinfo:
        room_book(hotel_id=999, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    assert excinfo.value.code == "hotel_not_found"
    assert RoomBooking.objects.count() == 0


@pytest.mark.django_db
def test_book_at_a_full_hotel_raises_fully_booked_and_books_nothing() -> None:
    hotel = HotelFactory.create(name="Bairro", rooms_total=1)
    room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    with pytest.raises(FullyBooked, match=r"\(Bairro, Lisbon\) has all 1 rooms booked") as excinfo:
        room_book(hotel_id=hotel.pk, traveller_email="bob@example.com", nights=2, idempotency_key="b-2")

    assert excinfo.value.code == "fully_booked"
    assert RoomBooking.objects.count() == 1
    assert rooms(hotel) == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("nights", [0, -1, "3", 2.5, True, None])
def test_book_of_an_invalid_stay_raises_invalid_stay_and_books_nothing(nights: Any) -> None:
    hotel = HotelFactory.create(rooms_total=3)

    with pytest.raises(InvalidStay, match="whole number of at least 1") as excinfo:
        room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=nights, idempotency_key="b-1")

    assert excinfo.value.code == "invalid_stay"
    assert RoomBooking.objects.count() == 0
    assert rooms(hotel) == (3, 0)


@pytest.mark.django_db
def test_cancel_frees_the_room() -> None:
    hotel = HotelFactory.create(rooms_total=1)
    booking = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")

    cancelled = room_cancel(booking_id=booking.pk, idempotency_key="b-1:compensate")

    assert cancelled.status == BookingStatus.CANCELLED
    assert cancelled.cancel_key == "b-1:compensate"
    assert cancelled.cancelled_at is not None
    assert rooms(hotel) == (1, 0)
    room_book(hotel_id=hotel.pk, traveller_email="bob@example.com", nights=2, idempotency_key="b-2")
    assert rooms(hotel) == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("second_key", ["c-1", "c-2"])
def test_cancelling_twice_frees_one_room(second_key: str) -> None:
    hotel = HotelFactory.create(rooms_total=3)
    booking = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")
    room_book(hotel_id=hotel.pk, traveller_email="bob@example.com", nights=2, idempotency_key="b-2")
    first = room_cancel(booking_id=booking.pk, idempotency_key="c-1")

    second = room_cancel(booking_id=booking.pk, idempotency_key=second_key)

    assert second.pk == first.pk
    assert second.cancel_key == "c-1"
    assert second.cancelled_at == first.cancelled_at
    assert rooms(hotel) == (3, 1)


@pytest.mark.django_db
def test_cancel_of_a_missing_booking_raises_booking_not_found() -> None:
    with pytest.raises(BookingNotFound, match="Room booking 999 does not exist") as excinfo:
        room_cancel(booking_id=999, idempotency_key="c-1")

    assert excinfo.value.code == "booking_not_found"


@pytest.mark.django_db
def test_rooms_booked_always_equals_the_active_bookings() -> None:
    small = HotelFactory.create(rooms_total=2)
    tiny = HotelFactory.create(rooms_total=1)

    a = room_book(hotel_id=small.pk, traveller_email="a@example.com", nights=1, idempotency_key="a")
    room_book(hotel_id=small.pk, traveller_email="a@example.com", nights=1, idempotency_key="a")
    assert conserved()
    b = room_book(hotel_id=small.pk, traveller_email="b@example.com", nights=1, idempotency_key="b")
    with pytest.raises(FullyBooked):
        room_book(hotel_id=small.pk, traveller_email="c@example.com", nights=1, idempotency_key="c")
    with pytest.raises(InvalidStay):
        room_book(hotel_id=tiny.pk, traveller_email="c@example.com", nights=0, idempotency_key="d")
    assert conserved()
    room_book(hotel_id=tiny.pk, traveller_email="c@example.com", nights=1, idempotency_key="e")
    room_cancel(booking_id=a.pk, idempotency_key="cancel-a")
    room_cancel(booking_id=a.pk, idempotency_key="cancel-a")
    room_cancel(booking_id=b.pk, idempotency_key="cancel-b")

    assert conserved()
    assert rooms(small) == (2, 0)
    assert rooms(tiny) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_never_overbook_the_hotel(run_concurrently: RunConcurrently) -> None:
    hotel = HotelFactory.create(rooms_total=3)

    results = run_concurrently(
        *(
            lambda n=n: room_book(
                hotel_id=hotel.pk, traveller_email=f"t{n}@example.com", nights=2, idempotency_key=f"b-{n}"
            )
            for n in range(10)
        )
    )

    assert len([result for result in results if isinstance(result, RoomBooking)]) == 3
    assert len([result for result in results if isinstance(result, FullyBooked)]) == 7
    assert rooms(hotel) == (3, 3)
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_with_the_same_key_book_once(run_concurrently: RunConcurrently) -> None:
    # One room only, so a repeat that missed the first booking would fail with fully_booked.
    hotel = HotelFactory.create(rooms_total=1)

    results = run_concurrently(
        *(
            lambda: room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="same")
            for _ in range(4)
        )
    )

    assert all(isinstance(result, RoomBooking) for result in results), results
    assert len({result.pk for result in results}) == 1
    assert rooms(hotel) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_cancellations_of_one_booking_free_one_room(run_concurrently: RunConcurrently) -> None:
    hotel = HotelFactory.create(rooms_total=3)
    booking = room_book(hotel_id=hotel.pk, traveller_email="ada@example.com", nights=2, idempotency_key="b-1")
    room_book(hotel_id=hotel.pk, traveller_email="bob@example.com", nights=2, idempotency_key="b-2")

    results = run_concurrently(
        *(lambda n=n: room_cancel(booking_id=booking.pk, idempotency_key=f"c-{n}") for n in range(4))
    )

    assert all(isinstance(result, RoomBooking) for result in results), results
    assert len({result.cancel_key for result in results}) == 1
    assert rooms(hotel) == (3, 1)
    assert conserved()


@pytest.mark.django_db(transaction=True)
def test_two_slow_bookings_at_one_hotel_wait_for_it_at_the_same_time(run_concurrently: RunConcurrently) -> None:
    hotel = HotelFactory.create(rooms_total=5, response_ms=500)

    first, second = run_concurrently(
        lambda: room_book(hotel_id=hotel.pk, traveller_email="a@example.com", nights=2, idempotency_key="b-1"),
        lambda: room_book(hotel_id=hotel.pk, traveller_email="b@example.com", nights=2, idempotency_key="b-2"),
    )

    assert isinstance(first, RoomBooking), first
    assert isinstance(second, RoomBooking), second
    for booking in (first, second):
        assert booking.finished_at - booking.started_at >= timedelta(milliseconds=500)
    # Overlapping, and together well under the 1 s that waiting one after the other would take.
    assert max(first.started_at, second.started_at) < min(first.finished_at, second.finished_at)
    assert max(first.finished_at, second.finished_at) - min(first.started_at, second.started_at) < timedelta(
        milliseconds=900
    )
    assert rooms(hotel) == (5, 2)


@pytest.mark.django_db(transaction=True)
def test_a_slow_booking_locks_no_hotel_while_it_waits(run_concurrently: RunConcurrently) -> None:
    hotel = HotelFactory.create(rooms_total=5, response_ms=600)

    def lock_the_hotel_meanwhile() -> datetime:
        time.sleep(0.2)
        with transaction.atomic():
            # NOWAIT raises at once if the slow booking holds the row.
            Hotel.objects.select_for_update(nowait=True).get(pk=hotel.pk)
            return timezone.now()

    booking, locked_at = run_concurrently(
        lambda: room_book(hotel_id=hotel.pk, traveller_email="a@example.com", nights=2, idempotency_key="b-1"),
        lock_the_hotel_meanwhile,
    )

    assert isinstance(booking, RoomBooking), booking
    assert isinstance(locked_at, datetime), locked_at
    assert booking.started_at < locked_at < booking.finished_at


@pytest.mark.django_db(transaction=True)
def test_a_slow_cancellation_locks_neither_booking_nor_hotel_while_it_waits(
    run_concurrently: RunConcurrently,
) -> None:
    hotel = HotelFactory.create(rooms_total=5)
    booking = room_book(hotel_id=hotel.pk, traveller_email="a@example.com", nights=2, idempotency_key="b-1")
    Hotel.objects.filter(pk=hotel.pk).update(response_ms=600)

    def lock_both_meanwhile() -> datetime:
        time.sleep(0.2)
        with transaction.atomic():
            RoomBooking.objects.select_for_update(nowait=True).get(pk=booking.pk)
            Hotel.objects.select_for_update(nowait=True).get(pk=hotel.pk)
            return timezone.now()

    started_at = timezone.now()
    cancelled, locked_at = run_concurrently(
        lambda: room_cancel(booking_id=booking.pk, idempotency_key="c-1"), lock_both_meanwhile
    )

    assert isinstance(cancelled, RoomBooking), cancelled
    assert isinstance(locked_at, datetime), locked_at
    assert cancelled.cancelled_at is not None
    assert started_at < locked_at < cancelled.cancelled_at
    assert cancelled.cancelled_at - started_at >= timedelta(milliseconds=600)


def test_hotel_errors_share_a_base_with_stable_codes() -> None:
    errors = [InvalidStay, HotelNotFound, FullyBooked, BookingNotFound]

    assert all(issubclass(error, HotelError) for error in errors)
    assert [error.code for error in errors] == ["invalid_stay", "hotel_not_found", "fully_booked", "booking_not_found"]
