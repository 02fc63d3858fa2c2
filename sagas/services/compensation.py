"""Compensation services: enter compensation, schedule it stage by stage, claim and record each attempt.

Fan-in lives in these tables, not in the result backend: every compensation that settles calls
``advance_compensation`` under the run lock, which schedules the next stage once the current one has settled
and ends the run once every stage has.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from sagas import engine, leases, logs, metrics, workers
from sagas.conf import sagas_settings
from sagas.exceptions import RunNotFound, UnknownSaga
from sagas.failures import NO_SECRETS, Failure
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.outcomes import Outcome
from sagas.services import circuit, doubt
from sagas.services._core import (
    RunId,
    dispatch_on_commit,
    last_event,
    lock_run,
    log_failure,
    move_run,
    move_step,
    record_retry,
    saga_for,
    step_row,
)
from sagas.services.context import (
    IN_DOUBT,
    Claim,
    CompensationAttempt,
    compensation_budget_base,
    compensation_failures,
    lost_attempts_error,
    step_context,
    unrecorded_failure,
)
from sagas.states import DONE_STEP_STATES, EventType, RunStatus, StepStatus

if TYPE_CHECKING:
    from sagas.definitions import Saga


logger = logging.getLogger(__name__)


def has_compensation(saga: type[Saga], name: str) -> bool:
    try:
        return saga.step(name).compensation is not None
    except KeyError:
        return False


def pivots_of(run: SagaRun, saga: type[Saga] | None) -> frozenset[str]:
    """The run's pivot steps: from its saga class, or, when the class is missing, its stored definition."""
    if saga is not None:
        return saga.pivots()
    return frozenset(step["name"] for step in run.definition.spec["steps"] if step.get("irreversible"))


def pivot_passed(run: SagaRun, steps: list[SagaStepRun], saga: type[Saga] | None) -> bool:
    """Whether a pivot step of the run has succeeded: from then on its steps are retried, never compensated."""
    pivots = pivots_of(run, saga)
    return any(s.name in pivots and s.status == StepStatus.SUCCEEDED for s in steps)


def begin_compensation(
    run: SagaRun,
    saga: type[Saga],
    *,
    event: str,
    data: dict[str, Any] | None = None,
    actor: str = "",
    causation: SagaEvent | None = None,
    fields: dict[str, Any] | None = None,
) -> None:
    """Move a locked run to ``compensating``: no further step starts, pending steps are skipped (but for any
    running under its lease, which finishes first and is undone if it succeeded), a Wait's signal is no longer
    awaited, a running child run is undone, and the compensations of completed steps are scheduled."""
    unstarted = list(run.steps.filter(status__in=[StepStatus.PENDING, StepStatus.WAITING]).order_by("index"))
    in_flight = leases.fence(run.pk, [s.name for s in unstarted if s.status == StepStatus.PENDING])
    lost = doubt.unreported(run, [s for s in unstarted if s.name not in in_flight])
    compensating = move_run(
        run, RunStatus.COMPENSATING, event=event, data=data, actor=actor, causation=causation, fields=fields
    )
    for step_run in unstarted:
        if step_run.name in in_flight:
            continue
        if step_run.name in lost:
            # An attempt of it started and never reported back: its effect may stand, so it is settled first.
            doubt.settle(run, saga, step_run, lost[step_run.name])
            continue
        if step_run.status == StepStatus.WAITING and has_compensation(saga, step_run.name):
            # A SubSaga whose child runs: the step is undone by undoing the child, which it now waits for.
            move_step(
                run, step_run, StepStatus.COMPENSATING, event=EventType.COMPENSATION_SCHEDULED,
                data={"stage": None, "task_id": "", "fresh_budget": False}, causation=compensating,
            )  # fmt: skip
            settle_child_undo(run, saga, step_run)
        else:
            move_step(run, step_run, StepStatus.SKIPPED, event=EventType.STEP_SKIPPED, causation=compensating)
    advance_compensation(run, saga)


def stop_run(
    run: SagaRun,
    saga: type[Saga] | None,
    *,
    reason: str,
    actor: str,
    event: str = EventType.SAGA_CANCELLED,
) -> None:
    """Stop a locked ``pending`` or ``executing`` run (a cancel): a pending run ends ``cancelled``, an executing
    one compensates what completed. The caller checked that the run may stop (not past its pivot). ``saga``:
    the run's class, when the caller has it (a pending run that ends cancelled needs none)."""
    if run.status == RunStatus.PENDING:
        steps = list(run.steps.all())
        if leases.fence(run.pk, [s.name for s in steps]) or doubt.unreported(run, steps):
            # Its first step is running, or an attempt of it started and never reported back (the run starts
            # executing with that step's outcome): stop it as an executing run, so the step finishes first
            # and is undone if it succeeded.
            move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
    if run.status == RunStatus.PENDING:
        cancelled = move_run(run, RunStatus.CANCELLED, event=event, data={"reason": reason}, actor=actor)
        for step_run in run.steps.filter(status=StepStatus.PENDING).order_by("index"):
            move_step(run, step_run, StepStatus.SKIPPED, event=EventType.STEP_SKIPPED, causation=cancelled)
        return
    begin_compensation(
        run,
        saga or saga_for(run),
        event=event,
        data={"reason": reason},
        actor=actor,
        fields={"error": {"class": "cancelled", "code": "cancelled", "message": reason, "actor": actor}},
    )


def child_of(run: SagaRun, step: str, *, lock: bool = False) -> SagaRun | None:
    """The child run the SubSaga step ``step`` of ``run`` started last (locked with ``lock``), if it started one
    (a step a person retried after the pivot starts a new child)."""
    children = SagaRun.objects.filter(parent=run, parent_step=step).order_by("-created_at")
    return (children.select_for_update() if lock else children).first()


def undo_child(run: SagaRun, step_run: SagaStepRun) -> str:
    """Have the child run of a SubSaga step undo what it did (caller holds the parent's lock; the child's is
    taken after it, the one order both are ever taken in). Returns ``"undone"`` (nothing of it stands: no child,
    or it ended compensated or cancelled), ``"failed"`` (it cannot be undone: a person must look at it), or
    ``"undoing"`` (it compensates now, and its end moves the step on: sagas.services.waits.run_child_settled)."""
    child = child_of(run, step_run.name, lock=True)
    if child is None or child.status in (RunStatus.COMPENSATED, RunStatus.CANCELLED):
        return "undone"
    if child.status in (RunStatus.COMPENSATING, RunStatus.TIMEOUT):
        return "undoing"
    if child.status == RunStatus.FAILED:
        return "failed"
    try:
        child_saga = saga_for(child)
    except UnknownSaga:
        return "failed"
    if pivot_passed(child, list(child.steps.all()), child_saga):
        return "failed"  # its effects stand: it only goes forward
    reason = f"its parent run {run.pk} compensates (step {step_run.name!r})"
    if child.status == RunStatus.COMPLETED:
        begin_compensation(
            child, child_saga, event=EventType.SAGA_COMPENSATING, data={"reason": reason, "parent": str(run.pk)}
        )
    else:
        stop_run(child, child_saga, reason=reason, actor="")
    return "undone" if child.status in (RunStatus.COMPENSATED, RunStatus.CANCELLED) else "undoing"


def settle_child_undo(run: SagaRun, saga: type[Saga], step_run: SagaStepRun) -> None:
    """Undo the child of a compensating SubSaga step, and settle the step if that is done (or cannot be)."""
    answer = undo_child(run, step_run)
    if answer == "undone":
        move_step(run, step_run, StepStatus.COMPENSATED, event=EventType.COMPENSATION_SUCCEEDED, data={"child": True})
    elif answer == "failed":
        child = child_of(run, step_run.name)
        assert child is not None
        error = Failure.without_exception(
            "sagas.ChildNotUndone",
            f"The child run {child.pk} ({child.saga_name}) of step {step_run.name!r} is {child.status} and cannot be "
            "undone by its parent (it failed awaiting a person, is past its pivot, or its saga is missing); settle it, "
            "then resolve this compensation by hand.",
            code="child_not_undone",
            attempt=step_run.compensation_attempts,
        )
        record_give_up(run, step_run, error)


def time_out(run: SagaRun, saga: type[Saga]) -> None:
    """A locked executing run passed its deadline: ``executing -> timeout -> compensating``."""
    assert run.deadline is not None
    message = f"Saga deadline {run.deadline.isoformat()} passed before the run completed."
    timed_out = move_run(
        run,
        RunStatus.TIMEOUT,
        event=EventType.SAGA_TIMED_OUT,
        data={"deadline": run.deadline.isoformat()},
        fields={"error": run.error or {"class": "timeout", "code": "deadline", "message": message}},
    )
    logger.warning("saga run %s: %s", run.pk, message, extra=logs.fields(run))
    begin_compensation(run, saga, event=EventType.SAGA_COMPENSATING, data={"reason": "deadline"}, causation=timed_out)


def advance_compensation(run: SagaRun, saga: type[Saga]) -> str | None:
    """Schedule the first stage of compensations that has not settled, or end the run when all have.

    The caller holds the run lock. Stages come from ``engine.compensation_stages``: priority first, then
    reverse order of completion, independent steps together. Returns the run's new status if it ended.
    """
    if run.status != RunStatus.COMPENSATING:
        return None
    steps = list(run.steps.all())
    if any(s.status == StepStatus.RUNNING for s in steps):
        # Steps in flight (parallel branches, or the step a cancel interrupted) finish or time out first:
        # one that succeeds must be undone too, in its place in the order.
        return None
    pending = [s for s in steps if s.status == StepStatus.PENDING]
    if pending:
        # A pending step is in flight while a delivery holds its lease (its start is recorded with its outcome).
        # The fence keeps any other from starting, so a pending step nobody holds will never run: skipped,
        # unless an attempt of it started and never reported back, which is settled first.
        if leases.fence(run.pk, [s.name for s in pending]):
            return None
        lost = doubt.unreported(run, pending)
        for step_run in pending:
            if step_run.name in lost:
                doubt.settle(run, saga, step_run, lost[step_run.name])
            else:
                move_step(run, step_run, StepStatus.SKIPPED, event=EventType.STEP_SKIPPED)
        if lost:
            return None
    by_name = {step_run.name: step_run for step_run in steps}
    owed = [s for s in steps if s.status in DONE_STEP_STATES and has_compensation(saga, s.name)]
    owed.sort(key=lambda s: (s.finished_at or run.created_at, s.index))
    for number, stage in enumerate(engine.compensation_stages(saga, [s.name for s in owed])):
        waiting = False
        for name in stage:
            step_run = by_name[name]
            if step_run.status == StepStatus.SUCCEEDED:
                _schedule(run, saga, step_run, stage=number)
            waiting = waiting or step_run.status == StepStatus.COMPENSATING
        if waiting:
            return None
    return _end_compensation(run, [s.name for s in steps if s.status == StepStatus.COMPENSATION_FAILED])


def compensation_round(step_run: SagaStepRun) -> int:
    """1 for a step's first round of compensation attempts, one more after each operator retry."""
    return 1 + sum(1 for f in step_run.failures if f.get("kind") == "compensation" and f.get("retry_in") is None)


def next_compensation_task_id(run: SagaRun, step_run: SagaStepRun) -> str:
    return engine.compensation_task_id(
        str(run.pk), step_run.name, compensation_round(step_run), step_run.compensation_attempts + 1
    )


def _schedule(
    run: SagaRun, saga: type[Saga], step_run: SagaStepRun, *, stage: int | None, fresh_budget: bool = False
) -> None:
    if fresh_budget:  # an operator's retry: the compensation gets its whole attempt budget again
        step_run.compensation_attempts = 0
    task_id = next_compensation_task_id(run, step_run)
    fields: dict[str, Any] = {"compensation_task_id": task_id}
    if fresh_budget:
        fields["compensation_attempts"] = 0
    move_step(
        run,
        step_run,
        StepStatus.COMPENSATING,
        event=EventType.COMPENSATION_SCHEDULED,
        data={"stage": stage, "task_id": task_id, "fresh_budget": fresh_budget},
        fields=fields,
    )
    dispatch_on_commit(run.pk, engine.compensation_task(saga, str(run.pk), step_run.name, task_id))


def run_on_compensation_failure(*, run_id: RunId, step: str) -> None:
    """The errback of a compensation task that failed before the runner could record why (killed at its
    hard time limit, or the database went away): a failed attempt, retried or given up per its policy."""
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            return
        step_run = step_row(run, step)
        if step_run is None or step_run.status != StepStatus.COMPENSATING or run.status != RunStatus.COMPENSATING:
            return  # recorded already: the runner reports every failure it sees
        try:
            saga = saga_for(run)
        except UnknownSaga:
            return
        attempt = step_run.compensation_attempts
        if _ended(step_run, attempt):
            return
        declared = saga.step(step)
        exc = unrecorded_failure(run, step_run, declared.timeout, EventType.COMPENSATION_STARTED)
        error = Failure.from_exception(exc, attempt=attempt, secrets=NO_SECRETS)
        policy = declared.compensation_retry or sagas_settings.default_compensation_retry
        of_budget = attempt - compensation_budget_base(step_run)
        holder = leases.holder(run.pk, step, compensation=True)
        if holder is not None and holder.task_id == step_run.compensation_task_id:
            leases.forget(run.pk, step, compensation=True)  # its holder is gone: the retry need not wait for it
        if not policy.should_retry(exc, of_budget):
            _give_up(run, saga, step_run, error)
            return
        delay = policy.delay(of_budget, exc)
        record_retry(run, step_run, "compensation", error, delay)
        task = engine.compensation_task(saga, str(run.pk), step, next_compensation_task_id(run, step_run))
        dispatch_on_commit(run.pk, task, countdown=delay)


def schedule_retry(run: SagaRun, saga: type[Saga], step_run: SagaStepRun) -> None:
    """Schedule a failed compensation again, with a fresh attempt budget (caller holds the lock)."""
    _schedule(run, saga, step_run, stage=None, fresh_budget=True)


def _end_compensation(run: SagaRun, gave_up: list[str]) -> str:
    if gave_up:
        move_run(
            run,
            RunStatus.FAILED,
            event=EventType.SAGA_FAILED,
            data={"compensation_failed": gave_up},
            causation=last_event(run, EventType.COMPENSATION_FAILED),
        )
        logger.error(
            "saga run %s failed: compensation of %s gave up; a person must act",
            run.pk,
            gave_up,
            extra=logs.fields(run, status="failed"),
        )
        return RunStatus.FAILED
    move_run(
        run,
        RunStatus.COMPENSATED,
        event=EventType.SAGA_COMPENSATED,
        causation=last_event(run, EventType.COMPENSATION_SUCCEEDED),
    )
    return RunStatus.COMPENSATED


def compensation_claim(*, run_id: RunId, step: str, task_id: str, hard_limit: float | None = None) -> Claim:
    """Claim a scheduled compensation for one attempt, or say why its message must not run it.

    The attempt holds the compensation's lease in Redis while it runs: a second copy of its message (the broker
    delivered it again, or a re-drive published one) waits for it to end instead of starting another attempt,
    or giving the compensation up as if that attempt had vanished. ``hard_limit``: the task's hard time limit
    (seconds), for how long the lease lasts.
    """
    seconds = (hard_limit or 0.0) + sagas_settings.LEASE_SECONDS
    lease = leases.acquire(run_id, step, task_id=task_id, seconds=seconds, compensation=True)
    if not lease.granted:
        # Another delivery runs this compensation now: come back when it has surely ended or let its lease go.
        return Claim(Outcome.WAIT, delay=leases.look_again_in(lease.wait), holder=lease.holder)
    try:
        claim = _claim_compensation(run_id, step, task_id, lease, seconds)
    except Exception:
        # No attempt started (the database went away): the lease goes, and the errback or the reaper acts.
        leases.release(run_id, step, lease.value, mode="done", compensation=True)
        raise
    if claim.outcome is not Outcome.RUN:
        leases.release(run_id, step, lease.value, mode="done", compensation=True)
    return claim


def _claim_compensation(run_id: RunId, step: str, task_id: str, lease: leases.Lease, seconds: float) -> Claim:
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            logger.warning(
                "compensation %s: saga run %s does not exist; dropping the message",
                step,
                run_id,
                extra=logs.fields(run_id=run_id, step=step),
            )
            return Claim(Outcome.STOP)
        step_run = step_row(run, step)
        # Only a scheduled compensation runs: anything else is a duplicate, a stray, or already settled.
        if step_run is None or step_run.status != StepStatus.COMPENSATING or run.status != RunStatus.COMPENSATING:
            return Claim(Outcome.STOP)
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            error = Failure.from_exception(exc, attempt=step_run.compensation_attempts + 1, secrets=NO_SECRETS)
            _give_up(run, None, step_run, error)
            return Claim(Outcome.FAILED, error=error)
        declared = saga.step(step)
        if declared.waits_for is not None:  # a SubSaga: undone by its child, which reports back when it is
            settle_child_undo(run, saga, step_run)
            advance_compensation(run, saga)
            return Claim(Outcome.STOP)
        copy = _copy_of_started(run, step_run, task_id, seconds)
        if copy is not None:
            return copy
        policy = declared.compensation_retry or sagas_settings.default_compensation_retry
        base = compensation_budget_base(step_run)
        if step_run.compensation_attempts - base >= policy.max_attempts:
            # Every attempt of the budget started, and the last never reported back (a failure it reported
            # would have ended the compensation or scheduled its retry).
            if not base and not _ended(step_run, step_run.compensation_attempts):
                base = _second_budget(run, step_run)
            else:
                error = lost_attempts_error(step_run, step_run.compensation_attempts, "compensation")
                _give_up(run, saga, step_run, error)
                return Claim(Outcome.FAILED, error=error)
        # A compensation must run in the end: it waits for its circuit without limit, and a refusal is not
        # an attempt, so other runs' failures that hold the breaker open never spend its budget.
        gate = circuit.ask(run, step, declared.service)
        if gate.refused:
            delay = gate.refusal_delay()
            circuit.record_refusal(run, step_run, gate, call="compensation", retry_in=delay, now=timezone.now())
            return Claim(Outcome.WAIT, gate=gate, delay=delay)
        worker = workers.current()
        move_step(
            run,
            step_run,
            StepStatus.COMPENSATING,
            event=EventType.COMPENSATION_STARTED,
            data={"attempt": step_run.compensation_attempts + 1, "task_id": task_id, **worker.event_data()},
            fields={"compensation_task_id": task_id, **worker.step_fields()},
            increment="compensation_attempts",
        )
        context = step_context(run, step_run, compensation=True)
        retry_task_id = next_compensation_task_id(run, step_run)
        attempt = CompensationAttempt(number=step_run.compensation_attempts, budget_base=base, lease=lease.value)
        return Claim(
            Outcome.RUN, saga=saga, context=context, gate=gate, retry_task_id=retry_task_id, compensation=attempt
        )


def _copy_of_started(run: SagaRun, step_run: SagaStepRun, task_id: str, seconds: float) -> Claim | None:
    """The answer to a message whose task names an attempt of this compensation that already started (a copy
    delivered again, or published twice), or None when it may claim the next attempt. The caller holds the
    compensation's lease, so no attempt runs now unless Redis lost that lease with its data."""
    named = engine.compensation_attempt_of(task_id)
    if named is None:
        return None  # not a compensation's own task id (published by hand): it claims the next attempt
    round_, number = named
    latest = step_run.compensation_attempts
    if round_ < compensation_round(step_run) or number < latest:
        return Claim(Outcome.STOP)  # a copy of an attempt that later ones followed
    if number > latest:
        return None  # the next attempt
    if _ended(step_run, number):
        return Claim(Outcome.STOP)  # a copy of the latest attempt, which ended: its retry has a message of its own
    started = last_event(run, EventType.COMPENSATION_STARTED, step_run.name)
    if started is not None:
        age = (timezone.now() - started.created_at).total_seconds()
        if age < seconds and started.created_at.timestamp() < leases.memory_since():
            # Redis lost its data (the lease with it) since the attempt started: it may still be running.
            awaited = f"attempt {number}, whose lease Redis lost (task {step_run.compensation_task_id})"
            return Claim(Outcome.WAIT, delay=leases.look_again_in(seconds - age), awaited=awaited)
    return None  # it started and vanished (its process died, its lease lapsed): this copy runs the next attempt


def _ended(step_run: SagaStepRun, attempt: int) -> bool:
    """Whether the failure of the compensation's attempt ``attempt`` (of this round) is on record."""
    return any(f.get("attempt") == attempt for f in compensation_failures(step_run))


def _second_budget(run: SagaRun, step_run: SagaStepRun) -> int:
    """The last attempt of the compensation's budget started and vanished: whether it undid the step is not
    known, and the run must not end failed for a lost process alone. Record it in doubt and start a second
    budget (caller holds the run lock); the next attempt, with the same key, settles it. Returns the new base."""
    lost = step_run.compensation_attempts
    error = Failure.without_exception(
        "sagas.WorkerLost",
        f"Attempt {lost} of the compensation of step {step_run.name!r}, its last allowed, started and never "
        "reported back. The compensation runs again with the same idempotency key, on a second budget.",
        code=IN_DOUBT,
        attempt=lost,
    )
    record_retry(run, step_run, "compensation", error, 0.0)
    logger.warning(
        "saga run %s: attempt %s of the compensation of step %s, its last allowed, vanished; running it again",
        run.pk,
        lost,
        step_run.name,
        extra=logs.fields(run, step=step_run.name, attempt=lost),
    )
    return lost


def compensation_succeed(*, run_id: RunId, step: str) -> None:
    """Mark a step compensated and schedule what comes next."""
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = step_row(run, step)
        if step_run is None or step_run.status != StepStatus.COMPENSATING:
            return
        move_step(
            run,
            step_run,
            StepStatus.COMPENSATED,
            event=EventType.COMPENSATION_SUCCEEDED,
            data={"attempt": step_run.compensation_attempts},
        )
        advance_compensation(run, saga_for(run))


def compensation_fail_attempt(*, run_id: RunId, step: str, error: Failure, retry_in: float | None) -> Outcome:
    """Record a failed compensation attempt. With ``retry_in`` the attempt is retried after that many seconds
    (RETRY: its claim named the next attempt's task). With None (or when the run stopped compensating) the
    compensation gives up and the others go on (STOP)."""
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = step_row(run, step)
        if step_run is None or step_run.status != StepStatus.COMPENSATING:
            return Outcome.STOP
        if retry_in is None or run.status != RunStatus.COMPENSATING:
            _give_up(run, saga_for(run), step_run, error)
            return Outcome.STOP
        record_retry(run, step_run, "compensation", error, retry_in)
        return Outcome.RETRY


def _give_up(run: SagaRun, saga: type[Saga] | None, step_run: SagaStepRun, error: Failure) -> None:
    record_give_up(run, step_run, error)
    if saga is not None:
        advance_compensation(run, saga)
    elif not run.steps.filter(status__in=[StepStatus.COMPENSATING, StepStatus.RUNNING]).exists():
        # Without the saga's class there are no stages to follow; end once nothing else is under way.
        gave_up = run.steps.filter(status=StepStatus.COMPENSATION_FAILED).values_list("name", flat=True)
        _end_compensation(run, list(gave_up))


def record_give_up(run: SagaRun, step_run: SagaStepRun, error: Failure) -> None:
    """Mark a compensation given up (caller holds the lock); the caller moves the compensation on."""
    fields, data = log_failure(step_run, "compensation", error, None)
    move_step(
        run, step_run, StepStatus.COMPENSATION_FAILED, event=EventType.COMPENSATION_FAILED, data=data, fields=fields
    )
    metrics.attempt_failed(run.saga_name, step_run.name, kind="compensation", failure=error, retried=False)
    metrics.compensation_gave_up(run.saga_name, step_run.name)
    logger.error(
        "saga run %s: compensation of step %s gave up: %s; a person must act",
        run.pk,
        step_run.name,
        error.message,
        extra=logs.fields(run, step=step_run.name, attempt=step_run.compensation_attempts),
    )
