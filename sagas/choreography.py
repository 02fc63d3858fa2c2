"""Receivers of saga lifecycle messages, declared with ``@sagas.on(pattern)``: the message and the patterns
(sagas.delivery makes each receiver a Celery task, delivered at least once and deduplicated by message id)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

from sagas.exceptions import InvalidDefinition
from sagas.retry import RetryPolicy

RECEIVER_TASK_PREFIX = "sagas.receiver."
RECEIVER_NAME = re.compile(r"^[A-Za-z0-9_.]+\Z")
# Receivers that declare no policy: retried patiently (a receiver is off the saga's critical path).
DEFAULT_RECEIVER_RETRY = RetryPolicy(max_attempts=10, backoff=1.0, multiplier=2.0, backoff_max=300.0)


@dataclass(frozen=True, slots=True)
class SagaMessage:
    """What a receiver gets: one lifecycle event of a saga run, as it was when it happened.

    Topics: ``<saga>.started``, ``<saga>.step.<step>.completed``, ``<saga>.step.<step>.failed``,
    ``<saga>.completed``, ``<saga>.compensated``, ``<saga>.failed``, ``<saga>.cancelled``.
    """

    id: str  # unique per message: receivers are deduplicated on it
    topic: str
    saga_name: str
    run_id: str
    correlation_id: str
    step: str  # "" for the run's own events
    status: str  # the run's status after the event
    payload: dict[str, Any]  # the run's start payload
    results: dict[str, Any]  # step name -> output of every completed step
    error: dict[str, Any] | None  # the run's error (or the failed step's, for a step failure)
    occurred_at: str  # ISO 8601
    event_seq: int  # the event's position in the run's log

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SagaMessage:
        return cls(**data)


ReceiverFunction = Callable[[SagaMessage], None]


@dataclass(frozen=True, slots=True)
class Receiver:
    patterns: tuple[str, ...]
    name: str
    function: ReceiverFunction
    retry: RetryPolicy

    @property
    def task_name(self) -> str:
        return f"{RECEIVER_TASK_PREFIX}{self.name}"

    def wants(self, topic: str, *, step: bool = False) -> bool:
        """Whether ``topic`` matches one of the patterns. A step's message (``step``) matches only a pattern
        that names steps (has a ``step`` word), so ``*.completed`` means runs that completed, not steps."""
        return any(
            fnmatchcase(topic, pattern) and (not step or "step" in pattern.split(".")) for pattern in self.patterns
        )


_receivers: dict[str, Receiver] = {}
_listeners: list[Callable[[Receiver], None]] = []


def on(
    *patterns: str, name: str | None = None, retry: RetryPolicy | None = None
) -> Callable[[ReceiverFunction], ReceiverFunction]:
    """Register the decorated function as a receiver of the saga messages whose topic matches one of
    ``patterns`` (fnmatch: ``*`` matches anything, dots included). Step messages
    (``<saga>.step.<step>.completed``) go only to patterns with a ``step`` word (``orders.*.step.*``), so
    ``*.completed`` receives runs that completed.

    The function runs in a Celery task of its own (``sagas.receiver.<name>``), inside one transaction with
    the receipt that deduplicates it: redelivered messages are skipped, and an exception rolls its effects
    back and retries it per ``retry``. It never delays or fails the saga that sent the message.
    """
    if not patterns or not all(isinstance(pattern, str) and pattern for pattern in patterns):
        raise InvalidDefinition(
            f"sagas.on needs topic patterns such as 'orders.place_order.completed', got {patterns!r}."
        )
    if retry is not None and (not isinstance(retry, RetryPolicy) or retry.problems()):
        raise InvalidDefinition(f"Receiver of {patterns!r}: retry must be a valid sagas.RetryPolicy, got {retry!r}.")

    def register(function: ReceiverFunction) -> ReceiverFunction:
        receiver_name = name or f"{function.__module__}.{function.__qualname__}"
        if not RECEIVER_NAME.match(receiver_name):
            raise InvalidDefinition(f"Receiver name {receiver_name!r}: use letters, digits, '_' and '.'.")
        existing = _receivers.get(receiver_name)
        if existing is not None and existing.function.__module__ != function.__module__:
            raise InvalidDefinition(f"Two receivers are named {receiver_name!r}; pass name='...' to one of them.")
        receiver = Receiver(tuple(patterns), receiver_name, function, retry or DEFAULT_RECEIVER_RETRY)
        _receivers[receiver_name] = receiver
        for listener in _listeners:
            listener(receiver)
        return function

    return register


def receivers_of(topic: str, *, step: bool = False) -> list[Receiver]:
    """The receivers a message of ``topic`` goes to (``step``: it is a step's message)."""
    return [receiver for receiver in _receivers.values() if receiver.wants(topic, step=step)]


def all_receivers() -> list[Receiver]:
    return sorted(_receivers.values(), key=lambda receiver: receiver.name)


def on_declare(listener: Callable[[Receiver], None]) -> None:
    """Call ``listener`` for every receiver declared so far and every one declared later (sagas.delivery
    registers each one's Celery task this way)."""
    _listeners.append(listener)
    for receiver in list(_receivers.values()):
        listener(receiver)
