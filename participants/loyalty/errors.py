"""Errors of the loyalty service: business refusals with a stable ``code``, and one transient failure."""

from __future__ import annotations


class LoyaltyError(Exception):
    """The loyalty service refused the request; sending it again unchanged is refused again."""

    code = "loyalty_error"


class InvalidAward(LoyaltyError):
    """The customer e-mail, the points (a whole number from 0) or the reason are not acceptable."""

    code = "invalid_award"


class InvalidAmount(LoyaltyError):
    """The amount to turn into points is not a number of zero or more."""

    code = "invalid_amount"


class LoyaltyUnavailable(Exception):
    """The loyalty service is down for this customer: retry later. Not a ``LoyaltyError``: it is no refusal."""

    code = "loyalty_unavailable"
