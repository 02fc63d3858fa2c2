"""Forward recovery after the pivot: a step that gives up stops the run for a person, who retries or resolves it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sagas import engine, logs
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.services._core import last_event, move_run, move_step, publish_step
from sagas.services.compensation import begin_compensation, pivot_passed
from sagas.services.outside_data import outside_data
from sagas.services.steps import run_complete_locked
from sagas.states import EventType, RunStatus, StepStatus

if TYPE_CHECKING:
    from sagas.definitions import Saga

logger = logging.getLogger(__name__)

# Step statuses of a run that has begun undoing itself: it went backward, so a person's retry goes that way too.
UNDOING_STEP_STATES = frozenset(
    {StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED, StepStatus.RESOLVED}
)


def failed_forward(run: SagaRun, steps: list[SagaStepRun], saga: type[Saga] | None) -> bool:
    """Whether a ``failed`` run failed going forward: a step after its pivot gave up, and nothing was undone."""
    return (
        run.status == RunStatus.FAILED
        and any(s.status == StepStatus.FAILED for s in steps)
        and not any(s.status in UNDOING_STEP_STATES for s in steps)
        and pivot_passed(run, steps, saga)
    )


def stop_after_failure(run: SagaRun, saga: type[Saga], step_run: SagaStepRun) -> None:
    """What an executing run does about a step that failed for good (caller holds the lock): before the pivot
    it compensates; after it the run ends ``failed``, awaiting a person, with nothing undone."""
    causation = last_event(run, EventType.STEP_FAILED, step_run.name)
    if pivot_passed(run, list(run.steps.all()), saga):
        fail_forward(run, step_run.name, causation=causation)
        return
    begin_compensation(
        run,
        saga,
        event=EventType.SAGA_COMPENSATING,
        data={"failed_step": step_run.name},
        causation=causation,
    )


def fail_forward(run: SagaRun, step: str, *, causation: SagaEvent | None = None, reason: str = "") -> None:
    """End a locked executing run ``failed`` after its pivot: ``step`` gave up and only a person can take it
    on (sagas.retry or sagas.resolve)."""
    move_run(
        run,
        RunStatus.FAILED,
        event=EventType.SAGA_FAILED,
        data={"failed_step": step, "forward": True, **({"reason": reason} if reason else {})},
        causation=causation,
    )
    logger.error(
        "saga run %s failed after its pivot: step %s gave up; a person must retry or resolve it",
        run.pk,
        step,
        extra=logs.fields(run, step=step, status="failed"),
    )


def retry_forward(run: SagaRun, saga: type[Saga], steps: list[SagaStepRun], *, reason: str, actor: str) -> None:
    """A person's retry of a run that failed after its pivot (caller holds the lock): each failed step runs
    again with a fresh attempt budget, and the run goes on forward."""
    failed = [s for s in steps if s.status == StepStatus.FAILED]
    retried = move_run(
        run,
        RunStatus.EXECUTING,
        event=EventType.SAGA_RETRIED,
        data={"reason": reason, "steps": [s.name for s in failed], "forward": True},
        actor=actor,
    )
    for step_run in failed:
        move_step(
            run,
            step_run,
            StepStatus.RUNNING,
            event=EventType.STEP_RETRIED,
            data={"reason": reason, "fresh_budget": True},
            actor=actor,
            causation=retried,
        )
        publish_step(run, saga, step_run.name, attempt=step_run.attempts + 1)
    if saga.is_graph():
        _publish_ready(run, saga, steps, exclude={s.name for s in failed})


def resolve_forward(
    run: SagaRun, saga: type[Saga], steps: list[SagaStepRun], step_run: SagaStepRun, *, output: Any, reason: str,
    actor: str,
) -> None:  # fmt: skip
    """A person's record that a step which failed after the pivot was done by hand, with the ``output`` it
    should have given (merged into later steps' payload like any output); the run goes on forward once no
    failed step is left (caller holds the lock)."""
    output = outside_data(run, output, what=f"output of step {step_run.name!r}", field="output")
    resolved = move_step(
        run,
        step_run,
        StepStatus.SUCCEEDED,
        event=EventType.STEP_RESOLVED,
        data={"reason": reason, "output": output},
        fields={"output": output, "error": None},
        actor=actor,
    )
    if any(s.status == StepStatus.FAILED for s in steps):
        return  # another branch failed too: the run waits for the person to take that one on as well
    move_run(
        run,
        RunStatus.EXECUTING,
        event=EventType.SAGA_RESUMED,
        data={"reason": reason, "step": step_run.name},
        actor=actor,
        causation=resolved,
    )
    if run_complete_locked(run, last_success=resolved):
        return
    _publish_ready(run, saga, steps, exclude=set())


def _publish_ready(run: SagaRun, saga: type[Saga], steps: list[SagaStepRun], *, exclude: set[str]) -> None:
    """Publish the pending steps whose dependencies have all succeeded: in a sequence the next step (its
    chain runs the rest), in a graph every branch that is ready."""
    succeeded = {s.name for s in steps if s.status == StepStatus.SUCCEEDED}
    pending = {s.name for s in steps if s.status == StepStatus.PENDING} - exclude
    ready = engine.ready_steps(saga, succeeded, pending)
    for name in ready if saga.is_graph() else ready[:1]:
        publish_step(run, saga, name, attempt=1)
