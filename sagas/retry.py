"""Retry policy and failure classification: which failures retry, and how long to wait."""

from __future__ import annotations

import random
import traceback
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from sagas.exceptions import InvalidDefinition, RateLimited, StepFailed, TransientError


class FailureClass(StrEnum):
    """What kind of failure an exception is; recorded with every failed attempt."""

    BUSINESS = "business"  # StepFailed: the answer is no; never retried
    TRANSIENT = "transient"  # TransientError: try again later
    RATE_LIMITED = "rate_limited"  # RateLimited: try again, not before retry_after
    TIMEOUT = "timeout"  # the step ran past its time limit
    UNKNOWN = "unknown"  # any other exception: retried when the policy's retry_on matches


def classify(exc: BaseException) -> FailureClass:
    """Return the failure class of an exception raised by a step or compensation."""
    if isinstance(exc, StepFailed):
        return FailureClass.BUSINESS
    if isinstance(exc, RateLimited):
        return FailureClass.RATE_LIMITED
    if isinstance(exc, TransientError):
        return FailureClass.TRANSIENT
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        return FailureClass.TIMEOUT
    return FailureClass.UNKNOWN


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step (or a compensation) retries; the delay before attempt n+1 is
    ``min(backoff_max, backoff * multiplier ** (n - 1))``, halved and topped up by a random half when
    ``jitter`` is on (so workers that failed together do not retry together).

    Business failures (``StepFailed``) never retry. ``TransientError``, ``RateLimited`` and timeouts
    always retry while attempts remain. Any other exception retries only if it is an instance of one
    of ``retry_on``.
    """

    max_attempts: int = 3  # attempts in all, the first included
    backoff: float = 1.0  # seconds before the second attempt
    multiplier: float = 2.0  # growth of the delay per attempt
    backoff_max: float = 60.0  # the delay never exceeds this many seconds
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def __post_init__(self) -> None:
        retry_on = tuple(self.retry_on) if isinstance(self.retry_on, list | tuple) else (self.retry_on,)
        object.__setattr__(self, "retry_on", retry_on)
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidDefinition(f"RetryPolicy.max_attempts must be an int >= 1, got {self.max_attempts!r}.")
        if self.backoff < 0 or self.backoff_max < 0:
            raise InvalidDefinition("RetryPolicy.backoff and backoff_max must not be negative.")
        if self.multiplier < 1:
            raise InvalidDefinition(f"RetryPolicy.multiplier must be >= 1, got {self.multiplier!r}.")
        for exc_type in retry_on:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise InvalidDefinition(f"RetryPolicy.retry_on takes exception classes, got {exc_type!r}.")

    @classmethod
    def from_settings(cls, values: dict[str, Any]) -> RetryPolicy:
        """Build a policy from a ``SAGAS`` settings dict (no ``retry_on``: that needs classes)."""
        return cls(**values)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether a failure on attempt number ``attempt`` (1-based) earns another attempt."""
        if attempt >= self.max_attempts:
            return False
        failure = classify(exc)
        if failure is FailureClass.BUSINESS:
            return False
        if failure is FailureClass.UNKNOWN:
            return isinstance(exc, self.retry_on)
        return True

    def delay(self, attempt: int, exc: BaseException | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        base = min(self.backoff_max, self.backoff * self.multiplier ** max(attempt - 1, 0))
        if self.jitter and base > 0:
            base = base / 2 + (rng or random).uniform(0, base / 2)
        if isinstance(exc, RateLimited):
            base = max(base, exc.retry_after)
        return round(base, 3)

    def to_spec(self) -> dict[str, Any]:
        """A JSON description of the policy, part of the saga definition's hash."""
        spec = asdict(self)
        spec["retry_on"] = [f"{t.__module__}.{t.__qualname__}" for t in self.retry_on]
        return spec


def describe_failure(exc: BaseException, *, attempt: int) -> dict[str, Any]:
    """The JSON record of a failed attempt, kept on the step (with traceback) and in events (without)."""
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": (str(exc) or repr(exc))[:2000],
        "class": classify(exc).value,
        "code": str(getattr(exc, "code", "") or ""),
        "attempt": attempt,
        "traceback": "".join(traceback.format_exception(exc))[-8000:],
    }


def failure_summary(error: dict[str, Any]) -> dict[str, Any]:
    """``describe_failure`` without the traceback, for the event log."""
    return {key: value for key, value in error.items() if key != "traceback"}
