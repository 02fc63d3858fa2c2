"""Business errors of the orders service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class OrderError(Exception):
    """The orders service refused the request; sending it again unchanged is refused again."""

    code = "order_error"


class InvalidOrder(OrderError):
    """The order's customer e-mail or lines are not acceptable."""

    code = "invalid_order"


class OrderNotFound(OrderError):
    """No order exists with the given id."""

    code = "order_not_found"
