"""Failure: what a failed attempt of a step or compensation records, on the step row and in its events."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sagas.masking import scrub
from sagas.retry import FailureClass, classify
from sagas.states import CIRCUIT_REFUSAL

# Longest message and traceback kept: a failure is read by people and stored on every attempt.
MESSAGE_LIMIT = 2000
TRACEBACK_LIMIT = 8000

# What a failure the framework raised about itself may reveal: its text names steps, services and runs only.
NO_SECRETS: tuple[str, ...] = ()


def stored_text(text: str, secrets: Sequence[str], limit: int, *, keep_end: bool = False) -> str:
    """``text`` as a failure stores it: every secret masked first, then cut to ``limit`` characters (its start, or
    with ``keep_end`` its end). In this order, a secret that straddles the cut cannot leave its front or its back
    in clear. The one place a failure's text is made fit to store (tests/sagas/test_failure_masking.py)."""
    masked = scrub(text, secrets) if secrets else text
    return masked[-limit:] if keep_end else masked[:limit]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt. Stored as JSON with the keys ``type``, ``message``, ``class``, ``code``, ``attempt`` and
    ``traceback`` (the step's ``error`` and ``failures``, the events' ``error``); the run's error and the event log
    keep its summary, without the traceback."""

    type: str  # the exception's dotted class name, or the framework's name for what happened ("sagas.WorkerLost")
    message: str
    failure_class: FailureClass  # how the retry policy and the breaker treat it
    code: str = ""  # a short machine-readable reason ("card_declined"), when the exception carried one
    attempt: int = 0  # the attempt it ended, 1-based
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException, *, attempt: int, secrets: Sequence[str]) -> Failure:
        """The failure an exception raised by a step's action or compensation (or by the framework for it) means,
        with ``secrets`` (the masked values the code that raised could see: ``masking.secret_values``) masked in
        its message and traceback; ``NO_SECRETS`` for the framework's own exceptions about itself."""
        return cls(
            type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=stored_text(str(exc) or repr(exc), secrets, MESSAGE_LIMIT),
            failure_class=classify(exc),
            code=str(getattr(exc, "code", "") or ""),
            attempt=attempt,
            traceback=stored_text("".join(traceback.format_exception(exc)), secrets, TRACEBACK_LIMIT, keep_end=True),
        )

    @classmethod
    def without_exception(cls, type: str, message: str, *, code: str, attempt: int) -> Failure:
        """A failure the framework found rather than caught (an attempt that never reported back, a run that
        stopped while a step waited): no exception, so no traceback, and a class of ``unknown``. Its message is
        the framework's own text (steps, services, runs, times), so there is nothing to mask."""
        return cls(
            type=type,
            message=stored_text(message, NO_SECRETS, MESSAGE_LIMIT),
            failure_class=FailureClass.UNKNOWN,
            code=code,
            attempt=attempt,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "class": self.failure_class.value,
            "code": self.code,
            "attempt": self.attempt,
            "traceback": self.traceback,
        }

    def summary(self) -> dict[str, Any]:
        """Its JSON without the traceback: what the run's error and the event log keep."""
        return summary(self.to_json())

    def with_message(self, message: str) -> Failure:
        """The same failure told in the framework's own words (no secret in them)."""
        return replace(self, message=stored_text(message, NO_SECRETS, MESSAGE_LIMIT))


def with_refusal(failures: Sequence[Mapping[str, Any]], refusal: dict[str, Any]) -> list[dict[str, Any]]:
    """A step's ``failures`` log after one more refusal by an open circuit breaker: the refusal replaces the one
    before it (a count of them is on the step), so an outage of a day does not grow the log by thousands."""
    kept = [dict(entry) for entry in failures if entry.get("kind") != CIRCUIT_REFUSAL]
    return [*kept, refusal]


def summary(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored failure without its traceback (also of failures stored by earlier versions, whatever keys they had)."""
    return {key: value for key, value in stored.items() if key != "traceback"}
