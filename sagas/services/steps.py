"""Step-level services: claim a step or compensation, record its success or failed attempt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from sagas.conf import sagas_settings
from sagas.definitions import StepContext
from sagas.exceptions import RunNotFound, UnknownSaga
from sagas.models import SagaRun, SagaStepRun
from sagas.retry import describe_failure, failure_summary
from sagas.services._core import RunId, append_event, lock_run, logger, move_run, move_step
from sagas.services.runs import saga_for
from sagas.states import EventType, RunStatus, StepStatus

if TYPE_CHECKING:
    from sagas.definitions import Saga

# Steps whose forward action completed: their outputs feed later steps and compensations.
FORWARD_DONE = (
    StepStatus.SUCCEEDED,
    StepStatus.COMPENSATING,
    StepStatus.COMPENSATED,
    StepStatus.COMPENSATION_FAILED,
    StepStatus.RESOLVED,
)


class ClaimOutcome(StrEnum):
    RUN = "run"  # call the user's function with the claim's context
    DONE = "done"  # already done (a redelivery): skip the body, let the chain go on
    STOP = "stop"  # the run is no longer in a state for this: skip the body and stop the chain
    GAVE_UP = "gave_up"  # the attempt budget was spent by attempts that never reported back


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    saga: type[Saga] | None = None
    context: StepContext | None = None
    error: dict[str, Any] | None = None


def _step_run(run: SagaRun, name: str) -> SagaStepRun | None:
    return run.steps.filter(name=name).first()


def _context(run: SagaRun, step_run: SagaStepRun, *, compensation: bool) -> StepContext:
    results = dict(run.steps.filter(status__in=FORWARD_DONE).order_by("index").values_list("name", "output"))
    payload = dict(run.payload)
    for output in results.values():
        if isinstance(output, dict):
            payload.update(output)
    key = f"{run.pk}:{step_run.name}"
    return StepContext(
        saga_id=run.pk,
        saga_name=run.saga_name,
        step=step_run.name,
        payload=payload,
        results=results,
        idempotency_key=f"{key}:compensate" if compensation else key,
        attempt=step_run.compensation_attempts if compensation else step_run.attempts,
        result=step_run.output if compensation else None,
    )


def _lost_attempts_error(step_run: SagaStepRun, attempts: int, what: str) -> dict[str, Any]:
    return {
        "type": "sagas.WorkerLost",
        "message": f"The {what} of step {step_run.name!r} was started {attempts} times and never reported "
        "back (worker killed or message lost each time); giving up instead of trying again.",
        "class": "unknown",
        "code": "attempts_lost",
        "attempt": attempts,
        "traceback": "",
    }


# --- forward steps ---


def step_claim(*, run_id: RunId, step: str, task_id: str) -> Claim:
    """Claim a step for one attempt, or say why its message must not run it."""
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            logger.warning("step %s: saga run %s does not exist; dropping the message", step, run_id)
            return Claim(ClaimOutcome.STOP)
        step_run = _step_run(run, step)
        if step_run is None:
            logger.warning("saga run %s has no step %r; dropping the message", run_id, step)
            return Claim(ClaimOutcome.STOP)
        if step_run.status == StepStatus.SUCCEEDED:
            return Claim(ClaimOutcome.DONE if run.status == RunStatus.EXECUTING else ClaimOutcome.STOP)
        if run.steps.filter(index__lt=step_run.index).exclude(status=StepStatus.SUCCEEDED).exists():
            # A stale or stray message: steps run in order, and an earlier one has not succeeded.
            logger.warning("saga run %s: step %s arrived before the steps it follows; dropping it", run.pk, step)
            return Claim(ClaimOutcome.STOP)
        if run.status == RunStatus.PENDING:
            move_run(run, RunStatus.EXECUTING, event=EventType.SAGA_EXECUTING, fields={"started_at": timezone.now()})
        if run.status != RunStatus.EXECUTING or step_run.status not in (StepStatus.PENDING, StepStatus.RUNNING):
            return Claim(ClaimOutcome.STOP)
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            error = describe_failure(exc, attempt=step_run.attempts + 1)
            if step_run.status == StepStatus.PENDING:
                move_step(run, step_run, StepStatus.RUNNING, event=EventType.STEP_STARTED, increment="attempts")
            _fail_step(run, step_run, error)
            return Claim(ClaimOutcome.GAVE_UP, error=error)
        policy = saga.step(step).retry or sagas_settings.default_retry
        if step_run.status == StepStatus.RUNNING and step_run.attempts >= policy.max_attempts:
            error = _lost_attempts_error(step_run, step_run.attempts, "action")
            _fail_step(run, step_run, error)
            return Claim(ClaimOutcome.GAVE_UP, error=error)
        move_step(
            run,
            step_run,
            StepStatus.RUNNING,
            event=EventType.STEP_STARTED,
            data={"attempt": step_run.attempts + 1, "task_id": task_id},
            fields={"task_id": task_id, "started_at": step_run.started_at or timezone.now()},
            increment="attempts",
        )
        return Claim(ClaimOutcome.RUN, saga=saga, context=_context(run, step_run, compensation=False))


def step_succeed(*, run_id: RunId, step: str, output: Any) -> bool:
    """Store a step's output and mark it succeeded; True if the run goes on to its next step."""
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = _step_run(run, step)
        if step_run is None or step_run.status != StepStatus.RUNNING:
            # A duplicate attempt finished after the first one recorded the result.
            done = step_run is not None and step_run.status == StepStatus.SUCCEEDED
            return done and run.status == RunStatus.EXECUTING
        move_step(
            run,
            step_run,
            StepStatus.SUCCEEDED,
            event=EventType.STEP_SUCCEEDED,
            data={"attempt": step_run.attempts},
            fields={"output": output, "error": None, "finished_at": timezone.now()},
        )
        return run.status == RunStatus.EXECUTING


def step_fail_attempt(*, run_id: RunId, step: str, error: dict[str, Any], retry_in: float | None) -> None:
    """Record a failed attempt: retried in ``retry_in`` seconds, or (None) the step has failed for good."""
    _record_failed_attempt(
        run_id,
        step,
        error,
        retry_in,
        while_status=StepStatus.RUNNING,
        event=EventType.STEP_ATTEMPT_FAILED,
        give_up=_fail_step,
    )


def _record_failed_attempt(
    run_id: RunId,
    step: str,
    error: dict[str, Any],
    retry_in: float | None,
    *,
    while_status: str,
    event: str,
    give_up: Callable[[SagaRun, SagaStepRun, dict[str, Any]], None],
) -> None:
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = _step_run(run, step)
        if step_run is None or step_run.status != while_status:
            return  # a duplicate attempt reporting after the step moved on
        if retry_in is None:
            give_up(run, step_run, error)
            return
        SagaStepRun.objects.filter(pk=step_run.pk).update(error=error)
        append_event(run, event, step=step, data={"error": failure_summary(error), "retry_in": retry_in})


def _fail_step(run: SagaRun, step_run: SagaStepRun, error: dict[str, Any]) -> None:
    move_step(
        run,
        step_run,
        StepStatus.FAILED,
        event=EventType.STEP_FAILED,
        data={"error": failure_summary(error)},
        fields={"error": error, "finished_at": timezone.now()},
        run_fields={"error": {"step": step_run.name, **failure_summary(error)}},
    )
    logger.warning("saga run %s: step %s failed: %s", run.pk, step_run.name, error["message"])


# --- compensations ---


def compensation_claim(*, run_id: RunId, step: str, task_id: str) -> Claim:
    """Claim a step's compensation for one attempt, or say why its message must not run it."""
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            logger.warning("compensation %s: saga run %s does not exist; dropping the message", step, run_id)
            return Claim(ClaimOutcome.STOP)
        step_run = _step_run(run, step)
        if step_run is None or step_run.status not in (
            StepStatus.SUCCEEDED,
            StepStatus.COMPENSATING,
            StepStatus.COMPENSATION_FAILED,
        ):
            return Claim(ClaimOutcome.DONE)  # already undone, or nothing to undo
        if run.status != RunStatus.COMPENSATING:
            return Claim(ClaimOutcome.STOP)
        try:
            saga = saga_for(run)
        except UnknownSaga as exc:
            error = describe_failure(exc, attempt=step_run.compensation_attempts + 1)
            if step_run.status != StepStatus.COMPENSATING:
                move_step(run, step_run, StepStatus.COMPENSATING, event=EventType.COMPENSATION_STARTED)
            _fail_compensation(run, step_run, error)
            return Claim(ClaimOutcome.GAVE_UP, error=error)
        declared = saga.step(step)
        if declared.compensation is None:
            return Claim(ClaimOutcome.DONE)
        policy = declared.compensation_retry or sagas_settings.default_compensation_retry
        if step_run.status == StepStatus.COMPENSATING and step_run.compensation_attempts >= policy.max_attempts:
            error = _lost_attempts_error(step_run, step_run.compensation_attempts, "compensation")
            _fail_compensation(run, step_run, error)
            return Claim(ClaimOutcome.GAVE_UP, error=error)
        move_step(
            run,
            step_run,
            StepStatus.COMPENSATING,
            event=EventType.COMPENSATION_STARTED,
            data={"attempt": step_run.compensation_attempts + 1, "task_id": task_id},
            fields={"compensation_task_id": task_id},
            increment="compensation_attempts",
        )
        return Claim(ClaimOutcome.RUN, saga=saga, context=_context(run, step_run, compensation=True))


def compensation_succeed(*, run_id: RunId, step: str) -> None:
    """Mark a step compensated."""
    with transaction.atomic():
        run = lock_run(run_id)
        step_run = _step_run(run, step)
        if step_run is None or step_run.status != StepStatus.COMPENSATING:
            return
        move_step(
            run,
            step_run,
            StepStatus.COMPENSATED,
            event=EventType.COMPENSATION_SUCCEEDED,
            data={"attempt": step_run.compensation_attempts},
            fields={"compensated_at": timezone.now()},
        )


def compensation_fail_attempt(*, run_id: RunId, step: str, error: dict[str, Any], retry_in: float | None) -> None:
    """Record a failed compensation attempt: retried in ``retry_in`` seconds, or (None) given up."""
    _record_failed_attempt(
        run_id,
        step,
        error,
        retry_in,
        while_status=StepStatus.COMPENSATING,
        event=EventType.COMPENSATION_ATTEMPT_FAILED,
        give_up=_fail_compensation,
    )


def _fail_compensation(run: SagaRun, step_run: SagaStepRun, error: dict[str, Any]) -> None:
    move_step(
        run,
        step_run,
        StepStatus.COMPENSATION_FAILED,
        event=EventType.COMPENSATION_FAILED,
        data={"error": failure_summary(error)},
        fields={"error": error},
    )
    logger.error(
        "saga run %s: compensation of step %s gave up: %s; a person must act",
        run.pk,
        step_run.name,
        error["message"],
    )
