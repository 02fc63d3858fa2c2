"""Business errors of the shipping service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class ShippingError(Exception):
    """The shipping service refused the request; sending it again unchanged is refused again."""

    code = "shipping_error"


class InvalidAddress(ShippingError):
    """The address lacks a country, city, first line or postal code."""

    code = "invalid_address"


class UnserviceableAddress(ShippingError):
    """No active delivery zone covers the address's country."""

    code = "unserviceable_address"


class ShipmentNotFound(ShippingError):
    """No shipment exists with the given id."""

    code = "shipment_not_found"
