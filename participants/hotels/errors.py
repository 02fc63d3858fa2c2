"""Business errors of the hotels service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class HotelError(Exception):
    """The hotels service refused the request; sending it again unchanged is refused again."""

    code = "hotel_error"


class InvalidStay(HotelError):
    """The number of nights is not a whole number of at least one."""

    code = "invalid_stay"


class HotelNotFound(HotelError):
    """No hotel exists with the given id."""

    code = "hotel_not_found"


class FullyBooked(HotelError):
    """Every room of the hotel is booked already."""

    code = "fully_booked"


class BookingNotFound(HotelError):
    """No room booking exists with the given id."""

    code = "booking_not_found"
