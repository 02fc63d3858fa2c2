"""Business errors of the fraud service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class FraudError(Exception):
    """The fraud service refused the request; sending it again unchanged is refused again."""

    code = "fraud_error"


class InvalidScreening(FraudError):
    """The traveller's e-mail address is not valid, or the amount is not a positive number of cents."""

    code = "invalid_screening"


class TravellerBlocked(FraudError):
    """The traveller is on the blocked list: the screening refused the booking."""

    code = "traveller_blocked"
