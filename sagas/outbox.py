"""The transactional outbox: lifecycle messages stored with the state change, relayed to receivers on commit.

A message is written in the transaction of the event it announces, only when some receiver's pattern
matches its topic. After commit it is published to each receiver's task and marked published; a process
that dies in between leaves it unpublished, and the reaper relays it (at least once; receivers dedupe). A
delivery the broker loses after the publish leaves a receiver without its receipt: the reaper publishes the
message again to that receiver, a bounded number of times.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from celery import current_app
from django.db import transaction
from django.utils import timezone

from sagas import backlog, choreography, logs, selectors, tracing
from sagas.conf import sagas_settings
from sagas.models import SagaEvent, SagaOutbox, SagaReceipt, SagaRun
from sagas.states import DONE_STEP_STATES, EventType, RunStatus

logger = logging.getLogger(__name__)

RUN_TOPICS: dict[str, str] = {
    EventType.SAGA_STARTED: "started",
    EventType.SAGA_COMPLETED: "completed",
    EventType.SAGA_COMPENSATED: "compensated",
    EventType.SAGA_FAILED: "failed",
}
# A signal received and a step resolved by hand after the pivot complete a step as its success does.
STEP_TOPICS: dict[str, str] = {
    EventType.STEP_SUCCEEDED: "completed",
    EventType.SIGNAL_RECEIVED: "completed",
    EventType.STEP_RESOLVED: "completed",
    EventType.STEP_FAILED: "failed",
}


def topic_of(run: SagaRun, event: SagaEvent) -> str | None:
    """The topic an event is announced under, or None for events that are not part of the lifecycle."""
    if event.type in RUN_TOPICS:
        return f"{run.saga_name}.{RUN_TOPICS[event.type]}"
    if event.type == EventType.SAGA_CANCELLED and event.data.get("to") == RunStatus.CANCELLED:
        return f"{run.saga_name}.cancelled"
    if event.type in STEP_TOPICS:
        return f"{run.saga_name}.step.{event.step}.{STEP_TOPICS[event.type]}"
    return None


def listened(run: SagaRun, event: SagaEvent) -> bool:
    """Whether some receiver listens to ``event``'s topic (then appending it also stores a message)."""
    topic = topic_of(run, event)
    return topic is not None and bool(choreography.receivers_of(topic, step=bool(event.step)))


def record(run: SagaRun, event: SagaEvent) -> None:
    """In the event's transaction: store its message if anyone listens, and relay it after commit."""
    topic = topic_of(run, event)
    if topic is None or not choreography.receivers_of(topic, step=bool(event.step)):
        return
    results = dict(run.steps.filter(status__in=DONE_STEP_STATES).values_list("name", "output"))
    error = event.data.get("error") if event.step else run.error
    message = SagaOutbox(run_id=run.pk, event=event, topic=topic, created_at=event.created_at)
    message.message = choreography.SagaMessage(
        id=str(message.id),
        topic=topic,
        saga_name=run.saga_name,
        run_id=str(run.pk),
        correlation_id=run.correlation_id,
        step=event.step,
        status=run.status,
        payload=run.payload,
        results=results,
        error={key: value for key, value in error.items() if key != "traceback"} if error else None,
        occurred_at=event.created_at.isoformat(),
        event_seq=event.seq,
    ).to_json()
    message.save(force_insert=True)
    transaction.on_commit(lambda: relay([message.pk]), robust=True)


def relay(ids: list[uuid.UUID]) -> int:
    """Publish unpublished messages (by id) to their receivers and mark them published; how many were.

    Each message is locked while it is published (SKIP LOCKED), so the on-commit relay and the reaper
    rarely both publish one; when they do, receivers dedupe.
    """
    published = 0
    for message_id in ids:
        with transaction.atomic():
            message = (
                SagaOutbox.objects.select_for_update(skip_locked=True)
                .filter(pk=message_id, published_at__isnull=True)
                .first()
            )
            if message is None:
                continue
            receivers = _receivers(message)
            if _publish(message, receivers):
                SagaOutbox.objects.filter(pk=message.pk).update(
                    published_at=timezone.now(), receivers=[receiver.name for receiver in receivers]
                )
                published += 1
            else:
                SagaOutbox.objects.filter(pk=message.pk).update(attempts=message.attempts + 1)
    return published


def _receivers(message: SagaOutbox) -> list[choreography.Receiver]:
    return choreography.receivers_of(message.topic, step=bool(message.message.get("step")))


def _publish(message: SagaOutbox, receivers: list[choreography.Receiver]) -> bool:
    options = {"queue": sagas_settings.QUEUE} if sagas_settings.QUEUE else {}

    def send() -> None:
        for receiver in receivers:
            current_app.send_task(
                receiver.task_name,
                args=[str(message.pk)],  # the id only: the receiver loads the message (and its secrets) itself
                task_id=f"{message.pk}:{receiver.name}",
                headers=backlog.sent_now(),
                **options,
            )

    try:
        # With tracing on, the deliveries carry the run's trace context, also when the reaper relays them.
        tracing.bound(send, message.run_id, lambda: selectors.trace_context(message.run_id))()
    except Exception:
        # The state change is committed; only the announcement waits. The reaper tries again.
        logger.exception(
            "could not publish saga message %s (%s); the reaper will relay it",
            message.pk,
            message.topic,
            extra=logs.fields(run_id=message.run_id, message_id=str(message.pk), topic=message.topic),
        )
        return False
    return True


def unpublished_ids() -> list[uuid.UUID]:
    """Messages still unpublished ``OUTBOX_RELAY_AFTER`` seconds after they were written: one indexed query."""
    cutoff = timezone.now() - timedelta(seconds=sagas_settings.OUTBOX_RELAY_AFTER)
    stale = SagaOutbox.objects.filter(published_at__isnull=True, created_at__lt=cutoff).order_by("created_at")
    return list(stale.values_list("pk", flat=True)[: sagas_settings.REAPER_BATCH])


def relay_stuck() -> int:
    """The reaper's part: relay every message a crash or a broker outage left unpublished."""
    ids = unpublished_ids()
    if not ids:
        return 0
    published = relay(ids)
    logger.warning("reaper relayed %d of %d unpublished saga message(s)", published, len(ids))
    return published


def unsettled(now: datetime | None = None, behind: float = 0.0) -> list[tuple[uuid.UUID, list[str]]]:
    """Published messages not yet known delivered, ``OUTBOX_REDELIVER_AFTER`` seconds (plus ``behind``, the
    seconds the queue is behind) after their last publish, with the receivers they were published to: one indexed
    query."""
    cutoff = _redeliver_cutoff(now or timezone.now(), behind)
    found = SagaOutbox.objects.filter(settled_at__isnull=True, published_at__lt=cutoff).order_by("published_at")
    return [(pk, list(names)) for pk, names in found.values_list("pk", "receivers")[: sagas_settings.REAPER_BATCH]]


def redeliver_lost(behind: float | None = None, forgotten_at: datetime | None = None) -> int:
    """The reaper's part: settle the published messages every receiver has a receipt for, and publish the others
    again to the receivers without one (their delivery was lost: a Redis restarted without its data, a worker
    killed holding it); how many were published again. After ``OUTBOX_REDELIVER_MAX`` redeliveries a message is
    settled as it stands, with an error in the log: its receiver fails for good, or is gone.

    A delivery still waiting behind a long queue is not lost: the grace runs from the publish plus the age of the
    oldest message waiting (sagas.backlog), as the reaper's does for runs. Without it a backlog longer than the
    grace is published again into the same queue, and after ``OUTBOX_REDELIVER_MAX`` copies in it the message is
    given up while every copy still waits, to be lost if the broker then loses its queue. And a message whose last
    copy was published before ``forgotten_at`` (when Redis last lost its data) is published again whatever its
    count: that copy went with the data, so the count says nothing of its receiver."""
    behind = backlog.queue_delay() if behind is None else behind
    candidates = unsettled(behind=behind)
    if not candidates:
        return 0
    receipts = SagaReceipt.objects.filter(message_id__in=[pk for pk, _ in candidates])
    received: dict[uuid.UUID, set[str]] = {}
    for message_id, receiver in receipts.values_list("message_id", "receiver"):
        received.setdefault(message_id, set()).add(receiver)
    delivered = [pk for pk, names in candidates if set(names) <= received.get(pk, set())]
    if delivered:
        SagaOutbox.objects.filter(pk__in=delivered).update(settled_at=timezone.now())
    lost = {pk: set(names) - received.get(pk, set()) for pk, names in candidates if pk not in delivered}
    again = sum(_redeliver(pk, missing, behind, forgotten_at) for pk, missing in lost.items())
    if again:
        logger.warning("reaper published %d saga message(s) again: a receiver had no receipt", again)
    return again


def _redeliver_cutoff(now: datetime, behind: float) -> datetime:
    return now - timedelta(seconds=sagas_settings.OUTBOX_REDELIVER_AFTER + behind)


def _redeliver(
    message_id: uuid.UUID, missing: set[str], behind: float = 0.0, forgotten_at: datetime | None = None
) -> bool:
    """Publish one message again to the receivers of ``missing`` still declared, under its row lock; whether it
    was."""
    cutoff = _redeliver_cutoff(timezone.now(), behind)
    with transaction.atomic():
        message = (
            SagaOutbox.objects.select_for_update(skip_locked=True)
            .filter(pk=message_id, settled_at__isnull=True, published_at__lt=cutoff)
            .first()
        )
        if message is None:
            return False
        receivers = [receiver for receiver in _receivers(message) if receiver.name in missing]
        fields = logs.fields(run_id=message.run_id, message_id=str(message.pk), topic=message.topic)
        assert message.published_at is not None  # unsettled messages are published ones
        went_with_redis = forgotten_at is not None and message.published_at < forgotten_at
        if not receivers or (message.redeliveries >= sagas_settings.OUTBOX_REDELIVER_MAX and not went_with_redis):
            SagaOutbox.objects.filter(pk=message.pk).update(settled_at=timezone.now())
            logger.error(
                "saga message %s (%s) has no receipt from %s after %d redeliveries; not publishing it again",
                message.pk,
                message.topic,
                ", ".join(sorted(missing)),
                message.redeliveries,
                extra=fields,
            )
            return False
        if not _publish(message, receivers):
            return False
        SagaOutbox.objects.filter(pk=message.pk).update(
            published_at=timezone.now(), redeliveries=message.redeliveries + 1
        )
        logger.warning(
            "saga message %s (%s) published again to %s: no receipt %ds after it was published",
            message.pk,
            message.topic,
            ", ".join(receiver.name for receiver in receivers),
            sagas_settings.OUTBOX_REDELIVER_AFTER,
            extra=fields,
        )
        return True
