"""Writes of the hotels service: book a room and cancel the booking, both idempotent on their key."""

from __future__ import annotations

import time

from django.db import IntegrityError, transaction
from django.utils import timezone

from participants.hotels.errors import BookingNotFound, FullyBooked, HotelNotFound, InvalidStay
from participants.hotels.models import BookingStatus, Hotel, RoomBooking


def room_book(*, hotel_id: int, traveller_email: str, nights: int, idempotency_key: str) -> RoomBooking:
    """Book one room at a hotel for a traveller's stay of ``nights``.

    Waits the hotel's ``response_ms`` first, holding no lock, as a remote hotel would. A repeat with
    the same ``idempotency_key`` returns the first call's booking and books nothing more. Raises
    ``InvalidStay``, ``HotelNotFound`` or ``FullyBooked``, having booked nothing.
    """
    started_at = timezone.now()
    existing = RoomBooking.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing
    if not isinstance(nights, int) or isinstance(nights, bool) or nights < 1:
        raise InvalidStay(f"A stay of {nights!r} nights cannot be booked; it must be a whole number of at least 1.")
    response_ms = Hotel.objects.filter(pk=hotel_id).values_list("response_ms", flat=True).first()
    if response_ms is None:
        raise HotelNotFound(f"Hotel {hotel_id} does not exist, so no room can be booked there.")
    _respond_after(response_ms)

    with transaction.atomic():
        hotel = Hotel.objects.select_for_update().filter(pk=hotel_id).first()
        # Looked up after the lock: a concurrent call with this key that held it has committed by
        # now, so a repeat never fails with fully_booked because of its own first booking.
        existing = RoomBooking.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        if hotel is None:
            raise HotelNotFound(f"Hotel {hotel_id} does not exist, so no room can be booked there.")
        if hotel.rooms_booked >= hotel.rooms_total:
            raise FullyBooked(
                f"Hotel {hotel.pk} ({hotel.name}, {hotel.city}) has all {hotel.rooms_total} rooms booked."
            )

        try:
            # A savepoint, so losing a race on the key leaves the outer transaction usable.
            with transaction.atomic():
                booking = RoomBooking.objects.create(
                    hotel=hotel,
                    traveller_email=traveller_email,
                    nights=nights,
                    idempotency_key=idempotency_key,
                    started_at=started_at,
                    finished_at=timezone.now(),
                )
        except IntegrityError:
            existing = RoomBooking.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing
        hotel.rooms_booked += 1
        hotel.save(update_fields=["rooms_booked"])
        return booking


def room_cancel(*, booking_id: int, idempotency_key: str) -> RoomBooking:
    """Cancel a room booking, freeing its room, once.

    Waits the hotel's ``response_ms`` first, holding no lock. Cancelling an already cancelled booking
    returns it unchanged. Raises ``BookingNotFound`` when no booking has ``booking_id``.
    """
    booking = RoomBooking.objects.select_related("hotel").filter(pk=booking_id).first()
    if booking is None:
        raise BookingNotFound(f"Room booking {booking_id} does not exist, so it cannot be cancelled.")
    if booking.status == BookingStatus.CANCELLED:
        return booking
    _respond_after(booking.hotel.response_ms)

    with transaction.atomic():
        booking = RoomBooking.objects.select_for_update().get(pk=booking_id)
        if booking.status == BookingStatus.CANCELLED:
            return booking
        hotel = Hotel.objects.select_for_update().get(pk=booking.hotel_id)
        hotel.rooms_booked -= 1
        hotel.save(update_fields=["rooms_booked"])

        booking.status = BookingStatus.CANCELLED
        booking.cancel_key = idempotency_key
        booking.cancelled_at = timezone.now()
        booking.save(update_fields=["status", "cancel_key", "cancelled_at"])
        return booking


def _respond_after(response_ms: int) -> None:
    # Outside any transaction of ours: two calls at once overlap here instead of queueing on a row lock.
    if response_ms:
        time.sleep(response_ms / 1000)
