"""Failure: what a failed attempt of a step or compensation records, on the step row and in its events."""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sagas.masking import scrub
from sagas.retry import FailureClass, classify

# Longest message and traceback kept: a failure is read by people and stored on every attempt.
MESSAGE_LIMIT = 2000
TRACEBACK_LIMIT = 8000


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
    def from_exception(cls, exc: BaseException, *, attempt: int) -> Failure:
        """The failure an exception raised by a step's action or compensation (or by the framework for it) means."""
        return cls(
            type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=(str(exc) or repr(exc))[:MESSAGE_LIMIT],
            failure_class=classify(exc),
            code=str(getattr(exc, "code", "") or ""),
            attempt=attempt,
            traceback="".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:],
        )

    @classmethod
    def without_exception(cls, type: str, message: str, *, code: str, attempt: int) -> Failure:
        """A failure the framework found rather than caught (an attempt that never reported back, a run that
        stopped while a step waited): no exception, so no traceback, and a class of ``unknown``."""
        return cls(type=type, message=message, failure_class=FailureClass.UNKNOWN, code=code, attempt=attempt)

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

    def masked(self, secrets: Sequence[str]) -> Failure:
        """The same failure with every secret the attempt could see masked in its message and traceback."""
        if not secrets:
            return self
        return replace(self, message=scrub(self.message, secrets), traceback=scrub(self.traceback, secrets))

    def with_message(self, message: str) -> Failure:
        return replace(self, message=message)


def summary(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored failure without its traceback (also of failures stored by earlier versions, whatever keys they had)."""
    return {key: value for key, value in stored.items() if key != "traceback"}
