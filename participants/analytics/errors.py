"""Business errors of the analytics service, each with a stable ``code`` the caller can keep."""

from __future__ import annotations


class AnalyticsError(Exception):
    """The analytics service refused the request; sending it again unchanged is refused again."""

    code = "analytics_error"


class InvalidOutcome(AnalyticsError):
    """The saga name is blank or too long, or the outcome is not completed, compensated or failed."""

    code = "invalid_outcome"
