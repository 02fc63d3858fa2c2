"""The guarded updates behind every state change, each appending one event to the run's log."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from celery.canvas import Signature
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from sagas import engine, eventlog, logs, metrics, outbox, selectors, tracing
from sagas.conf import sagas_settings
from sagas.engine import DEADLINE_CHECK_MAX_DELAY
from sagas.exceptions import InvalidTransition, RunNotFound
from sagas.failures import Failure
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.registry import get_saga
from sagas.services import _contract, _portable, _statement
from sagas.states import (
    FINISHED_RUN_STATES,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    EventType,
    RunStatus,
    StepStatus,
    stamp_run,
    stamp_step,
)

if TYPE_CHECKING:
    from sagas.definitions import Saga
    from sagas.workers import WorkerId

RunId = uuid.UUID | str  # a run's primary key, as a UUID or its string form

# The step row's worker columns for an attempt whose worker is not known.
NO_WORKER: dict[str, Any] = {"worker": "", "worker_pid": None}

logger = logging.getLogger(__name__)


def writer() -> _contract.Writer:
    """The write path in use: PostgreSQL's one statement, or the portable one (other databases, or
    ``SAGAS["WRITE_PATH"] = "portable"``, which the test suite runs on PostgreSQL too)."""
    return cast("_contract.Writer", _statement if one_statement() else _portable)


def one_statement() -> bool:
    """Whether writes are single PostgreSQL statements (then a write outside a transaction is atomic alone)."""
    return connection.vendor == "postgresql" and sagas_settings.WRITE_PATH != "portable"


def lock_run(run_id: RunId) -> SagaRun:
    """Lock the run row for the rest of the transaction: every writer of a run's state takes this
    lock first, so writers of one run (steps, errbacks, operators) take turns."""
    try:
        return SagaRun.objects.select_for_update().get(pk=run_id)
    except (SagaRun.DoesNotExist, ValidationError) as exc:  # ValidationError: not a UUID
        raise RunNotFound(f"No saga run with id {run_id!r}.") from exc


def lock_run_with_steps(run_id: RunId) -> tuple[SagaRun, list[SagaStepRun]]:
    """``lock_run`` and the run's step rows in one query: each step joined to its run, locking the run row."""
    try:
        rows = SagaStepRun.objects.filter(run__pk=run_id).select_related("run").select_for_update(of=("run",))
        steps = list(rows.order_by("index"))
    except ValidationError as exc:
        raise RunNotFound(f"No saga run with id {run_id!r}.") from exc
    if not steps:
        return lock_run(run_id), []  # RunNotFound, unless a run without steps
    run = steps[0].run
    for step in steps:
        step.run = run
    return run, steps


def append_event(
    run: SagaRun,
    type: str,
    *,
    step: str = "",
    data: dict[str, Any] | None = None,
    actor: str = "",
    causation: SagaEvent | None = None,
    run_fields: dict[str, Any] | None = None,
    expect_status: str | None = None,
    at: datetime | None = None,
    causation_id: int | None = None,
    causation_query: _contract.EventIds | None = None,
    step_change: _contract.StepChange | None = None,
) -> SagaEvent:
    """Record an event, bumping the run's lock_version (the event's seq) and updated_at.

    ``run_fields`` are other run columns written by the same UPDATE; with ``expect_status`` that UPDATE is
    guarded by the run's status. ``causation``: the event this one follows from (or its id, or a query of
    event ids whose first row it is); by default the step's latest event for a step event, else the run's
    latest event. ``step_change``: a step's guarded UPDATE that goes with the event. The caller holds the
    run lock. On PostgreSQL all of it is one statement.
    """
    now = at or timezone.now()
    updates = {"updated_at": now, **(run_fields or {})}
    event = SagaEvent(
        run_id=run.pk, type=type, step=step, data=data or {}, actor=actor, correlation_id=run.correlation_id,
        created_at=now,
    )  # fmt: skip
    if causation is not None:
        causation_id = causation.pk
    try:
        written = writer().write(
            run.pk,
            run_values=updates,
            expect_status=expect_status,
            step=step_change,
            events=[_contract.event_columns(event)],
            causes=[_contract.Cause(id=causation_id, query=causation_query)],
        )
    except _contract.GuardFailed:
        raise _guard_failure(run, expect_status, step_change, step) from None
    for name in ("lock_version", *updates):
        setattr(run, name, written.run[name])
    _contract.stored_events(written, [event])
    after_append(run, event)
    return event


def needs_transaction(run: SagaRun, events: list[SagaEvent], *, first_seq: int) -> bool:
    """Whether appending ``events`` (seqs from ``first_seq``) writes more than the events: an outbox message
    for a listened topic, or a snapshot that falls due."""
    if any(eventlog.snapshot_due(first_seq + number) for number in range(len(events))):
        return True
    return any(outbox.listened(run, event) for event in events)


def after_append(run: SagaRun, event: SagaEvent) -> None:
    """In the transaction of every appended event: announce it in the outbox if anyone listens, and store a
    snapshot when one falls due."""
    outbox.record(run, event)
    if eventlog.snapshot_due(event.seq):
        eventlog.store_snapshot(run, event.seq)


def _guard_failure(
    run: SagaRun, expect_status: str | None, step_change: _contract.StepChange | None, step: str
) -> InvalidTransition:
    """Which guard of a write did not hold (the run's status or the step's), in words."""
    if step_change is not None:
        current = SagaRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
        if expect_status is None or current == expect_status:
            return InvalidTransition(f"Step {step!r} of saga run {run.pk} is no longer {step_change.source!r}.")
    return InvalidTransition(f"Saga run {run.pk} is no longer {expect_status!r}; someone else moved it.")


def move_run(
    run: SagaRun,
    to: str,
    *,
    event: str,
    data: dict[str, Any] | None = None,
    actor: str = "",
    causation: SagaEvent | None = None,
    fields: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> SagaEvent:
    """Move a locked run to status ``to`` by a guarded update and append ``event`` (dated ``at``, default now).

    The transition's timestamps (started_at, finished_at) are stamped by ``stamp_run``, from the event's
    own time; ``fields`` are other columns the transition sets (an error), recorded in the event too.
    """
    source = run.status
    if to not in RUN_TRANSITIONS[source]:
        raise InvalidTransition(f"Saga run {run.pk} cannot go from {source!r} to {to!r}.")
    now = at or timezone.now()
    recorded = append_event(
        run,
        event,
        data={"from": source, "to": to, **(data or {}), **({"set": fields} if fields else {})},
        actor=actor,
        causation=causation,
        run_fields={"status": to, **stamp_run(source, to, now), **(fields or {})},
        expect_status=source,
        at=now,
    )
    announce_run_move(run, source, to)
    return recorded


def announce_run_move(run: SagaRun, source: str, to: str) -> None:
    """What a run's move tells besides its event: the outcome metric, the log line, and a child run's end to
    its parent (whose SubSaga step waits for it)."""
    # Counts only outcomes (completed, compensated, cancelled, failed), with the time since the run started.
    metrics.run_finished(run.saga_name, to, (timezone.now() - run.created_at).total_seconds())
    if run.parent_id is not None and to in FINISHED_RUN_STATES:
        dispatch_on_commit(run.parent_id, engine.child_settled(str(run.parent_id), run.parent_step))
    logger.info("saga %s %s: %s -> %s", run.saga_name, run.pk, source, to, extra=logs.fields(run, status=str(to)))


def move_step(
    run: SagaRun,
    step_run: SagaStepRun,
    to: str,
    *,
    event: str,
    data: dict[str, Any] | None = None,
    actor: str = "",
    causation: SagaEvent | None = None,
    fields: dict[str, Any] | None = None,
    increment: str | None = None,
    run_fields: dict[str, Any] | None = None,
    causation_id: int | None = None,
    causation_query: _contract.EventIds | None = None,
    at: datetime | None = None,
) -> SagaEvent:
    """Move a step of a locked run to status ``to`` by a guarded update and append ``event`` (dated ``at``).

    ``increment`` names a counter column (attempts) to add one to in the same UPDATE; ``run_fields``
    are run columns to write along with the event. Timestamps come from ``stamp_step``.
    """
    source = step_run.status
    if to not in STEP_TRANSITIONS[source]:
        raise InvalidTransition(f"Step {step_run.name!r} of saga run {run.pk} cannot go from {source!r} to {to!r}.")
    now = at or timezone.now()
    # Any transition ends a wait on the service's circuit (the fold clears it on every transition too).
    updates: dict[str, Any] = {
        "status": to,
        **stamp_step(to, step_run.started_at, now),
        "circuit_waiting_since": None,
        **(fields or {}),
    }
    recorded = append_event(
        run,
        event,
        step=step_run.name,
        data={"from": source, "to": to, **(data or {})},
        actor=actor,
        causation=causation,
        run_fields=run_fields,
        at=now,
        causation_id=causation_id,
        causation_query=causation_query,
        step_change=_contract.StepChange(step_run.pk, source, updates, increment),
    )
    if increment:
        updates[increment] = getattr(step_run, increment) + 1
    for name, value in updates.items():
        setattr(step_run, name, value)
    return recorded


def last_event(run: SagaRun, type: str, step: str = "") -> SagaEvent | None:
    """The run's latest event of a type (for causation links)."""
    events = SagaEvent.objects.filter(run_id=run.pk, type=type)
    if step:
        events = events.filter(step=step)
    return events.order_by("-seq").first()


def saga_for(run: SagaRun) -> type[Saga]:
    """The saga class a run executes (its own version), or UnknownSaga with what to do."""
    return get_saga(run.saga_name, run.version)


def step_row(run: SagaRun, name: str) -> SagaStepRun | None:
    return run.steps.filter(name=name).first()


def start_attempt(
    run: SagaRun, step_run: SagaStepRun, *, number: int, task_id: str, at: datetime, worker: WorkerId | None
) -> SagaEvent:
    """Record that attempt ``number`` of a step started at ``at`` in ``worker`` (caller holds the run lock): the
    StepStarted a claim leaves to the attempt's outcome. A pending run starts executing with it. ``worker`` None:
    an attempt recorded by another process, whose worker is not known."""
    if run.status == RunStatus.PENDING:
        move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING, at=at)
    return move_step(
        run,
        step_run,
        StepStatus.RUNNING,
        event=EventType.STEP_STARTED,
        data={"attempt": number, "task_id": task_id, **(worker.event_data() if worker else {})},
        fields={"task_id": task_id, "attempts": number, **(worker.step_fields() if worker else NO_WORKER)},
        at=at,
    )


def dispatch_on_commit(run_id: RunId, canvas: Signature, **options: Any) -> None:
    """Publish ``canvas`` once the current transaction commits (docs/internals.md#publishing-after-commit)."""

    def publish() -> None:
        try:
            canvas.apply_async(**options)
        except Exception:
            # The run is committed; only its trigger is lost. Say so plainly instead of failing the
            # caller after its transaction already committed.
            logger.exception(
                "Could not publish the tasks of saga run %s (is the broker reachable?); "
                "the run keeps its state and must be re-driven.",
                run_id,
                extra=logs.fields(run_id=run_id),
            )

    publish.canvas = canvas  # type: ignore[attr-defined]  # what it publishes, for logs and tests
    publish.options = options  # type: ignore[attr-defined]
    # With tracing on, the messages carry the run's trace context (docs/tracing.md).
    transaction.on_commit(tracing.bound(publish, run_id, lambda: selectors.trace_context(run_id)))


def publish_step(run: SagaRun, saga: type[Saga], step: str, *, attempt: int, **options: Any) -> None:
    """Publish attempt ``attempt`` of a forward step once the transaction commits: in a sequence, the chain
    from that step to the end; in a graph, that step alone (the rows start the steps after it)."""
    canvas = engine.start_canvases(saga, str(run.pk), saga.step(step), attempt)
    dispatch_on_commit(run.pk, canvas, **options)


def failure_entry(kind: str, failure: Failure, retry_in: float | None) -> dict[str, Any]:
    """One line of a step's ``failures`` log: which attempt, what class, what delay was chosen."""
    return {
        "kind": kind,  # "action" or "compensation"
        **failure.summary(),
        "retry_in": retry_in,  # None: no further attempt
        "at": timezone.now().isoformat(),
    }


def log_failure(
    step_run: SagaStepRun, kind: str, failure: Failure, retry_in: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A failed attempt: the step's column values (written by the caller's UPDATE) and the event data that
    records the same (the whole error, traceback included, so the step can be rebuilt from its events)."""
    error = failure.to_json()
    entry = failure_entry(kind, failure, retry_in)
    step_run.failures = [*step_run.failures, entry]
    return {"error": error, "failures": step_run.failures}, {"error": error, "failure": entry, "retry_in": retry_in}


def record_retry(run: SagaRun, step_run: SagaStepRun, kind: str, failure: Failure, retry_in: float) -> None:
    """Record a failed attempt of a step's ``kind`` ("action" or "compensation") that will be tried again after
    ``retry_in`` seconds (the caller holds the run's lock)."""
    fields, data = log_failure(step_run, kind, failure, retry_in)
    SagaStepRun.objects.filter(pk=step_run.pk).update(**fields)
    event = EventType.STEP_ATTEMPT_FAILED if kind == "action" else EventType.COMPENSATION_ATTEMPT_FAILED
    append_event(run, event, step=step_run.name, data=data)
    metrics.attempt_failed(run.saga_name, step_run.name, kind=kind, failure=failure, retried=True)


def run_error(step: str, failure: Failure) -> dict[str, Any]:
    """The run's error when ``step`` is the first to fail for good."""
    return {"step": step, **failure.summary()}


def hop_towards(moment: datetime) -> float:
    """Seconds until ``moment`` (0 once it passed), at most DEADLINE_CHECK_MAX_DELAY: a message that waits for a
    time is published in hops, since the broker delivers one it held past its visibility timeout again."""
    return max(0.0, min((moment - timezone.now()).total_seconds(), DEADLINE_CHECK_MAX_DELAY))


def check_countdown(moment: datetime) -> float:
    """The countdown of a check that looks at a time having passed (a deadline, a Wait's timeout): half a second
    past ``moment``, so it finds the time passed, in hops (``hop_towards``)."""
    return hop_towards(moment) + 0.5


def start_delay(run: SagaRun) -> float:
    """Seconds until a delayed run may start, in hops (0 for a run that starts at once)."""
    return round(hop_towards(run.start_at), 3) if run.start_at is not None else 0.0


def past_deadline(run: SagaRun) -> bool:
    return run.deadline is not None and timezone.now() >= run.deadline
