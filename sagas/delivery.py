"""The Celery tasks that deliver saga messages to their receivers: at least once, from the outbox, deduplicated by
message id so each receiver's effect happens once."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.core.exceptions import ValidationError
from django.db import transaction

from sagas import choreography, logs, masking, metrics, tracing
from sagas.choreography import Receiver, SagaMessage
from sagas.models import SagaOutbox, SagaReceipt
from sagas.tasks import SagaTask

logger = logging.getLogger(__name__)


def _message_fields(receiver: str, message: SagaMessage, **more: Any) -> dict[str, Any]:
    """A receiver's log fields: the run, step and topic of the message it handles."""
    return logs.fields(
        run_id=message.run_id, step=message.step or None, receiver=receiver, message_id=message.id,
        topic=message.topic, saga=message.saga_name, **more,
    )  # fmt: skip


def register_receiver_task(receiver: Receiver) -> None:
    """Register the Celery task that delivers ``receiver``'s messages, ``sagas.receiver.<name>``."""

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
        with tracing.receiving(receiver.name, message, self.request.retries + 1) as span:
            span.ended(receive(self, receiver, message))

    deliver.__doc__ = f"Delivers saga messages matching {', '.join(receiver.patterns)} to {receiver.name}."
    shared_task(name=receiver.task_name, bind=True, base=SagaTask)(deliver)


def load_message(reference: str | dict[str, Any]) -> SagaMessage | None:
    """The message a receiver's task names by its outbox id: the task itself carries no payload, so no secret
    travels through the broker, Flower or the result backend. (A task published before messages went by id
    carried the whole message; only its id is read.)"""
    message_id = str(reference.get("id", "")) if isinstance(reference, dict) else reference
    try:
        stored = SagaOutbox.objects.filter(pk=message_id).values_list("message", flat=True).first()
    except ValidationError:  # not a message id at all
        return None
    return SagaMessage.from_json(stored) if stored is not None else None


def receive(task: Task, receiver: Receiver, message: SagaMessage) -> str:
    """Call the receiver once per message id: its effects and the receipt commit together. Returns
    ``"received"`` or ``"duplicate"``."""
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
    return outcome


choreography.on_declare(register_receiver_task)
