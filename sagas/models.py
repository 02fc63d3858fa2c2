"""Saga definitions, runs, step runs and the append-only event log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import models
from django.utils import timezone

from sagas.states import ACTIVE_RUN_STATES, EventType, RunStatus, StepStatus


class SagaDefinition(models.Model):
    name = models.CharField("name", max_length=200, help_text="The saga's registered name.")
    version = models.PositiveIntegerField("version", help_text="Bumped whenever the steps change.")
    spec = models.JSONField("spec", help_text="The steps, policies and timeouts as declared in code.")
    spec_hash = models.CharField(
        "spec hash", max_length=64, help_text="SHA-256 of the canonical spec; a change needs a new version."
    )
    created_at = models.DateTimeField("created at", auto_now_add=True, help_text="When first synced.")

    class Meta:
        verbose_name = "saga definition"
        verbose_name_plural = "saga definitions"
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="sagas_definition_name_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class SagaRun(models.Model):
    id = models.UUIDField("id", primary_key=True, default=uuid.uuid4, editable=False, help_text="The run's id.")
    definition = models.ForeignKey(
        SagaDefinition,
        on_delete=models.PROTECT,
        related_name="runs",
        verbose_name="definition",
        help_text="The definition (name + version) this run executes.",
    )
    saga_name = models.CharField("saga", max_length=200, help_text="Name of the saga.")
    version = models.PositiveIntegerField("version", help_text="Version of the saga this run keeps.")
    status = models.CharField(
        "status", max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING, help_text="Run status."
    )
    payload = models.JSONField("payload", default=dict, help_text="The payload the saga was started with.")
    idempotency_key = models.CharField(
        "idempotency key",
        max_length=255,
        null=True,
        blank=True,
        unique=True,
        help_text="Starting again with this key returns this run.",
    )
    search_text = models.TextField(
        "search text",
        blank=True,
        default="",
        help_text="The payload values the saga marks searchable (Saga.searchable), for the admin's search.",
    )
    correlation_id = models.CharField(
        "correlation id", max_length=255, db_index=True, help_text="Ties this run to the request that started it."
    )
    error = models.JSONField(
        "error", null=True, blank=True, help_text="The failure that made the saga compensate or stop."
    )
    deadline = models.DateTimeField(
        "deadline", null=True, blank=True, help_text="When the saga's timeout expires, if it has one."
    )
    start_at = models.DateTimeField(
        "starts at",
        null=True,
        blank=True,
        help_text="A delayed start (Saga.start's countdown or eta): no step runs before it. Empty: at once.",
    )
    created_at = models.DateTimeField("created at", default=timezone.now, help_text="When the run was stored.")
    started_at = models.DateTimeField(
        "started at", null=True, blank=True, help_text="When the first step began executing."
    )
    finished_at = models.DateTimeField(
        "finished at", null=True, blank=True, help_text="When the run reached a final or failed state."
    )
    updated_at = models.DateTimeField(
        "updated at", default=timezone.now, help_text="Last change to the run or one of its steps."
    )
    parked_reason = models.TextField(
        "parked because",
        blank=True,
        default="",
        help_text="Set when the run cannot go on by itself (e.g. its task is not registered in the workers); "
        "the reaper leaves it alone until a person retries or resolves it.",
    )
    redrive_after = models.DateTimeField(
        "re-drive after",
        null=True,
        blank=True,
        help_text="The reaper re-drives the run again no sooner than this unless it moved since (redrive_seq): each "
        "re-drive that brought no progress doubles the wait before the next (a message in a long queue is not lost).",
    )
    redrive_seq = models.PositiveIntegerField(
        "re-drive seq", null=True, blank=True, help_text="The seq of the reaper's last re-drive event."
    )
    lock_version = models.PositiveIntegerField(
        "lock version", default=0, help_text="Incremented by every change; equals the seq of the latest event."
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        verbose_name="parent run",
        help_text="The run whose SubSaga step started this one (a child saga).",
    )
    parent_step = models.CharField(
        "parent step", max_length=100, blank=True, default="", help_text="The parent's SubSaga step that waits for it."
    )

    class Meta:
        verbose_name = "saga run"
        verbose_name_plural = "saga runs"
        ordering = ["-created_at"]
        permissions = [
            ("retry_sagarun", "Can retry saga runs (re-run what gave up, re-drive stuck runs)"),
            ("resolve_sagarun", "Can resolve by hand what a failed run gave up on"),
            ("cancel_sagarun", "Can cancel saga runs"),
            ("signal_sagarun", "Can signal a saga run waiting for a person or an outside event"),
        ]
        # No index holds updated_at or lock_version, the two columns every step writes: so a step's UPDATE of its
        # run is a HOT update (no index entry to add) while the status stays. The reaper finds stuck runs through
        # the partial index of active runs, few next to the finished ones, and sorts them by updated_at itself.
        # finished_at changes only with the status, whose index changes anyway: the purge walks runs in its order.
        indexes = [
            models.Index(
                fields=["status"], name="sagas_run_active", condition=models.Q(status__in=sorted(ACTIVE_RUN_STATES))
            ),
            models.Index(
                fields=["finished_at", "id"], name="sagas_run_finished", condition=models.Q(finished_at__isnull=False)
            ),
            models.Index(fields=["saga_name", "status"], name="sagas_run_name_status"),
            models.Index(fields=["created_at"], name="sagas_run_created"),
            models.Index(fields=["status", "deadline"], name="sagas_run_status_deadline"),
        ]

    def __str__(self) -> str:
        return f"{self.saga_name} {self.id} ({self.status})"

    @property
    def idle_since(self) -> datetime:
        """Since when nothing moved the run: its last change, or a delayed start's time if that is later (nothing
        was due to move it before). ``selectors.stale`` is the same rule as a query (with waiting steps)."""
        return max(self.updated_at, self.start_at) if self.start_at else self.updated_at


class SagaStepRun(models.Model):
    # No index of its own: the unique (run, name) index serves every lookup by run.
    run = models.ForeignKey(
        SagaRun,
        on_delete=models.CASCADE,
        related_name="steps",
        verbose_name="run",
        help_text="The saga run.",
        db_index=False,
    )
    name = models.CharField("name", max_length=100, help_text="The step's name in the saga definition.")
    index = models.PositiveIntegerField("index", help_text="Position of the step in the saga, from 0.")
    status = models.CharField(
        "status", max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING, help_text="Step status."
    )
    attempts = models.PositiveIntegerField("attempts", default=0, help_text="Times the action was started.")
    compensation_attempts = models.PositiveIntegerField(
        "compensation attempts", default=0, help_text="Times the compensation was started since the last retry."
    )
    output = models.JSONField("output", null=True, blank=True, help_text="What the action returned.")
    error = models.JSONField(
        "error", null=True, blank=True, help_text="The last failure of the action or compensation."
    )
    failures = models.JSONField(
        "failed attempts",
        default=list,
        blank=True,
        help_text="Every failed attempt of the action and of the compensation: attempt, class, delay chosen, error.",
    )
    task_id = models.CharField(
        "task id", max_length=255, blank=True, default="", help_text="Celery task id of the latest attempt."
    )
    compensation_task_id = models.CharField(
        "compensation task id",
        max_length=255,
        blank=True,
        default="",
        help_text="Celery task id of the latest compensation attempt.",
    )
    started_at = models.DateTimeField("started at", null=True, blank=True, help_text="First attempt began.")
    finished_at = models.DateTimeField(
        "finished at", null=True, blank=True, help_text="The action succeeded or finally failed."
    )
    compensated_at = models.DateTimeField(
        "compensated at", null=True, blank=True, help_text="The compensation succeeded or was resolved."
    )
    circuit_refusals = models.PositiveIntegerField(
        "circuit refusals",
        default=0,
        help_text="Calls the service's open circuit breaker refused: not attempts, they spend no retry budget.",
    )
    circuit_waiting_since = models.DateTimeField(
        "waiting on circuit since",
        null=True,
        blank=True,
        help_text="Set while the step (or its compensation) waits for its service's circuit breaker to let it call.",
    )
    wait_until = models.DateTimeField(
        "waits until",
        null=True,
        blank=True,
        help_text="A Wait step with a timeout: when it fails if no signal came.",
    )
    worker = models.CharField(
        "worker",
        max_length=255,
        blank=True,
        default="",
        help_text="Celery worker (node name) that ran the latest attempt of the action or the compensation.",
    )
    worker_pid = models.PositiveIntegerField(
        "worker pid", null=True, blank=True, help_text="Process id of the worker that ran the latest attempt."
    )

    class Meta:
        verbose_name = "saga step"
        verbose_name_plural = "saga steps"
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="sagas_step_run_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class SagaEvent(models.Model):
    # No index of its own: the unique (run, seq) index serves every lookup by run.
    run = models.ForeignKey(
        SagaRun,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name="run",
        help_text="The saga run.",
        db_index=False,
    )
    seq = models.PositiveIntegerField("seq", help_text="Position in the run's event log, from 1.")
    type = models.CharField("type", max_length=40, choices=EventType.choices, help_text="What happened.")
    step = models.CharField("step", max_length=100, blank=True, default="", help_text="The step concerned.")
    data = models.JSONField("data", default=dict, help_text="Details: statuses, attempt, error, reason.")
    actor = models.CharField(
        "actor", max_length=150, blank=True, default="", help_text="The person or process behind an operator action."
    )
    correlation_id = models.CharField(
        "correlation id",
        max_length=255,
        blank=True,
        default="",
        help_text="The run's correlation id: ties every event of the run to the request that started it.",
    )
    causation = models.ForeignKey(
        "self",
        on_delete=models.RESTRICT,
        null=True,
        blank=True,
        related_name="consequences",
        verbose_name="causation",
        help_text="The event that caused this one.",
    )
    created_at = models.DateTimeField("created at", default=timezone.now, help_text="When it happened.")

    class Meta:
        verbose_name = "saga event"
        verbose_name_plural = "saga events"
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="sagas_event_run_seq")]
        indexes = [
            models.Index(fields=["type", "created_at"], name="sagas_event_type_created"),
            models.Index(fields=["correlation_id"], name="sagas_event_correlation"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Append-only: an event is written once. (On PostgreSQL a trigger refuses UPDATE as well.)
        if not self._state.adding:
            raise ValueError(f"Saga events are append-only; event #{self.seq} of run {self.run_id} cannot be changed.")
        super().save(*args, **kwargs)


class SagaSnapshot(models.Model):
    """The folded state of a run after its event ``seq``: rebuilding starts here instead of at event 1."""

    run = models.ForeignKey(
        SagaRun, on_delete=models.CASCADE, related_name="snapshots", verbose_name="run", help_text="The saga run."
    )
    seq = models.PositiveIntegerField("seq", help_text="The last event folded into this state.")
    state = models.JSONField("state", help_text="The run and step state after that event (sagas.eventlog).")
    created_at = models.DateTimeField("created at", default=timezone.now, help_text="When it was taken.")

    class Meta:
        verbose_name = "saga snapshot"
        verbose_name_plural = "saga snapshots"
        ordering = ["run", "-seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="sagas_snapshot_run_seq")]

    def __str__(self) -> str:
        return f"snapshot of {self.run_id} at #{self.seq}"


class SagaOutbox(models.Model):
    """A lifecycle message of a run, written with the change it announces and relayed to receivers."""

    id = models.UUIDField(
        "id", primary_key=True, default=uuid.uuid4, editable=False, help_text="The message id receivers dedupe on."
    )
    run = models.ForeignKey(
        SagaRun, on_delete=models.CASCADE, related_name="outbox", verbose_name="run", help_text="The saga run."
    )
    event = models.OneToOneField(
        SagaEvent,
        on_delete=models.CASCADE,
        related_name="outbox_message",
        verbose_name="event",
        help_text="The event this message announces.",
    )
    topic = models.CharField("topic", max_length=255, help_text="e.g. orders.place_order.completed")
    message = models.JSONField("message", help_text="What receivers get (sagas.SagaMessage).")
    created_at = models.DateTimeField("created at", default=timezone.now, help_text="When it was written.")
    published_at = models.DateTimeField(
        "published at", null=True, blank=True, help_text="When it was handed to the broker for every receiver."
    )
    attempts = models.PositiveIntegerField(
        "failed publishes", default=0, help_text="Times publishing it failed (the broker was unreachable)."
    )
    receivers = models.JSONField(
        "receivers",
        default=list,
        blank=True,
        help_text="The receivers it was published to: the ones whose receipts the reaper looks for.",
    )
    redeliveries = models.PositiveIntegerField(
        "redeliveries",
        default=0,
        help_text="Times it was published again because a receiver had no receipt for it (the delivery was lost).",
    )
    settled_at = models.DateTimeField(
        "settled at",
        null=True,
        blank=True,
        help_text="When the reaper found a receipt from every receiver (or stopped publishing it again).",
    )

    class Meta:
        verbose_name = "outbox message"
        verbose_name_plural = "outbox messages"
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"], condition=models.Q(published_at__isnull=True), name="sagas_outbox_unpublished"
            ),
            models.Index(
                fields=["published_at"],
                condition=models.Q(published_at__isnull=False, settled_at__isnull=True),
                name="sagas_outbox_unsettled",
            ),
            models.Index(fields=["topic", "created_at"], name="sagas_outbox_topic_created"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.id}"


class SagaReceipt(models.Model):
    """A receiver got a message: written in the receiver's own transaction, so its effect happens once."""

    receiver = models.CharField("receiver", max_length=255, help_text="The receiver's name.")
    message_id = models.UUIDField("message id", help_text="The outbox message received.")
    received_at = models.DateTimeField("received at", default=timezone.now, help_text="First delivery.")
    duplicates = models.PositiveIntegerField(
        "duplicates", default=0, help_text="Later deliveries of the same message, skipped."
    )

    class Meta:
        verbose_name = "receipt"
        verbose_name_plural = "receipts"
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["receiver", "message_id"], name="sagas_receipt_receiver_message")
        ]
        # The purge deletes a message's receipts by message id, whoever received it.
        indexes = [models.Index(fields=["message_id"], name="sagas_receipt_message")]

    def __str__(self) -> str:
        return f"{self.receiver} got {self.message_id}"
