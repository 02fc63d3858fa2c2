"""Business errors of the airline service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class AirlineError(Exception):
    """The airline service refused the request; sending it again unchanged is refused again."""

    code = "airline_error"


class FlightNotFound(AirlineError):
    """No flight has the given number."""

    code = "flight_not_found"


class NoSeatsLeft(AirlineError):
    """Every seat of the flight is held already."""

    code = "no_seats_left"


class HoldNotFound(AirlineError):
    """No seat hold exists with the given id."""

    code = "hold_not_found"
