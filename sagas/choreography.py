"""Receivers of saga lifecycle messages: ``@sagas.on(pattern)`` makes a function a Celery task of its own,
delivered at least once from the outbox and deduplicated by message id, so its effect happens once."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

from celery import Task, shared_task
from django.db import transaction

from sagas import logs, masking, metrics
from sagas.exceptions import InvalidDefinition
from sagas.retry import RetryPolicy

logger = logging.getLogger(__name__)


def _message_fields(receiver: str, message: SagaMessage, **more: Any) -> dict[str, Any]:
    """A receiver's log fields: the run, step and topic of the message it handles."""
    return logs.fields(
        run_id=message.run_id, step=message.step or None, receiver=receiver, message_id=message.id,
        topic=message.topic, saga=message.saga_name, **more,
    )  # fmt: skip


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
        _register_task(receiver)
        return function

    return register


def receivers_of(topic: str, *, step: bool = False) -> list[Receiver]:
    """The receivers a message of ``topic`` goes to (``step``: it is a step's message)."""
    return [receiver for receiver in _receivers.values() if receiver.wants(topic, step=step)]


def all_receivers() -> list[Receiver]:
    return sorted(_receivers.values(), key=lambda receiver: receiver.name)


def _register_task(receiver: Receiver) -> None:
    from sagas.tasks import SagaTask

    def deliver(self: Task, message_id: str | dict[str, Any]) -> None:
        message = load_message(message_id)
        if message is None:
            logger.warning(
                "receiver %s: saga message %s is not in the outbox; skipped",
                receiver.name,
                message_id,
                extra=logs.fields(receiver=receiver.name, message_id=str(message_id)),
            )
            return
        receive(self, receiver, message)

    deliver.__doc__ = f"Delivers saga messages matching {', '.join(receiver.patterns)} to {receiver.name}."
    shared_task(name=receiver.task_name, bind=True, base=SagaTask)(deliver)


def load_message(reference: str | dict[str, Any]) -> SagaMessage | None:
    """The message a receiver's task names by its outbox id: the task itself carries no payload, so no secret
    travels through the broker, Flower or the result backend. (A task published before messages went by id
    carried the whole message; only its id is read.)"""
    from django.core.exceptions import ValidationError

    from sagas.models import SagaOutbox

    message_id = str(reference.get("id", "")) if isinstance(reference, dict) else reference
    try:
        stored = SagaOutbox.objects.filter(pk=message_id).values_list("message", flat=True).first()
    except ValidationError:  # not a message id at all
        return None
    return SagaMessage.from_json(stored) if stored is not None else None


def receive(task: Task, receiver: Receiver, message: SagaMessage) -> None:
    """Call the receiver once per message id: its effects and the receipt commit together."""
    from sagas.models import SagaReceipt

    try:
        with transaction.atomic():
            receipt, created = SagaReceipt.objects.get_or_create(receiver=receiver.name, message_id=message.id)
            if not created:
                SagaReceipt.objects.filter(pk=receipt.pk).update(duplicates=receipt.duplicates + 1)
                outcome = "duplicate"
            else:
                receiver.function(message)
                outcome = "received"
    except Exception as raised:
        attempt = task.request.retries + 1
        retried = receiver.retry.should_retry(raised, attempt)
        # What the worker log and the result backend keep: the message's secrets masked in the error's text.
        exc = masking.scrubbed_exception(raised, masking.secret_values(message.payload, message.results))
        metrics.receiver_delivery(receiver.name, "retried" if retried else "gave_up")
        if retried:
            delay = receiver.retry.delay(attempt, raised)
            logger.warning(
                "receiver %s failed on message %s (%s), attempt %d; retrying in %.1fs: %s",
                receiver.name,
                message.id,
                message.topic,
                attempt,
                delay,
                exc,
                extra=_message_fields(receiver.name, message, attempt=attempt),
            )
            raise task.retry(countdown=delay, exc=exc) from None
        logger.error(
            "receiver %s gave up on message %s (%s) after %d attempts: %s",
            receiver.name,
            message.id,
            message.topic,
            attempt,
            exc,
            extra=_message_fields(receiver.name, message, attempt=attempt),
        )
        if exc is raised:
            raise
        raise exc from None
    metrics.receiver_delivery(receiver.name, outcome)
    if outcome == "duplicate":
        logger.info(
            "receiver %s: message %s (%s) already received",
            receiver.name,
            message.id,
            message.topic,
            extra=_message_fields(receiver.name, message),
        )
