"""Errors of the payments service: business refusals with a stable ``code``, and one transient failure."""

from __future__ import annotations


class PaymentError(Exception):
    """The payments service refused the request; sending it again unchanged is refused again."""

    code = "payment_error"


class InvalidAmount(PaymentError):
    """The amount is not a positive number of cents."""

    code = "invalid_amount"


class AccountNotFound(PaymentError):
    """No account exists with the given id."""

    code = "account_not_found"


class CardDeclined(PaymentError):
    """The account's card is declined."""

    code = "card_declined"


class InsufficientFunds(PaymentError):
    """The account's balance is lower than the amount."""

    code = "insufficient_funds"


class PaymentNotFound(PaymentError):
    """No payment exists with the given id."""

    code = "payment_not_found"


class RefundGatewayUnavailable(Exception):
    """The refund gateway is down for now: retry later. Not a ``PaymentError``: it is no refusal."""

    code = "refund_gateway_unavailable"
