"""Business errors of the car rental service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class CarError(Exception):
    """The car rental service refused the request; sending it again unchanged is refused again."""

    code = "car_error"


class InvalidRental(CarError):
    """The number of days is not a whole number of at least one."""

    code = "invalid_rental"


class CarClassNotFound(CarError):
    """No car class exists with the given id."""

    code = "car_class_not_found"


class NoCarsAvailable(CarError):
    """Every car of the class is rented out already."""

    code = "no_cars_available"


class RentalNotFound(CarError):
    """No car rental exists with the given id."""

    code = "rental_not_found"
