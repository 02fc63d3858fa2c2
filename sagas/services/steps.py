"""Forward-step services: claim a step for one attempt and record how that attempt ended."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sagas import engine, eventlog, metrics
from sagas.conf import sagas_settings
from sagas.exceptions import RunNotFound, UnknownSaga
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.retry import describe_failure
from sagas.services import _statement, circuit
from sagas.services._core import (
    RunId,
    append_event,
    last_event,
    lock_run,
    lock_run_with_steps,
    log_failure,
    logger,
    move_run,
    move_step,
    past_deadline,
    publish_step,
    run_error,
    saga_for,
    step_row,
)
from sagas.services.compensation import advance_compensation, time_out
from sagas.services.context import Claim, ClaimOutcome, lost_attempts_error, step_context
from sagas.states import EventType, RunStatus, StepStatus, stamp_step

if TYPE_CHECKING:
    from sagas.definitions import Saga, Step

# The shortest wait before asking a breaker again: asking sooner only records another refusal.
MIN_CIRCUIT_DELAY = 0.1


def step_claim(*, run_id: RunId, step: str, task_id: str) -> Claim:
    """Claim a step for one attempt, or say why its message must not run it."""
    with transaction.atomic():
        try:
            # One query: the run, locked, and its steps (this one, its dependencies, the outputs it is given).
            run, steps = lock_run_with_steps(run_id)
        except RunNotFound:
            logger.warning("step %s: saga run %s does not exist; dropping the message", step, run_id)
            return Claim(ClaimOutcome.STOP)
        step_run = next((s for s in steps if s.name == step), None)
        if step_run is None:
            logger.warning("saga run %s has no step %r; dropping the message", run_id, step)
            return Claim(ClaimOutcome.STOP)
        if step_run.status == StepStatus.SUCCEEDED:
            return Claim(ClaimOutcome.DONE if run.status == RunStatus.EXECUTING else ClaimOutcome.STOP)
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            return _claim_without_class(run, step_run, exc)
        dependencies = saga.dependencies()[step]
        if any(s.name in dependencies and s.status != StepStatus.SUCCEEDED for s in steps):
            # A stale or stray message: a step starts only once every step it depends on has succeeded.
            logger.warning("saga run %s: step %s arrived before the steps it follows; dropping it", run.pk, step)
            return Claim(ClaimOutcome.STOP)
        if run.status == RunStatus.PENDING:
            move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
        if run.status == RunStatus.EXECUTING and past_deadline(run):
            time_out(run, saga)  # no step starts after the deadline
        if run.status != RunStatus.EXECUTING:
            if step_run.status == StepStatus.RUNNING:
                # A retry of a step whose run stopped (cancelled, timed out) while it waited: it ends here.
                _abandon(run, saga, step_run)
            return Claim(ClaimOutcome.STOP)
        if step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING):
            return Claim(ClaimOutcome.STOP)
        declared = saga.step(step)
        policy = declared.retry or sagas_settings.default_retry
        if step_run.status == StepStatus.RUNNING and step_run.attempts >= policy.max_attempts:
            error = lost_attempts_error(step_run, step_run.attempts, "action")
            fail_step(run, step_run, error)
            return Claim(ClaimOutcome.GAVE_UP, error=error)
        # Asked before the attempt is counted: a call the breaker refuses was never an attempt.
        gate = circuit.ask(run, step, declared.service)
        if gate.refused:
            return _wait_for_circuit(run, step_run, declared, gate)
        started = move_step(
            run,
            step_run,
            StepStatus.RUNNING,
            event=EventType.STEP_STARTED,
            data={"attempt": step_run.attempts + 1, "task_id": task_id},
            fields={"task_id": task_id},
            increment="attempts",
            causation_query=_cause_of_attempt(run, step, dependencies),
        )
        context = step_context(run, step_run, compensation=False, steps=steps)
        return Claim(
            ClaimOutcome.RUN, saga=saga, context=context, started_event_id=started.pk, step_id=step_run.pk, gate=gate
        )


def _wait_for_circuit(run: SagaRun, step_run: SagaStepRun, declared: Step, gate: circuit.Gate) -> Claim:
    """The breaker refused the step's call: record the refusal and ask again later, within the step's
    ``circuit_wait`` and the run's deadline; once the step has waited its ``circuit_wait``, it fails with
    ``circuit_open`` and the run compensates. The caller holds the run lock."""
    now = timezone.now()
    limit = declared.circuit_wait_seconds()
    waited = circuit.waited(step_run, now)
    if waited >= limit:
        error = circuit.refusal_error(gate, step_run.attempts)
        error["message"] = (
            f"The circuit breaker of service {gate.service!r} stayed open: the step waited {waited:.1f}s for it "
            f"(circuit_wait {limit:g}s) and was not called."
        )
        fail_step(run, step_run, error)
        return Claim(ClaimOutcome.GAVE_UP, error=error, gate=gate)
    delay = min(gate.refusal_delay(), limit - waited)
    if run.deadline is not None:
        delay = min(delay, (run.deadline - now).total_seconds())
    delay = round(max(delay, MIN_CIRCUIT_DELAY), 3)
    circuit.record_refusal(run, step_run, gate, call="action", retry_in=delay, now=now)
    return Claim(ClaimOutcome.WAIT, gate=gate, delay=delay)


def _cause_of_attempt(run: SagaRun, step: str, dependencies: frozenset[str]) -> _statement.EventIds:
    """What an attempt follows from: the step's own last event (a failed attempt, for a retry), else the
    success of its last dependency, the run starting to execute, or a re-drive, whichever came last. A query,
    sent as part of the StepStarted event's INSERT."""
    causes = (
        Q(step=step)
        | Q(type=EventType.STEP_SUCCEEDED, step__in=dependencies)
        | Q(type__in=[EventType.SAGA_EXECUTING, EventType.SAGA_REDRIVEN])
    )
    return SagaEvent.objects.filter(causes, run_id=run.pk).order_by("-seq").values("pk")[:1]


def _claim_without_class(run: SagaRun, step_run: SagaStepRun, exc: UnknownSaga) -> Claim:
    """The run's saga version is not in this process's code: the step fails, naming what to do."""
    if run.status == RunStatus.PENDING:
        move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
    if run.status != RunStatus.EXECUTING or step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING):
        return Claim(ClaimOutcome.STOP)
    error = describe_failure(exc, attempt=step_run.attempts + 1)
    if step_run.status == StepStatus.PENDING:
        move_step(run, step_run, StepStatus.RUNNING, event=EventType.STEP_STARTED, increment="attempts")
    fail_step(run, step_run, error)
    return Claim(ClaimOutcome.GAVE_UP, error=error)


def _abandon(run: SagaRun, saga: type[Saga], step_run: SagaStepRun) -> None:
    error = {
        "type": "sagas.Abandoned",
        "message": f"Saga run {run.pk} stopped executing ({run.status}) while step {step_run.name!r} waited "
        "to be retried; it is not tried again.",
        "class": "unknown",
        "code": "run_stopped",
        "attempt": step_run.attempts,
        "traceback": "",
    }
    fail_step(run, step_run, error)
    advance_compensation(run, saga)


def step_succeed(
    *,
    run_id: RunId,
    step: str,
    output: Any,
    seconds: float | None = None,
    cause: int | None = None,
    step_id: int | None = None,
    attempt: int | None = None,
) -> bool:
    """Store a step's output and mark it succeeded; True if the run goes on to its next step (or this success
    completed it), False when the chain must stop here.

    A step that succeeds after its run stopped executing (cancelled, timed out) is recorded all the
    same, and undone: the run does not come back to life. ``seconds``: how long the successful attempt
    took (the step duration metric); ``cause``: the id of the attempt's StepStarted event, when known;
    ``step_id`` and ``attempt``: the step row and attempt the claim handed out, when known (then, while the
    run executes and nobody else moved the step, one statement records it all).
    """
    if step_id is not None and attempt is not None and _statement.supported():
        try:
            with transaction.atomic():
                return _succeed_claimed(run_id, step, output, seconds, cause, step_id, attempt)
        except _statement.GuardFailed:
            pass  # the run stopped executing or the step moved since the claim: the general path decides
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = step_row(run, step)
        if step_run is None or step_run.status != StepStatus.RUNNING:
            # A duplicate attempt finished after the first one recorded the result.
            done = step_run is not None and step_run.status == StepStatus.SUCCEEDED
            return done and run.status == RunStatus.EXECUTING
        succeeded = move_step(
            run,
            step_run,
            StepStatus.SUCCEEDED,
            event=EventType.STEP_SUCCEEDED,
            data={"attempt": step_run.attempts, "late": run.status != RunStatus.EXECUTING, "output": output},
            fields={"output": output, "error": None},
            causation_id=cause,
        )
        if seconds is not None:
            metrics.step_succeeded(run.saga_name, step, seconds)
        if run.status == RunStatus.COMPENSATING:
            advance_compensation(run, saga_for(run))
        elif run.status == RunStatus.EXECUTING:
            saga = saga_for(run)
            if saga.is_graph():
                _start_unblocked(run, saga, step)
            else:
                run_complete_locked(run, last_success=succeeded)
        return run.status in (RunStatus.EXECUTING, RunStatus.COMPLETED)


def _succeed_claimed(
    run_id: RunId, step: str, output: Any, seconds: float | None, cause: int | None, step_id: int, attempt: int
) -> bool:
    """The success path of an executing run: the run's and step's guarded UPDATEs, the StepSucceeded event and
    the count of steps still to go in one statement (GuardFailed when the run or step moved since the claim).
    The same columns and event as ``move_step`` writes."""
    now = timezone.now()
    data = {"from": StepStatus.RUNNING, "to": StepStatus.SUCCEEDED, "attempt": attempt, "late": False, "output": output}
    values = {
        "status": StepStatus.SUCCEEDED,
        **stamp_step(StepStatus.SUCCEEDED, None, now),
        "output": output,
        "circuit_waiting_since": None,
    }
    event = SagaEvent(run_id=run_id, type=EventType.STEP_SUCCEEDED, step=step, data=data, created_at=now)
    written = _statement.write(
        run_id,
        run_values={"updated_at": now},
        expect_status=RunStatus.EXECUTING,
        step=_statement.StepChange(step_id, StepStatus.RUNNING, {**values, "error": None}, attempts=attempt),
        event=_statement.event_columns(event),
        cause=_statement.Cause(id=cause),
        count_unfinished=True,
    )
    run = _statement.run_from(written.run)
    event.correlation_id = run.correlation_id
    eventlog.after_append(run, _statement.stored_event(written, event))
    if seconds is not None:
        metrics.step_succeeded(run.saga_name, step, seconds)
    saga = saga_for(run)
    if saga.is_graph():
        _start_unblocked(run, saga, step)
    elif written.others_unfinished == 0:
        _complete(run, event)
    return run.status in (RunStatus.EXECUTING, RunStatus.COMPLETED)


def _complete(run: SagaRun, last_success: SagaEvent | None) -> None:
    """Complete a locked executing run whose steps all succeeded."""
    move_run(run, RunStatus.COMPLETED, event=EventType.SAGA_COMPLETED, causation=last_success)


def _start_unblocked(run: SagaRun, saga: type[Saga], succeeded_step: str) -> None:
    """Fan-in owned by the rows (caller holds the run lock): start the steps that ``succeeded_step`` was the
    last dependency of, or complete the run when every step has succeeded. Each sibling's success takes
    the lock in turn, so exactly one of them sees a join step ready and publishes it."""
    statuses = dict(run.steps.values_list("name", "status"))
    succeeded = {name for name, status in statuses.items() if status == StepStatus.SUCCEEDED}
    if len(succeeded) == len(statuses):
        run_complete_locked(run)
        return
    pending = {name for name, status in statuses.items() if status == StepStatus.PENDING}
    dependencies = saga.dependencies()
    for name in engine.ready_steps(saga, succeeded, pending):
        if succeeded_step in dependencies[name]:
            publish_step(run, saga, name, attempt=1)


def run_complete_locked(run: SagaRun, *, last_success: SagaEvent | None = None) -> bool:
    """Mark a locked executing run completed when all its steps succeeded; False if it was not ready.
    ``last_success``: the StepSucceeded it follows from, when the caller just wrote it (else looked up)."""
    if run.status != RunStatus.EXECUTING:
        return False
    if run.steps.exclude(status=StepStatus.SUCCEEDED).exists():
        return False
    _complete(run, last_success or last_event(run, EventType.STEP_SUCCEEDED))
    return True


class AttemptOutcome(StrEnum):
    RETRY = "retry"  # the attempt is tried again after the delay recorded
    FAILED = "failed"  # the step failed for good; the run compensates
    STOPPED = "stopped"  # the run no longer executes; nothing more to do for this attempt


def step_fail_attempt(*, run_id: RunId, step: str, error: dict[str, Any], retry_in: float | None) -> AttemptOutcome:
    """Record a failed attempt, retried in ``retry_in`` seconds (None: the policy gives up).

    Returns an AttemptOutcome: a retry is only granted while the run executes and its deadline is ahead.
    """
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = step_row(run, step)
        if step_run is None or step_run.status != StepStatus.RUNNING:
            return AttemptOutcome.STOPPED  # a duplicate attempt reporting after the step moved on
        if retry_in is not None and run.status == RunStatus.EXECUTING and not past_deadline(run):
            record_retry(run, step_run, error, retry_in)
            return AttemptOutcome.RETRY
        fail_step(run, step_run, error)
        if run.status == RunStatus.EXECUTING and past_deadline(run):
            time_out(run, saga_for(run))
        elif run.status == RunStatus.COMPENSATING:
            advance_compensation(run, saga_for(run))
        return AttemptOutcome.FAILED if run.status == RunStatus.EXECUTING else AttemptOutcome.STOPPED


def record_retry(run: SagaRun, step_run: SagaStepRun, error: dict[str, Any], retry_in: float) -> None:
    """Record a failed attempt that will be tried again after ``retry_in`` seconds (caller holds the lock)."""
    fields, data = log_failure(step_run, "action", error, retry_in)
    SagaStepRun.objects.filter(pk=step_run.pk).update(**fields)
    append_event(run, EventType.STEP_ATTEMPT_FAILED, step=step_run.name, data=data)
    metrics.attempt_failed(run.saga_name, step_run.name, kind="action", error=error, retried=True)


def fail_step(run: SagaRun, step_run: SagaStepRun, error: dict[str, Any]) -> None:
    """Mark a step failed for good (caller holds the lock); the first failure becomes the run's error."""
    fields, data = log_failure(step_run, "action", error, None)
    move_step(
        run,
        step_run,
        StepStatus.FAILED,
        event=EventType.STEP_FAILED,
        data=data,
        fields=fields,
        run_fields=None if run.error else {"error": run_error(step_run.name, error)},
    )
    metrics.attempt_failed(run.saga_name, step_run.name, kind="action", error=error, retried=False)
    logger.warning("saga run %s: step %s failed: %s", run.pk, step_run.name, error["message"])
