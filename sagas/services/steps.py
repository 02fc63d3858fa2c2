"""Forward-step services: claim a step for one attempt and record how that attempt ended."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from sagas import engine, leases, logs, metrics, workers
from sagas.conf import sagas_settings
from sagas.exceptions import RunNotFound, UnknownSaga
from sagas.failures import NO_SECRETS, Failure
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.outcomes import Outcome
from sagas.services import _contract, _statement, circuit, doubt
from sagas.services._core import (
    RunId,
    after_append,
    announce_run_move,
    last_event,
    lock_run,
    lock_run_with_steps,
    log_failure,
    move_run,
    move_step,
    needs_transaction,
    one_statement,
    past_deadline,
    publish_step,
    record_retry,
    run_error,
    saga_for,
    start_attempt,
    start_delay,
    step_row,
    writer,
)
from sagas.services.compensation import advance_compensation, begin_compensation, pivot_passed, time_out
from sagas.services.context import Attempt, Claim, budget_base, in_doubt, lost_attempts_error, step_context
from sagas.states import EventType, RunStatus, StepStatus, stamp_run, stamp_step

if TYPE_CHECKING:
    from sagas.definitions import Saga, Step

logger = logging.getLogger(__name__)

# The shortest wait before asking a breaker again: asking sooner only records another refusal.
MIN_CIRCUIT_DELAY = 0.1


def step_claim(
    *,
    run_id: RunId,
    step: str,
    task_id: str,
    hard_limit: float | None = None,
    previous: leases.Handover | None = None,
) -> Claim:
    """Claim a step for one attempt, or say why its message must not run it.

    Writes nothing to PostgreSQL on its way to RUN: the step's lease and attempt count are taken in Redis (see
    sagas.leases), then the run and its steps are read once. The attempt's start is recorded with its outcome.
    ``hard_limit``: the task's hard time limit (seconds), for how long the lease lasts. ``previous``: the lease
    of the step this process just finished (eager dispatch), given back in the same round trip.
    """
    seconds = (hard_limit or 0.0) + sagas_settings.LEASE_SECONDS
    lease = leases.acquire(run_id, step, task_id=task_id, seconds=seconds, previous=previous)
    if lease.answer is leases.Answer.HELD:
        # Another delivery runs this step now: come back when it has surely finished or let its lease go.
        return Claim(Outcome.WAIT, delay=leases.look_again_in(lease.wait), holder=lease.holder)
    return _holding(run_id, step, lease, lambda: _claim_with_lease(run_id, step, task_id, lease, seconds))


def _holding(run_id: RunId, step: str, lease: leases.Lease, decide: Callable[[], Claim]) -> Claim:
    """The claim ``decide`` makes while ``lease`` is held: a claim that does not run the step gives it back."""
    try:
        claim = decide()
    except Exception:
        # The read or a decision failed (the database went away): no attempt started, so it is taken back off
        # the count and the lease is freed; the errback or the reaper moves the run on.
        _release(run_id, step, lease, Outcome.STOP)
        raise
    if claim.outcome is not Outcome.RUN:
        _release(run_id, step, lease, claim.outcome)
    return claim


def _claim_with_lease(run_id: RunId, step: str, task_id: str, lease: leases.Lease, seconds: float) -> Claim:
    try:
        run, steps = read_run_with_steps(run_id)
    except RunNotFound:
        logger.warning(
            "step %s: saga run %s does not exist; dropping the message",
            step,
            run_id,
            extra=logs.fields(run_id=run_id, step=step),
        )
        return Claim(Outcome.STOP)
    if lease.answer is leases.Answer.FENCED:
        if run.status in (RunStatus.PENDING, RunStatus.EXECUTING):
            # Someone is stopping the run right now: ask again once the stop is committed (or rolled back).
            return Claim(Outcome.WAIT, delay=leases.look_again_in(min(lease.wait, 1.0)))
        if not _settling(run, steps, step):
            with transaction.atomic():
                return _claim_locked(run_id, step, task_id, None)
        # The stop that found this step in doubt is committed (the read shows it): the fence guards nothing
        # here, and the attempt that settles the step need not wait for it to lapse.
        return _claim_through_fence(run, steps, step, task_id, seconds)
    return _decide(run, steps, step, task_id, lease)


def _decide(run: SagaRun, steps: list[SagaStepRun], step: str, task_id: str, lease: leases.Lease) -> Claim:
    claim = _claim(run, steps, step, task_id, lease)
    if claim is None:  # a state change is due first (or a refusal to record): under the run lock
        with transaction.atomic():
            claim = _claim_locked(run.pk, step, task_id, lease)
    return claim


def _claim_through_fence(run: SagaRun, steps: list[SagaStepRun], step: str, task_id: str, seconds: float) -> Claim:
    lease = leases.acquire(run.pk, step, task_id=task_id, seconds=seconds, through_fence=True)
    if not lease.granted:
        return Claim(Outcome.WAIT, delay=leases.look_again_in(lease.wait), holder=lease.holder)
    return _holding(run.pk, step, lease, lambda: _decide(run, steps, step, task_id, lease))


def _settling(run: SagaRun, steps: list[SagaStepRun], step: str) -> bool:
    """Whether ``step`` of a compensating run is in doubt (sagas.services.doubt): its attempts run."""
    step_run = next((s for s in steps if s.name == step), None)
    return run.status == RunStatus.COMPENSATING and step_run is not None and in_doubt(step_run)


def _release(run_id: RunId, step: str, lease: leases.Lease, outcome: Outcome) -> None:
    """A claim that does not run the step gives its lease back: the count goes with a step already done, and
    the attempt is taken back off it otherwise (it never started)."""
    if lease.granted:
        leases.release(run_id, step, lease.value, mode="done" if outcome is Outcome.CONTINUE else "undo")


def read_run_with_steps(run_id: RunId) -> tuple[SagaRun, list[SagaStepRun]]:
    """The run and its steps, read in one query without a lock (the claim's one read)."""
    try:
        key = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError as exc:
        raise RunNotFound(f"No saga run with id {run_id!r}.") from exc
    found = _statement.read_run_with_steps(key)
    if found is None:
        raise RunNotFound(f"No saga run with id {run_id!r}.")
    return found


def _claim(
    run: SagaRun,
    steps: list[SagaStepRun],
    step: str,
    task_id: str,
    lease: leases.Lease | None,
    gate: circuit.Gate | None = None,
) -> Claim | None:
    """Decide a claim from a read of the run and its steps: RUN, or an answer that changes nothing; None when
    something must be written first (the run timed out, the budget is spent, the breaker refused, the class is
    missing), which the caller then decides again under the run lock."""
    step_run = next((s for s in steps if s.name == step), None)
    if step_run is None:
        logger.warning(
            "saga run %s has no step %r; dropping the message", run.pk, step, extra=logs.fields(run, step=step)
        )
        return Claim(Outcome.STOP)
    if step_run.status == StepStatus.SUCCEEDED:
        return Claim(Outcome.CONTINUE if run.status == RunStatus.EXECUTING else Outcome.STOP)
    try:
        saga = saga_for(run)
    except UnknownSaga:
        return None
    dependencies = saga.dependencies()[step]
    settling = _settling(run, steps, step)
    if not settling and any(s.name in dependencies and s.status != StepStatus.SUCCEEDED for s in steps):
        # A stale or stray message: a step starts only once every step it depends on has succeeded.
        logger.warning(
            "saga run %s: step %s arrived before the steps it follows; dropping it",
            run.pk,
            step,
            extra=logs.fields(run, step=step),
        )
        return Claim(Outcome.STOP)
    if run.status in (RunStatus.PENDING, RunStatus.EXECUTING) and past_deadline(run):
        return None  # no step starts after the deadline: the run times out
    if run.status not in (RunStatus.PENDING, RunStatus.EXECUTING) and not settling:
        return None if step_run.status == StepStatus.RUNNING else Claim(Outcome.STOP)
    if run.status == RunStatus.PENDING and run.start_at is not None and run.start_at > timezone.now():
        # A delayed start: no attempt before its time. The message waits again, in hops the broker keeps.
        return Claim(Outcome.WAIT, delay=max(start_delay(run), MIN_CIRCUIT_DELAY), not_before=run.start_at)
    if step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING) or lease is None:
        return Claim(Outcome.STOP)
    declared = saga.step(step)
    policy = declared.retry or sagas_settings.default_retry
    attempt = lease.attempt
    if attempt <= step_run.attempts:  # Redis lost the count (or a person's retry): the row's record is the floor
        attempt = leases.floor_attempts(run.pk, step, step_run.attempts)
    base = budget_base(step_run)
    if attempt - base > policy.max_attempts:
        return None  # every attempt of the budget started and none reported back
    if gate is None:
        gate = circuit.ask(run, step, declared.service)
    if gate.refused:
        return None  # recorded under the run lock, where the breaker is asked again
    recorded = step_run.attempts
    step_run.attempts = attempt  # the context's attempt; the row keeps ``recorded`` until the outcome
    context = step_context(run, step_run, compensation=False, steps=steps)
    return Claim(
        Outcome.RUN,
        saga=saga,
        context=context,
        # A settling attempt's outcome takes the general path, which undoes a success in its place.
        step_id=None if settling else step_run.pk,
        gate=gate,
        retry_task_id=engine.step_task_id(str(run.pk), step, attempt + 1),
        attempt=Attempt(
            run=run,
            step_status=step_run.status,
            recorded=recorded,
            number=attempt,
            task_id=task_id,
            started_at=timezone.now(),
            first_started_at=step_run.started_at,
            lease=lease.value,
            dependencies=dependencies,
            last=not settling and not saga.is_graph() and step_run.index == len(steps) - 1,
            budget_base=base,
            worker=workers.current(),
        ),
    )


def _claim_locked(run_id: RunId, step: str, task_id: str, lease: leases.Lease | None) -> Claim:
    """The claim's decisions that write (a timeout, a budget spent by lost attempts, a refused call, a missing
    class), taken under the run lock; then the claim as ``_claim`` decides it. ``lease`` None: the run was
    fenced, so no attempt may start."""
    try:
        run, steps = lock_run_with_steps(run_id)
    except RunNotFound:
        return Claim(Outcome.STOP)
    step_run = next((s for s in steps if s.name == step), None)
    if step_run is None or step_run.status == StepStatus.SUCCEEDED:
        return _claim(run, steps, step, task_id, lease) or Claim(Outcome.STOP)
    try:
        saga = saga_for(run)
    except UnknownSaga as exc:
        return _claim_without_class(run, step_run, exc)
    if run.status in (RunStatus.PENDING, RunStatus.EXECUTING) and past_deadline(run):
        if run.status == RunStatus.PENDING:
            move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
        time_out(run, saga)  # no step starts after the deadline
    settling = _settling(run, steps, step)
    if run.status not in (RunStatus.PENDING, RunStatus.EXECUTING) and not settling:
        if step_run.status == StepStatus.RUNNING:
            # A retry of a step whose run stopped (cancelled, timed out) while it waited: it ends here, unless
            # an attempt after the one on record started and never reported back (settled first).
            lost = lease.attempt - 1 if lease is not None else leases.started(run.pk, [step])[step]
            if lost > step_run.attempts and run.status == RunStatus.COMPENSATING:
                doubt.settle(run, saga, step_run, lost)
            elif run.status == RunStatus.COMPENSATING and doubt.unreported_outcome(step_run):
                # The attempt on record ended without reporting what it did: it may have acted.
                doubt.settle(run, saga, step_run, step_run.attempts)
            else:
                _abandon(run, saga, step_run)
        return Claim(Outcome.STOP)
    if lease is None or step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING):
        return Claim(Outcome.STOP)
    declared = saga.step(step)
    policy = declared.retry or sagas_settings.default_retry
    attempt = max(lease.attempt, step_run.attempts + 1)
    if attempt - budget_base(step_run) > policy.max_attempts:
        lost = attempt - 1
        error = lost_attempts_error(step_run, lost, "action")
        if step_run.attempts < lost and not settling and not pivot_passed(run, steps, saga):
            return compensate_in_doubt(run, saga, step_run, lost, error)
        if step_run.attempts < lost:
            start_attempt(run, step_run, number=lost, task_id=step_run.task_id, at=timezone.now(), worker=None)
        fail_step(run, step_run, error)
        advance_compensation(run, saga)  # a settling step of a compensating run: the compensation goes on
        return Claim(Outcome.FAILED, error=error)
    gate = circuit.ask(run, step, declared.service)
    if gate.refused:
        claim = _wait_for_circuit(run, step_run, declared, gate)
        if claim.outcome is Outcome.FAILED:
            advance_compensation(run, saga)
        return claim
    return _claim(run, steps, step, task_id, lease, gate) or Claim(Outcome.STOP)


def compensate_in_doubt(
    run: SagaRun, saga: type[Saga], step_run: SagaStepRun, lost: int, error: Failure, *, timed_out: bool = False
) -> Claim:
    """The step's budget is spent (or, with ``timed_out``, the run's deadline passed) and its last attempt
    started and never reported back: that attempt may have acted, so the step does not fail (a failed step is not
    undone) but stops the run with its outcome in doubt. The run compensates, and the step runs again with its
    idempotency key (a budget of its own) to learn what the lost attempt did, undone in its place if it
    succeeded. The caller holds the run lock; the run has not passed its pivot."""
    if run.status == RunStatus.PENDING:
        move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
    doubt.settle(run, saga, step_run, lost)
    if timed_out:
        time_out(run, saga)
    else:
        begin_compensation(
            run,
            saga,
            event=EventType.SAGA_COMPENSATING,
            data={"failed_step": step_run.name},
            fields=None if run.error else {"error": run_error(step_run.name, error)},
        )
    logger.warning(
        "saga run %s: step %s: %s",
        run.pk,
        step_run.name,
        error.message,
        extra=logs.fields(run, step=step_run.name, attempt=lost, error_class=error.failure_class.value),
    )
    return Claim(Outcome.STOP)


def _wait_for_circuit(run: SagaRun, step_run: SagaStepRun, declared: Step, gate: circuit.Gate) -> Claim:
    """The breaker refused the step's call: record the refusal and ask again later, within the step's
    ``circuit_wait`` and the run's deadline; once the step has waited its ``circuit_wait``, it fails with
    ``circuit_open`` and the run compensates. The caller holds the run lock."""
    now = timezone.now()
    limit = declared.circuit_wait_seconds()
    waited = circuit.waited(step_run, now)
    if waited >= limit:
        error = circuit.refusal_error(gate, step_run.attempts).with_message(
            f"The circuit breaker of service {gate.service!r} stayed open: the step waited {waited:.1f}s for it "
            f"(circuit_wait {limit:g}s) and was not called."
        )
        fail_step(run, step_run, error)
        return Claim(Outcome.FAILED, error=error, gate=gate)
    delay = min(gate.refusal_delay(), limit - waited)
    if run.deadline is not None:
        delay = min(delay, (run.deadline - now).total_seconds())
    delay = round(max(delay, MIN_CIRCUIT_DELAY), 3)
    circuit.record_refusal(run, step_run, gate, call="action", retry_in=delay, now=now)
    return Claim(Outcome.WAIT, gate=gate, delay=delay)


def _claim_without_class(run: SagaRun, step_run: SagaStepRun, exc: UnknownSaga) -> Claim:
    """The run's saga version is not in this process's code: the step fails, naming what to do."""
    if run.status == RunStatus.PENDING:
        move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
    if run.status != RunStatus.EXECUTING or step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING):
        return Claim(Outcome.STOP)
    error = Failure.from_exception(exc, attempt=step_run.attempts + 1, secrets=NO_SECRETS)
    if step_run.status == StepStatus.PENDING:
        worker = workers.current()
        move_step(run, step_run, StepStatus.RUNNING, event=EventType.STEP_STARTED, increment="attempts",
                  data=worker.event_data(), fields=worker.step_fields())  # fmt: skip
    fail_step(run, step_run, error)
    return Claim(Outcome.FAILED, error=error)


def _abandon(run: SagaRun, saga: type[Saga], step_run: SagaStepRun) -> None:
    error = Failure.without_exception(
        "sagas.Abandoned",
        f"Saga run {run.pk} stopped executing ({run.status}) while step {step_run.name!r} waited to be retried; it "
        "is not tried again.",
        code="run_stopped",
        attempt=step_run.attempts,
    )
    fail_step(run, step_run, error)
    advance_compensation(run, saga)


def step_succeed(
    *,
    run_id: RunId,
    step: str,
    output: Any,
    seconds: float | None = None,
    claim: Claim | None = None,
    keep_lease: bool = False,
) -> bool:
    """Store a step's output and mark it succeeded; True if the run goes on to its next step (or this success
    completed it), False when the chain must stop here.

    With the ``claim`` that handed out the attempt, while the run executes and nobody moved the step since the
    claim read it, one statement records it all: the attempt's start, its success, and the run's progress (it
    starts executing with its first step, and completes with its last). Otherwise the run lock is taken and the
    general path decides: a step that succeeds after its run stopped executing (cancelled, timed out) is
    recorded all the same, and undone: the run does not come back to life. ``seconds``: how long the successful
    attempt took (the step duration metric). ``keep_lease``: when the run goes on, the caller gives the claim's
    lease back itself (with its next step's acquire, or ``leases.release``).
    """
    attempt = claim.attempt if claim is not None else None
    goes_on = _record_success(run_id, step, output, seconds, claim)
    if attempt is not None and not (keep_lease and goes_on):
        # Recorded and committed: the lease goes, and the count with it.
        leases.release(run_id, step, attempt.lease, mode="done")
    return goes_on


def _record_success(run_id: RunId, step: str, output: Any, seconds: float | None, claim: Claim | None) -> bool:
    attempt = claim.attempt if claim is not None else None
    if attempt is not None and claim is not None and claim.step_id is not None:
        try:
            return _succeed_claimed(attempt, claim.step_id, step, output, seconds)
        except _contract.GuardFailed:
            pass  # the run stopped executing or the step moved since the claim: the general path decides
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = step_row(run, step)
        if step_run is None or step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING):
            # A duplicate attempt finished after the first one recorded the result.
            if step_run is not None and step_run.status == StepStatus.SKIPPED:
                # Skipped: when its run stopped, nobody held the step's lease, no attempt of it was counted, and
                # none was published before Redis lost its data (sagas.services.doubt). An attempt that succeeds
                # now broke that: nothing undoes its effect, so a person must hear of it.
                logger.error(
                    "saga run %s: step %s succeeded after it was skipped; its effect stands unrecorded",
                    run.pk,
                    step,
                    extra=logs.fields(run, step=step, attempt=attempt.number if attempt else None),
                )
            done = step_run is not None and step_run.status == StepStatus.SUCCEEDED
            return done and run.status == RunStatus.EXECUTING
        _record_start(run, step_run, attempt)
        lifts = run.status == RunStatus.EXECUTING and lifts_deadline(run, saga_for(run), step)
        succeeded = move_step(
            run,
            step_run,
            StepStatus.SUCCEEDED,
            event=EventType.STEP_SUCCEEDED,
            data={
                "attempt": step_run.attempts,
                "late": run.status != RunStatus.EXECUTING,
                "output": output,
                **({"deadline_lifted": True} if lifts else {}),
            },
            fields={"output": output, "error": None},
            run_fields={"deadline": None} if lifts else None,
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


def lifts_deadline(run: SagaRun, saga: type[Saga], step: str) -> bool:
    """Whether the success of ``step`` lifts the run's deadline: it is a pivot, after which nothing is undone,
    so a deadline could only stop the run halfway (the steps after it are bound by their own limits)."""
    return run.deadline is not None and step in saga.pivots()


def _record_start(run: SagaRun, step_run: SagaStepRun, attempt: Attempt | None) -> None:
    """Record the start of the attempt whose outcome is being recorded, unless already on record (caller holds
    the run lock). Without the claim's attempt (an outcome reported by other means), the next attempt now."""
    if attempt is not None:
        if step_run.status == StepStatus.PENDING or step_run.attempts < attempt.number:
            start_attempt(run, step_run, number=attempt.number, task_id=attempt.task_id, at=attempt.started_at,
                          worker=attempt.worker)  # fmt: skip
    elif step_run.status == StepStatus.PENDING:
        start_attempt(run, step_run, number=step_run.attempts + 1, task_id=step_run.task_id, at=timezone.now(),
                      worker=None)  # fmt: skip


def _succeed_claimed(attempt: Attempt, step_id: int, step: str, output: Any, seconds: float | None) -> bool:
    """The success path: the attempt's start and success, the run starting to execute (its first step) or
    completing (the last step of a sequence), guarded by the run's and step's state as the claim read them.
    One statement, committed by itself unless the events are announced in the outbox, a snapshot is due or
    the run is a graph (whose fan-in reads the steps under the run lock): then in one transaction with those."""
    run, now = attempt.run, timezone.now()
    saga = saga_for(run)
    starts = run.status == RunStatus.PENDING
    completes = attempt.last
    events: list[SagaEvent] = []
    causes: list[_contract.Cause] = []

    def add(type: str, step_name: str, data: dict[str, Any], at: Any, cause: _contract.Cause) -> None:
        events.append(SagaEvent(run_id=run.pk, type=type, step=step_name, data=data, created_at=at))
        causes.append(cause)

    previous = _contract.Cause(previous=True)
    run_values: dict[str, Any] = {"updated_at": now}
    lifts = lifts_deadline(run, saga, step)
    if lifts:
        run_values["deadline"] = None
    if starts:
        add(EventType.SAGA_EXECUTING, "", {"from": RunStatus.PENDING, "to": RunStatus.EXECUTING},
            attempt.started_at, _contract.Cause())  # fmt: skip
        run_values.update(status=RunStatus.EXECUTING, **stamp_run(RunStatus.PENDING, RunStatus.EXECUTING,
                                                                  attempt.started_at))  # fmt: skip
    started = {"from": attempt.step_status, "to": StepStatus.RUNNING, "attempt": attempt.number}
    add(
        EventType.STEP_STARTED,
        step,
        {**started, "task_id": attempt.task_id, **attempt.worker.event_data()},
        attempt.started_at,
        previous if starts else _contract.Cause(attempt_of=(step, attempt.dependencies)),
    )
    add(
        EventType.STEP_SUCCEEDED,
        step,
        {"from": StepStatus.RUNNING, "to": StepStatus.SUCCEEDED, "attempt": attempt.number, "late": False,
         "output": output, **({"deadline_lifted": True} if lifts else {})},
        now,
        previous,
    )  # fmt: skip
    if completes:
        add(EventType.SAGA_COMPLETED, "", {"from": RunStatus.EXECUTING, "to": RunStatus.COMPLETED}, now, previous)
        run_values.update(status=RunStatus.COMPLETED, **stamp_run(RunStatus.EXECUTING, RunStatus.COMPLETED, now))
    step_values = {
        "status": StepStatus.SUCCEEDED,
        "attempts": attempt.number,
        "task_id": attempt.task_id,
        "started_at": attempt.first_started_at or attempt.started_at,
        **stamp_step(StepStatus.SUCCEEDED, None, now),
        "output": output,
        "error": None,
        "circuit_waiting_since": None,
        **attempt.worker.step_fields(),
    }
    change = _contract.StepChange(step_id, attempt.step_status, step_values, attempts=attempt.recorded)
    for event in events:
        event.correlation_id = run.correlation_id
    alone = not saga.is_graph() and not needs_transaction(run, events, first_seq=run.lock_version + 1)
    # Alone, outside any transaction, the statement is atomic by itself (a failed step guard undoes all of it);
    # inside a caller's transaction it gets a savepoint, so a failed guard leaves nothing of it either.
    by_itself = alone and one_statement() and not transaction.get_connection().in_atomic_block
    with contextlib.nullcontext() if by_itself else transaction.atomic():
        written = writer().write(
            run.pk,
            run_values=run_values,
            expect_status=run.status,
            step=change,
            events=[_contract.event_columns(event) for event in events],
            causes=causes,
        )
        for name in ("lock_version", *run_values):
            setattr(run, name, written.run[name])
        _contract.stored_events(written, events)
        if not alone:  # alone: no message to store, no snapshot due
            for event in events:
                after_append(run, event)
        if seconds is not None:
            metrics.step_succeeded(run.saga_name, step, seconds)
        if starts:
            announce_run_move(run, RunStatus.PENDING, RunStatus.EXECUTING)
        if completes:
            announce_run_move(run, RunStatus.EXECUTING, RunStatus.COMPLETED)
        elif saga.is_graph():
            _start_unblocked(run, saga, step)
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


def continue_after(run: SagaRun, saga: type[Saga], step_run: SagaStepRun, cause: SagaEvent) -> None:
    """A locked executing run goes on after ``step_run`` succeeded without an attempt's message to carry the
    chain on (its signal came, or its child run completed): complete it, or publish what comes next."""
    if saga.is_graph():
        _start_unblocked(run, saga, step_run.name)
    elif not run_complete_locked(run, last_success=cause):
        publish_step(run, saga, saga.steps[step_run.index + 1].name, attempt=1)


def run_complete_locked(run: SagaRun, *, last_success: SagaEvent | None = None) -> bool:
    """Mark a locked executing run completed when all its steps succeeded; False if it was not ready.
    ``last_success``: the StepSucceeded it follows from, when the caller just wrote it (else looked up)."""
    if run.status != RunStatus.EXECUTING:
        return False
    if run.steps.exclude(status=StepStatus.SUCCEEDED).exists():
        return False
    _complete(run, last_success or last_event(run, EventType.STEP_SUCCEEDED))
    return True


def step_fail_attempt(
    *, run_id: RunId, step: str, error: Failure, retry_in: float | None, claim: Claim | None = None
) -> Outcome:
    """Record a failed attempt (and its start), retried in ``retry_in`` seconds (None: the policy gives up).

    Returns RETRY, FAILED or STOP: a retry is only granted while the run executes and its deadline is ahead.
    """
    attempt = claim.attempt if claim is not None else None
    outcome = _record_failure(run_id, step, error, retry_in, attempt)
    if attempt is not None:  # recorded and committed: the lease goes; the count stays while a retry follows
        leases.release(run_id, step, attempt.lease, mode="keep" if outcome is Outcome.RETRY else "done")
    return outcome


def _record_failure(
    run_id: RunId, step: str, error: Failure, retry_in: float | None, attempt: Attempt | None
) -> Outcome:
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = step_row(run, step)
        if step_run is None or step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING):
            return Outcome.STOP  # a duplicate attempt reporting after the step moved on
        _record_start(run, step_run, attempt)
        executing = run.status == RunStatus.EXECUTING and not past_deadline(run)
        settling = run.status == RunStatus.COMPENSATING and in_doubt(step_run)
        if retry_in is not None and (executing or settling):
            # A settling step is tried until its outcome is known: a transient failure says nothing of it.
            record_retry(run, step_run, "action", error, retry_in)
            return Outcome.RETRY
        fail_step(run, step_run, error)
        if run.status == RunStatus.EXECUTING and past_deadline(run):
            time_out(run, saga_for(run))
        elif run.status == RunStatus.COMPENSATING:
            advance_compensation(run, saga_for(run))
        return Outcome.FAILED if run.status == RunStatus.EXECUTING else Outcome.STOP


def fail_step(run: SagaRun, step_run: SagaStepRun, error: Failure) -> None:
    """Mark a step failed for good (caller holds the lock); the first failure becomes the run's error. A
    pending run (its first step failed before any outcome moved it) starts executing first, to compensate."""
    if run.status == RunStatus.PENDING:
        move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
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
    metrics.attempt_failed(run.saga_name, step_run.name, kind="action", failure=error, retried=False)
    logger.warning(
        "saga run %s: step %s failed: %s",
        run.pk,
        step_run.name,
        error.message,
        extra=logs.fields(run, step=step_run.name, attempt=step_run.attempts, error_class=error.failure_class.value),
    )
