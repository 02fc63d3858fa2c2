"""Failure classes and the retry policy: which failures retry, how often, and how long to wait."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from sagas.exceptions import CircuitOpen, InvalidPayload, RateLimited, StepFailed, TransientError


class FailureClass(StrEnum):
    """What kind of failure an exception is; recorded with every failed attempt."""

    INVALID_REQUEST = "invalid_request"  # StepFailed: asked again, the answer stays no; never retried
    TRANSIENT = "transient"  # TransientError: try again later
    RATE_LIMITED = "rate_limited"  # RateLimited: try again, not before retry_after
    TIMEOUT = "timeout"  # the step ran past its time limit
    CIRCUIT_OPEN = "circuit_open"  # the service's breaker is open: not called; try after its recovery
    UNKNOWN = "unknown"  # any other exception: retried when the policy's retry_on matches


RETRYABLE_CLASSES = frozenset(FailureClass) - {FailureClass.INVALID_REQUEST}


def classify(exc: BaseException) -> FailureClass:
    """Return the failure class of an exception raised by a step or compensation."""
    if isinstance(exc, StepFailed | InvalidPayload):
        return FailureClass.INVALID_REQUEST
    if isinstance(exc, CircuitOpen):
        return FailureClass.CIRCUIT_OPEN
    if isinstance(exc, RateLimited):
        return FailureClass.RATE_LIMITED
    if isinstance(exc, TransientError):
        return FailureClass.TRANSIENT
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        return FailureClass.TIMEOUT
    return FailureClass.UNKNOWN


@dataclass(frozen=True, slots=True)
class ClassRetry:
    """Per-failure-class changes to a RetryPolicy; a field left None keeps the policy's value."""

    max_attempts: int | None = None
    backoff: float | None = None
    multiplier: float | None = None
    backoff_max: float | None = None
    jitter: bool | None = None


def _number_problems(values: Mapping[str, Any]) -> list[str]:
    problems = []
    attempts = values.get("max_attempts")
    if attempts is not None and (not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1):
        problems.append(f"max_attempts must be an int >= 1, got {attempts!r}")
    for name in ("backoff", "backoff_max"):
        value = values.get(name)
        if value is not None and (not isinstance(value, int | float) or value < 0):
            problems.append(f"{name} must be a number >= 0, got {value!r}")
    multiplier = values.get("multiplier")
    if multiplier is not None and (not isinstance(multiplier, int | float) or multiplier < 1):
        problems.append(f"multiplier must be a number >= 1, got {multiplier!r}")
    return problems


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step (or a compensation) retries.

    The delay before attempt n+1 is ``min(backoff_max, backoff * multiplier ** (n - 1))``; with ``jitter``
    it is halved and topped up by a random amount up to the other half, so workers that failed together
    do not retry together. ``RateLimited(retry_after=s)`` and an open circuit wait at least as long as they
    ask. ``max_attempts`` counts every attempt, the first included, whatever failed.

    By class: ``invalid_request`` (``StepFailed``) never retries; ``transient``, ``rate_limited``,
    ``timeout`` and ``circuit_open`` retry while attempts remain; ``unknown`` (any other exception) retries
    only if it is an instance of one of ``retry_on``. ``overrides`` changes any of the numbers for one
    class, e.g. ``{"timeout": {"max_attempts": 2}, "rate_limited": {"backoff": 5.0}}``.

    Mistakes (``max_attempts=0``, an unknown class) are reported, naming the saga and step, when the saga
    class that uses the policy is defined.
    """

    max_attempts: int = 3
    backoff: float = 1.0  # seconds before the second attempt
    multiplier: float = 2.0  # growth of the delay per attempt
    backoff_max: float = 60.0  # no delay is longer than this
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))
    overrides: Mapping[str, ClassRetry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        retry_on = tuple(self.retry_on) if isinstance(self.retry_on, list | tuple) else (self.retry_on,)
        object.__setattr__(self, "retry_on", retry_on)
        if isinstance(self.overrides, Mapping):
            overrides = {
                str(name): ClassRetry(**value) if isinstance(value, Mapping) and _known_fields(value) else value
                for name, value in self.overrides.items()
            }
            object.__setattr__(self, "overrides", overrides)

    def problems(self) -> list[str]:
        """What is wrong with this policy, in words; empty when it is usable."""
        problems = _number_problems({f.name: getattr(self, f.name) for f in fields(self)})
        for exc_type in self.retry_on:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                problems.append(f"retry_on takes exception classes, got {exc_type!r}")
        if not isinstance(self.overrides, Mapping):
            return [*problems, f"overrides must be a dict of failure class -> settings, got {self.overrides!r}"]
        known = ", ".join(sorted(RETRYABLE_CLASSES))
        for name, override in self.overrides.items():
            if name == FailureClass.INVALID_REQUEST:
                problems.append("overrides: invalid_request is never retried and takes no settings")
            elif name not in RETRYABLE_CLASSES:
                problems.append(f"overrides: unknown failure class {name!r} (known: {known})")
            elif not isinstance(override, ClassRetry):
                allowed = ", ".join(f.name for f in fields(ClassRetry))
                problems.append(f"overrides[{name!r}] takes {allowed}, got {override!r}")
            else:
                values = {f.name: getattr(override, f.name) for f in fields(override)}
                problems += [f"overrides[{name!r}]: {problem}" for problem in _number_problems(values)]
        return problems

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> RetryPolicy:
        """Build a policy from a ``SAGAS`` settings dict (no ``retry_on``: that needs classes)."""
        return cls(**values)

    def _for(self, failure: FailureClass) -> RetryPolicy:
        override = self.overrides.get(failure)
        if override is None:
            return self
        changes = {f.name: getattr(override, f.name) for f in fields(override) if getattr(override, f.name) is not None}
        return RetryPolicy(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes, "overrides": {}})

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether a failure on attempt number ``attempt`` (1-based) earns another attempt."""
        failure = classify(exc)
        if failure is FailureClass.INVALID_REQUEST:
            return False
        if attempt >= self._for(failure).max_attempts:
            return False
        if failure is FailureClass.UNKNOWN:
            return isinstance(exc, self.retry_on)
        return True

    def delay(self, attempt: int, exc: BaseException | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        policy = self._for(classify(exc)) if exc is not None else self
        base = min(policy.backoff_max, policy.backoff * policy.multiplier ** max(attempt - 1, 0))
        if policy.jitter and base > 0:
            base = base / 2 + (rng or random).uniform(0, base / 2)
        if isinstance(exc, RateLimited | CircuitOpen):
            base = max(base, exc.retry_after)
        return round(base, 3)

    def bounds(self, attempt: int, exc: BaseException | None = None) -> tuple[float, float]:
        """The least and the most ``delay`` can choose after failed attempt ``attempt``."""
        policy = self._for(classify(exc)) if exc is not None else self
        base = min(policy.backoff_max, policy.backoff * policy.multiplier ** max(attempt - 1, 0))
        low = base / 2 if policy.jitter else base
        floor = exc.retry_after if isinstance(exc, RateLimited | CircuitOpen) else 0.0
        # Rounded as delay() rounds, so every delay it chooses lies within.
        return round(max(low, floor), 3), round(max(base, floor), 3)

    def to_spec(self) -> dict[str, Any]:
        """A JSON description of the policy, part of the saga definition's hash."""
        return {
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "multiplier": self.multiplier,
            "backoff_max": self.backoff_max,
            "jitter": self.jitter,
            "retry_on": [f"{t.__module__}.{t.__qualname__}" for t in self.retry_on if isinstance(t, type)],
            "overrides": {
                name: {f.name: getattr(o, f.name) for f in fields(o) if getattr(o, f.name) is not None}
                for name, o in sorted(self.overrides.items())
                if isinstance(o, ClassRetry)
            },
        }


def _known_fields(values: Mapping[str, Any]) -> bool:
    return set(values) <= {f.name for f in fields(ClassRetry)}
