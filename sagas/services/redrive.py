"""Re-driving a run that stopped moving, from its database state, and parking one that cannot move.

A lost message, a killed worker or a lost errback leaves the rows saying what should happen next; this reads
them and publishes it again. Every decision is taken under the run's row lock and re-checked there, so the
reaper, a late redelivery, an errback and an operator can race and only one of them acts.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from sagas import engine, leases, logs, metrics
from sagas.conf import sagas_settings
from sagas.definitions import ChildRun
from sagas.exceptions import InvalidTransition, RunNotFound, UnknownSaga
from sagas.failures import Failure
from sagas.models import SagaRun, SagaStepRun
from sagas.services import doubt
from sagas.services._core import (
    RunId,
    append_event,
    dispatch_on_commit,
    lock_run,
    move_run,
    past_deadline,
    publish_step,
    saga_for,
)
from sagas.services.compensation import (
    advance_compensation,
    begin_compensation,
    child_of,
    next_compensation_task_id,
    time_out,
)
from sagas.services.context import in_doubt
from sagas.services.forward import stop_after_failure
from sagas.services.steps import fail_step, run_complete_locked
from sagas.services.waits import fail_overdue_wait, settle_child_step
from sagas.states import ACTIVE_RUN_STATES, FINISHED_RUN_STATES, TERMINAL_RUN_STATES, EventType, RunStatus, StepStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from sagas.definitions import Saga, Step


logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Redrive:
    """What re-driving a run does (or, in a dry run, would do)."""

    run_id: str
    action: str  # "" when the run needed nothing


def lease() -> timedelta:
    return timedelta(seconds=sagas_settings.LEASE_SECONDS)


def is_stuck(run: SagaRun, now: datetime) -> bool:
    """No progress for the lease, or still going past its deadline."""
    if run.status not in ACTIVE_RUN_STATES:
        return False
    overdue = run.status in (RunStatus.PENDING, RunStatus.EXECUTING) and past_deadline(run)
    return overdue or now - run.idle_since >= lease()


def _compensation_lost(run: SagaRun, step_run: SagaStepRun, step: Step, now: datetime) -> bool:
    """Whether the current attempt of a step's compensation can no longer report back: it started longer ago
    than its hard time limit and the lease, and no retry it recorded is still due."""
    started = (
        run.events.filter(
            type__in=[EventType.COMPENSATION_STARTED, EventType.COMPENSATION_SCHEDULED], step=step_run.name
        )
        .order_by("-seq")
        .values_list("created_at", flat=True)
    ).first()
    # Celery has killed the attempt once its hard limit has passed.
    hard_limit = engine.step_limits(step)[1] or 0.0
    if started is not None and now - started < timedelta(seconds=hard_limit) + lease():
        return False
    return not _retry_due(step_run, "compensation", now)


def _action_lost(step_run: SagaStepRun, held: dict[str, leases.Holder], now: datetime) -> bool:
    """Whether a forward step's attempt is over without a record: nobody holds its lease (it lapses once the
    attempt's hard time limit and the lease have passed), and no retry it recorded is still due."""
    return step_run.name not in held and not _retry_due(step_run, "action", now)


def _retry_due(step_run: SagaStepRun, kind: str, now: datetime) -> bool:
    """Whether the step's ``kind`` ("action" or "compensation") has a retry still to come: its last failed
    attempt, or the last call its breaker refused, scheduled one that is not yet a lease overdue."""
    failures = [f for f in step_run.failures if f.get("kind") == kind or f.get("call") == kind]
    if failures and failures[-1].get("retry_in") is not None:
        due = datetime.fromisoformat(failures[-1]["at"]) + timedelta(seconds=failures[-1]["retry_in"])
        if now < due + lease():
            return True
    return False


def _plan(
    run: SagaRun, saga: type[Saga], now: datetime, *, force: bool
) -> tuple[str, str, Callable[[], object]] | None:
    """What moves a stuck run on, from its rows: (kind, action, act), or None if it needs nothing. The kind is
    a fixed word for the action (the label of the re-drive metric); the action says it for people."""
    steps = list(run.steps.order_by("index"))
    if run.status in (RunStatus.PENDING, RunStatus.EXECUTING) and past_deadline(run):
        return "time_out", "time out: deadline passed", lambda: _time_out(run, saga)
    if run.status == RunStatus.PENDING:
        roots = [s for s in steps if not saga.dependencies()[s.name]]
        first = roots if saga.is_graph() else roots[:1]
        first_names = [s.name for s in first]
        if leases.holders(run.pk, first_names) and not force:
            return None  # its first step is running: the run starts executing with that step's outcome
        started = leases.started(run.pk, first_names)
        return "publish", "publish the steps again (dispatch lost)", lambda: _publish_start(run, saga, first, started)
    if run.status == RunStatus.EXECUTING:
        return _plan_executing(run, saga, steps, now, force=force)
    if run.status == RunStatus.TIMEOUT:
        return (
            "compensate",
            "compensate (timed out)",
            lambda: begin_compensation(run, saga, event=EventType.SAGA_COMPENSATING, data={"reason": "deadline"}),
        )
    if run.status == RunStatus.COMPENSATING:
        held = leases.holders(run.pk, [s.name for s in steps if s.status == StepStatus.RUNNING])
        lost = [
            s
            for s in steps
            if (s.status == StepStatus.RUNNING and (force or _action_lost(s, held, now)))
            or (s.status == StepStatus.COMPENSATING and (force or _compensation_lost(run, s, saga.step(s.name), now)))
        ]
        names = ", ".join(s.name for s in lost) or "none lost"
        return "move_compensation", f"move compensation on ({names})", lambda: _move_compensation_on(run, saga, lost)
    return None


def _plan_executing(
    run: SagaRun, saga: type[Saga], steps: list[SagaStepRun], now: datetime, *, force: bool
) -> tuple[str, str, Callable[[], object]] | None:
    """An executing run: complete it, compensate its failed step, or publish again the steps whose message
    (or whose fan-in, in a graph) was lost and the attempts that vanished."""
    if all(s.status == StepStatus.SUCCEEDED for s in steps):
        return "complete", "complete (finish message lost)", lambda: run_complete_locked(run)
    overdue = next((s for s in steps if s.status == StepStatus.WAITING and s.wait_until and s.wait_until <= now), None)
    if overdue is not None:
        return (
            "fail_wait",
            f"fail the wait {overdue.name} (its timeout passed)",
            lambda: fail_overdue_wait(run, saga, overdue),
        )
    # Only a SubSaga's wait has a child to look up; a Wait's is the signal's.
    on_child = [
        s for s in steps if s.status == StepStatus.WAITING and isinstance(saga.step(s.name).waits_for, ChildRun)
    ]
    for step_run in on_child:
        child = child_of(run, step_run.name)
        if child is not None and child.status in FINISHED_RUN_STATES:
            return (
                "settle_child",
                f"move {step_run.name} on (its child run {child.status})",
                functools.partial(settle_child_step, run, saga, step_run),
            )
    failed = next((s for s in steps if s.status == StepStatus.FAILED), None)
    if failed is not None:
        return (
            "compensate",
            f"compensate, or fail after the pivot (errback of {failed.name} lost)",
            lambda: stop_after_failure(run, saga, failed),
        )
    succeeded = {s.name for s in steps if s.status == StepStatus.SUCCEEDED}
    pending = {s.name for s in steps if s.status == StepStatus.PENDING}
    held = leases.in_flight(run.pk, steps)
    started = leases.started(run.pk, [s.name for s in steps if s.status in (StepStatus.PENDING, StepStatus.RUNNING)])
    # In a sequence only the first unfinished step can be ready; in a graph, any step whose
    # dependencies all succeeded (the lost fan-in of a join) and any branch whose attempt vanished.
    # A pending step waiting for its service's circuit has its message: it asks the breaker again when due.
    # A step whose lease is held is running now: nothing is lost.
    ready = [
        s
        for s in steps
        if s.name in engine.ready_steps(saga, succeeded, pending)
        and not _retry_due(s, "action", now)
        and (force or s.name not in held)
    ]
    lost = [s for s in steps if s.status == StepStatus.RUNNING and (force or _action_lost(s, held, now))]
    if not saga.is_graph():
        ready, lost = ready[:1], lost[:1]
    if not ready and not lost:
        return None
    # A pending step whose attempt started (counted in Redis) and never reported back lost an attempt, not a
    # message; either way the next attempt is published.
    vanished = [s for s in ready if started.get(s.name, 0) > s.attempts]
    ready = [s for s in ready if s not in vanished]
    lost += vanished
    what = [f"publish step {s.name} again (message lost)" for s in ready]
    what += [f"run step {s.name} again (attempt lost)" for s in lost]

    def publish() -> None:
        for step_run in ready:
            publish_step(run, saga, step_run.name, attempt=1)
        for step_run in lost:
            publish_step(run, saga, step_run.name, attempt=_next_attempt(step_run, started))

    return ("publish" if ready else "rerun_step"), "; ".join(what), publish


def _time_out(run: SagaRun, saga: type[Saga]) -> None:
    if run.status == RunStatus.PENDING:
        move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
    time_out(run, saga)


def _publish_start(run: SagaRun, saga: type[Saga], first: list[SagaStepRun], started: dict[str, int]) -> None:
    """A pending run whose first publish was lost (or whose first attempt vanished): its first step (a
    sequence), or every step that depends on nothing (a graph)."""
    for step_run in first:
        publish_step(run, saga, step_run.name, attempt=_next_attempt(step_run, started))


def _next_attempt(step_run: SagaStepRun, started: dict[str, int]) -> int:
    """The attempt after the last one that started: recorded in the row, or only counted in Redis (lost)."""
    return max(step_run.attempts, started.get(step_run.name, 0)) + 1


def _move_compensation_on(run: SagaRun, saga: type[Saga], lost: list[SagaStepRun]) -> None:
    unreported = doubt.unreported(run, lost)
    for step_run in lost:
        if step_run.name in unreported:
            # A forward step of a stopped run whose attempt started and vanished: its effect may stand.
            doubt.settle(run, saga, step_run, unreported[step_run.name])
        elif in_doubt(step_run):
            # The attempt that settles it was lost before it started: published again.
            publish_step(run, saga, step_run.name, attempt=step_run.attempts + 1)
        elif step_run.status == StepStatus.RUNNING:
            # A forward step of a stopped run waiting for a retry that was lost: its last attempt failed.
            fail_step(run, step_run, _lost_error(step_run, "action"))
        else:
            task = engine.compensation_task(saga, str(run.pk), step_run.name, next_compensation_task_id(run, step_run))
            dispatch_on_commit(run.pk, task)
    advance_compensation(run, saga)


def _lost_error(step_run: SagaStepRun, what: str) -> Failure:
    return Failure.without_exception(
        "sagas.WorkerLost",
        f"The {what} of step {step_run.name!r} never reported back (worker killed or message lost).",
        code="attempt_lost",
        attempt=step_run.attempts,
    )


def run_redrive(
    *,
    run_id: RunId,
    actor: str = "reaper",
    reason: str = "",
    force: bool = False,
    dry_run: bool = False,
    forgotten_at: datetime | None = None,
) -> Redrive:
    """Move a stuck run on from its database state; the action taken ("" if none was needed).

    The reaper calls it for runs its query found; ``force`` (an operator's retry) also re-drives a parked
    run and treats attempts in flight as lost. A run another process holds the lock of is left alone. A run
    that has not moved since ``forgotten_at`` (when Redis last lost its data) is not waiting out a backoff: the
    message of its last re-drive is gone.
    """
    with transaction.atomic():
        run = SagaRun.objects.select_for_update(skip_locked=True).filter(pk=run_id).first()
        if run is None:
            return Redrive(str(run_id), "")
        now = timezone.now()
        if run.parked_reason and not force:
            return Redrive(str(run.pk), "")
        if not force and not is_stuck(run, now):
            return Redrive(str(run.pk), "")  # it moved since it was found
        overdue = run.status in (RunStatus.PENDING, RunStatus.EXECUTING) and past_deadline(run)
        backing_off = run.redrive_after is not None and run.redrive_after > now and run.lock_version == run.redrive_seq
        backing_off = backing_off and not (forgotten_at is not None and run.updated_at < forgotten_at)
        if not force and not overdue and backing_off:
            return Redrive(str(run.pk), "")  # its last re-drive's message may still be waiting in the queue
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            if not dry_run:
                _park(run, "", str(exc))
                metrics.redriven(run.saga_name, "park")
            return Redrive(str(run.pk), "park (saga version not in this code)")
        plan = _plan(run, saga, now, force=force)
        if plan is None:
            return Redrive(str(run.pk), "")
        kind, action, act = plan
        if dry_run:
            return Redrive(str(run.pk), action)
        after = None if force else now + _backoff(run)
        append_event(
            run,
            EventType.SAGA_REDRIVEN,
            data={
                "action": action,
                "reason": reason or _why(run, forgotten_at),
                **({"next_after": after.isoformat()} if after else {}),
            },
            actor=actor,
            run_fields={"parked_reason": "", "redrive_after": after, "redrive_seq": run.lock_version + 1},
        )
        act()
        metrics.redriven(run.saga_name, kind)
    logger.warning(
        "saga run %s re-driven by %s: %s", run_id, actor, action, extra=logs.fields(run_id=run_id, actor=actor)
    )
    return Redrive(str(run_id), action)


def _why(run: SagaRun, forgotten_at: datetime | None) -> str:
    if forgotten_at is not None and run.updated_at < forgotten_at:
        return "no progress since Redis lost its data"
    return "no progress within the lease"


# A run re-driven this many times in a row without progress waits the longest before the next re-drive.
MAX_BACKOFF_DOUBLINGS = 3


def _backoff(run: SagaRun) -> timedelta:
    """How long after this re-drive the reaper may re-drive the run again: the lease after a re-drive that
    followed progress, then twice as long after each further re-drive in a row, up to 8 leases. A step message
    behind a long queue looks lost after a lease; re-publishing it every lease would only lengthen the queue."""
    recent = run.events.order_by("-seq").values_list("type", flat=True)[:MAX_BACKOFF_DOUBLINGS]
    in_a_row: int = next((n for n, kind in enumerate(recent) if kind != EventType.SAGA_REDRIVEN), len(recent))
    return lease() * (1 << in_a_row)


def run_redrive_by_operator(*, run_id: RunId, reason: str, actor: str) -> SagaRun:
    """An operator's retry of a run that is not failed: re-drive it if it is stuck or parked."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status in TERMINAL_RUN_STATES:
            raise InvalidTransition(f"Saga run {run.pk} is {run.status}; a finished run cannot be retried.")
        if not run.parked_reason and not is_stuck(run, timezone.now()):
            seconds = int((timezone.now() - run.updated_at).total_seconds())
            raise InvalidTransition(
                f"Saga run {run.pk} is {run.status} and made progress {seconds}s ago; it is not stuck "
                f"(stuck means no progress for {sagas_settings.LEASE_SECONDS}s), so there is nothing to retry."
            )
    outcome = run_redrive(run_id=run_id, actor=actor, reason=reason, force=True)
    if not outcome.action:
        raise InvalidTransition(f"Saga run {run_id} has nothing to re-drive right now.")
    return SagaRun.objects.get(pk=run_id)


def run_park(*, run_id: RunId, step: str, task_name: str) -> None:
    """A worker received a task of this run that it does not know (renamed or removed by a deploy): the
    message is gone, so park the run with a clear reason instead of letting it wait for nothing."""
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            return
        if run.status not in ACTIVE_RUN_STATES:
            return
        reason = (
            f"Task {task_name!r} is not registered in the worker that received it (renamed or removed by a "
            f"deploy?), so its message was discarded. Deploy code that has step {step!r} of saga "
            f"{run.saga_name} version {run.version}, then retry the run (sagas.retry)."
        )
        _park(run, step, reason, task_name=task_name)


def _park(run: SagaRun, step: str, reason: str, *, task_name: str = "") -> None:
    append_event(
        run,
        EventType.SAGA_PARKED,
        step=step,
        data={"reason": reason, "task": task_name},
        run_fields={"parked_reason": reason},
    )
    logger.error("saga run %s parked: %s", run.pk, reason, extra=logs.fields(run, step=step))
