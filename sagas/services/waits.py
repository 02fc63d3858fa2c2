"""Steps that wait: a Wait for its signal, a SubSaga for its child run; the signal, the timeout, the child's end."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from sagas import engine, leases, logs, masking
from sagas.definitions import ChildRun, SignalWait, StepContext
from sagas.exceptions import InvalidPayload, InvalidTransition, RunNotFound, SagaError, UnknownSaga
from sagas.failures import Failure
from sagas.models import SagaRun, SagaStepRun
from sagas.services._core import (
    RunId,
    check_countdown,
    dispatch_on_commit,
    lock_run,
    move_run,
    move_step,
    saga_for,
    step_row,
)
from sagas.services.compensation import advance_compensation, child_of, settle_child_undo
from sagas.services.context import Claim
from sagas.services.forward import stop_after_failure
from sagas.services.outside_data import outside_data, outside_text
from sagas.services.runs import run_start_or_existing
from sagas.services.steps import continue_after, fail_step
from sagas.states import DONE_STEP_STATES, FINISHED_RUN_STATES, EventType, RunStatus, StepStatus

if TYPE_CHECKING:
    from sagas.definitions import Saga, Step

logger = logging.getLogger(__name__)


def wait_begin(*, run_id: RunId, step: str, claim: Claim) -> None:
    """A claimed Wait or SubSaga step begins to wait: ``waiting``, with its timeout check scheduled (a Wait) or
    its child run started (a SubSaga), in one transaction. Its lease goes once that is committed: the step holds
    no worker and no lease while it waits."""
    assert claim.saga is not None
    assert claim.context is not None
    assert claim.attempt is not None
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = step_row(run, step)
        if (
            step_run is not None
            and run.status in (RunStatus.PENDING, RunStatus.EXECUTING)
            and step_run.status in (StepStatus.PENDING, StepStatus.RUNNING)
        ):
            _begin(run, claim.saga, step_run, claim.saga.step(step), claim.context)
    leases.release(run_id, step, claim.attempt.lease, mode="done")


def _begin(run: SagaRun, saga: type[Saga], step_run: SagaStepRun, declared: Step, context: StepContext) -> None:
    if run.status == RunStatus.PENDING:
        move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING)
    waits_for = declared.waits_for
    if isinstance(waits_for, ChildRun):
        child = child_of(run, step_run.name)
        if child is None or child.status in FINISHED_RUN_STATES:  # else still running: the step waits for it
            child = _child_started(run, saga, step_run, waits_for, context)
            if child is None:
                return
        move_step(
            run,
            step_run,
            StepStatus.WAITING,
            event=EventType.STEP_WAITING,
            data={"for": "child", "child": str(child.pk), "saga": child.saga_name, "until": None},
        )
        return
    assert isinstance(waits_for, SignalWait)
    until = timezone.now() + timedelta(seconds=waits_for.timeout) if waits_for.timeout else None
    move_step(
        run,
        step_run,
        StepStatus.WAITING,
        event=EventType.STEP_WAITING,
        data={"for": "signal", "until": until.isoformat() if until else None},
        fields={"wait_until": until},
    )
    if until is not None:
        _arm_wait_check(run, step_run.name, until)


def _arm_wait_check(run: SagaRun, step: str, until: datetime) -> None:
    # In hops: the broker hands a message held past its visibility timeout to another worker.
    dispatch_on_commit(run.pk, engine.wait_check(str(run.pk), step), countdown=check_countdown(until))


def _child_started(
    run: SagaRun, saga: type[Saga], step_run: SagaStepRun, waits_for: ChildRun, context: StepContext
) -> SagaRun | None:
    """A new child run of a SubSaga step; None if its payload was refused (the step failed, the run compensates)."""
    payload: Any = None
    try:
        payload = _child_payload(run, step_run, waits_for, context)
        return _start_child(run, step_run, waits_for, payload)
    except SagaError as exc:
        # The refusal may quote the payload (a schema's message repeats the value it refused).
        seen = masking.secret_values(payload, dict(context.payload), dict(context.results))
        fail_step(run, step_run, Failure.from_exception(exc, attempt=step_run.attempts, secrets=seen))
        stop_after_failure(run, saga, step_run)
        return None


def _child_payload(run: SagaRun, step_run: SagaStepRun, waits_for: ChildRun, context: StepContext) -> Any:
    """The payload a SubSaga step starts its child with: its payload function's, or the parent's own."""
    try:
        return waits_for.payload(context) if waits_for.payload is not None else run.payload
    except Exception as exc:
        raise InvalidPayload(
            f"The payload function of SubSaga step {step_run.name!r} raised {type(exc).__name__}: {exc}"
        ) from exc


def _start_child(run: SagaRun, step_run: SagaStepRun, waits_for: ChildRun, payload: Any) -> SagaRun:
    """Start a new child run of a SubSaga step (its idempotency key is the parent's run and step; a step that a
    person retries after its child failed starts a new child, with the round appended)."""
    rounds = SagaRun.objects.filter(parent=run, parent_step=step_run.name).count()
    key = f"{run.pk}:{step_run.name}" + (f":{rounds + 1}" if rounds else "")
    child, _ = run_start_or_existing(
        saga=waits_for.saga,
        payload=payload,
        idempotency_key=key,
        correlation_id=run.correlation_id,
        parent=run,
        parent_step=step_run.name,
    )
    logger.info(
        "saga run %s: step %s started child run %s (%s)",
        run.pk,
        step_run.name,
        child.pk,
        child.saga_name,
        extra=logs.fields(run, step=step_run.name),
    )
    return child


def run_signal(
    *, run_id: RunId, name: str, data: Mapping[str, Any] | None = None, actor: str | None = None, reason: str = ""
) -> SagaRun:
    """Deliver the signal ``name`` to a run whose Wait step of that name waits: ``data`` (a JSON object) becomes
    the step's output and the run goes on. The same signal again (same name and data) once it was received is a
    no-op; a signal the run is not waiting for raises InvalidTransition. Data that is not JSON, is over
    SAGAS["MAX_PAYLOAD_BYTES"], fails the Wait's schema or sets a key of the run's start payload raises
    InvalidPayload (``outside_data``), and the run goes on waiting."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InvalidPayload(
            f"The data of signal {name!r} must be a JSON object (a dict), got {type(data).__name__}.", field="data"
        )
    who = outside_text((actor or "api")[:150], what="actor", field="actor")
    reason = outside_text(reason, what="reason", field="reason")
    with transaction.atomic():
        run = lock_run(run_id)
        saga = saga_for(run)
        waits = sorted(step.name for step in saga.steps if isinstance(step.waits_for, SignalWait))
        step_run = step_row(run, name) if name in waits else None
        if step_run is None:
            raise InvalidTransition(
                f"Saga run {run.pk} ({run.saga_name}) has no Wait step {name!r}: the signals it takes are "
                f"{', '.join(map(repr, waits)) or 'none'}."
            )
        waits_for = saga.step(name).waits_for
        assert isinstance(waits_for, SignalWait)
        output = outside_data(run, dict(data), what=f"data of signal {name!r}", field="data", schema=waits_for.schema)
        if step_run.status == StepStatus.WAITING and run.status == RunStatus.EXECUTING:
            received = move_step(
                run,
                step_run,
                StepStatus.SUCCEEDED,
                event=EventType.SIGNAL_RECEIVED,
                data={"output": output, "reason": reason},
                fields={"output": output, "error": None},
                actor=who,
            )
            continue_after(run, saga, step_run, received)
            logger.info(
                "saga run %s: signal %s received from %s",
                run.pk,
                name,
                who,
                extra=logs.fields(run, step=name, actor=who),
            )
            return run
        if step_run.status in DONE_STEP_STATES and step_run.output == output and _signalled(run, name):
            return run  # the same signal again: it was received once, and that is all it does
    raise InvalidTransition(
        f"Saga run {run.pk} is not waiting for signal {name!r}: the run is {run.status} and its step {name!r} is "
        f"{step_run.status}" + (" (a different signal was received)." if _signalled(run, name) else ".")
    )


def _signalled(run: SagaRun, name: str) -> bool:
    return run.events.filter(type=EventType.SIGNAL_RECEIVED, step=name).exists()


def run_check_wait(*, run_id: RunId, step: str) -> bool:
    """Fail a Wait step whose timeout passed without its signal (the run compensates, or fails after its pivot);
    True if it did. Re-arms itself while the timeout is far."""
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            return False
        step_run = step_row(run, step)
        if step_run is None or step_run.status != StepStatus.WAITING or step_run.wait_until is None:
            return False  # the signal came first, or the run stopped
        if step_run.wait_until > timezone.now():
            _arm_wait_check(run, step, step_run.wait_until)
            return False
        try:
            saga = saga_for(run)
        except UnknownSaga:
            return False  # the run parks on its next task; the reaper shows it
        fail_overdue_wait(run, saga, step_run)
        return True


def fail_overdue_wait(run: SagaRun, saga: type[Saga], step_run: SagaStepRun) -> None:
    """A Wait past its timeout fails like a step (caller holds the lock)."""
    assert step_run.wait_until is not None
    error = Failure.without_exception(
        "sagas.WaitTimedOut",
        f"No signal {step_run.name!r} came before {step_run.wait_until.isoformat()} (the Wait's timeout).",
        code="wait_timeout",
        attempt=step_run.attempts,
    )
    fail_step(run, step_run, error)
    if run.status == RunStatus.EXECUTING:
        stop_after_failure(run, saga, step_run)


def run_child_settled(*, run_id: RunId, step: str) -> None:
    """The child run of the SubSaga step ``step`` finished: the step succeeds with the child's merged outputs
    (the child completed) or fails (it did not); a step being undone is compensated with its child."""
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            return
        step_run = step_row(run, step)
        if step_run is None or step_run.status not in (StepStatus.WAITING, StepStatus.COMPENSATING):
            return  # settled already: the message may come more than once
        try:
            saga = saga_for(run)
        except UnknownSaga:
            return
        settle_child_step(run, saga, step_run)


def settle_child_step(run: SagaRun, saga: type[Saga], step_run: SagaStepRun) -> bool:
    """Move a SubSaga step on after its child (caller holds the parent's lock); False if the child is not done."""
    child = child_of(run, step_run.name)
    if step_run.status == StepStatus.COMPENSATING:
        if child is None or child.status in FINISHED_RUN_STATES:
            settle_child_undo(run, saga, step_run)
            advance_compensation(run, saga)
            return True
        return False
    if child is None or child.status not in FINISHED_RUN_STATES:
        return False
    if child.status == RunStatus.COMPLETED:
        output = merged_outputs(child)
        succeeded = move_step(
            run,
            step_run,
            StepStatus.SUCCEEDED,
            event=EventType.STEP_SUCCEEDED,
            data={"attempt": step_run.attempts, "late": False, "output": output, "child": str(child.pk)},
            fields={"output": output, "error": None},
        )
        if run.status == RunStatus.EXECUTING:
            continue_after(run, saga, step_run, succeeded)
        elif run.status == RunStatus.COMPENSATING:
            advance_compensation(run, saga)
        return True
    error = Failure.without_exception(
        "sagas.ChildFailed",
        f"The child run {child.pk} ({child.saga_name}) of step {step_run.name!r} ended {child.status}.",
        code=f"child_{child.status}",
        attempt=step_run.attempts,
    )
    fail_step(run, step_run, error)
    if run.status == RunStatus.EXECUTING:
        stop_after_failure(run, saga, step_run)
    elif run.status == RunStatus.COMPENSATING:
        advance_compensation(run, saga)
    return True


def merged_outputs(run: SagaRun) -> dict[str, Any]:
    """The outputs of a run's completed steps merged in step order (an object's keys; later steps win)."""
    merged: dict[str, Any] = {}
    for output in run.steps.filter(status__in=DONE_STEP_STATES).order_by("index").values_list("output", flat=True):
        if isinstance(output, dict):
            merged.update(output)
    return merged
