"""Business errors of the inventory service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class InventoryError(Exception):
    """The inventory service refused the request; sending it again unchanged is refused again."""

    code = "inventory_error"


class InvalidReservation(InventoryError):
    """The reservation has no lines, or a line without a SKU or with a quantity below one."""

    code = "invalid_reservation"


class UnknownSku(InventoryError):
    """A requested SKU is not stocked at all."""

    code = "unknown_sku"


class OutOfStock(InventoryError):
    """A requested SKU has fewer units available than requested."""

    code = "out_of_stock"


class ReservationNotFound(InventoryError):
    """No reservation exists with the given id."""

    code = "reservation_not_found"
