"""Operator services: cancel, retry and resolve, each recorded with actor and reason."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from sagas import logs
from sagas.exceptions import InvalidTransition, ReasonRequired, UnknownStep
from sagas.models import SagaRun, SagaStepRun
from sagas.services._core import RunId, lock_run, move_run, move_step, saga_for
from sagas.services.compensation import advance_compensation, pivot_passed, schedule_retry, stop_run
from sagas.services.forward import failed_forward, resolve_forward, retry_forward
from sagas.services.outside_data import outside_text
from sagas.services.redrive import run_redrive_by_operator
from sagas.states import EventType, RunStatus, StepStatus

logger = logging.getLogger(__name__)


def _require_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonRequired("A reason is required: say why, for the audit trail.")
    return outside_text(reason.strip(), what="reason", field="reason")


def _actor(actor: str | None) -> str:
    return outside_text((actor or "api")[:150], what="actor", field="actor")


def run_cancel(*, run_id: RunId, reason: str, actor: str | None = None) -> SagaRun:
    """Cancel a run. A pending run ends ``cancelled`` with no step run. An executing run stops: no further
    step starts, what completed is compensated, and it ends ``compensated`` (a step still running finishes
    first, and is undone if it succeeded)."""
    reason = _require_reason(reason)
    who = _actor(actor)
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status not in (RunStatus.PENDING, RunStatus.EXECUTING):
            raise InvalidTransition(_cannot_cancel(run))
        saga = saga_for(run) if run.status == RunStatus.EXECUTING else None
        steps = list(run.steps.all())
        if saga is not None and pivot_passed(run, steps, saga):
            passed = sorted(s.name for s in steps if s.name in saga.pivots() and s.status == StepStatus.SUCCEEDED)
            raise InvalidTransition(
                f"Saga run {run.pk} is past its pivot ({', '.join(passed)} succeeded): its effects cannot be "
                "undone, so it only goes forward and cannot be cancelled."
            )
        stop_run(run, saga, reason=reason, actor=who)
    logger.info("saga run %s cancelled by %s: %s", run.pk, who, reason, extra=logs.fields(run, actor=who))
    return run


def _cannot_cancel(run: SagaRun) -> str:
    if run.status in (RunStatus.COMPENSATING, RunStatus.TIMEOUT):
        return f"Saga run {run.pk} is already {run.status}: its completed steps are being undone."
    if run.status == RunStatus.FAILED and failed_forward(run, list(run.steps.all()), None):
        return (
            f"Saga run {run.pk} is failed: a step after its pivot gave up. Retry it (sagas.retry) or resolve the "
            "step by hand (sagas.resolve); it only goes forward."
        )
    if run.status == RunStatus.FAILED:
        return (
            f"Saga run {run.pk} is failed: a compensation gave up. Retry it (sagas.retry) or resolve the "
            "compensation by hand (sagas.resolve)."
        )
    return f"Saga run {run.pk} is {run.status}; a finished run cannot be cancelled."


def run_retry(*, run_id: RunId, reason: str, actor: str | None = None) -> SagaRun:
    """Re-run what a ``failed`` run gave up on, each with a fresh attempt budget: its failed step after the
    pivot (the run goes on forward), or its failed compensations; or re-drive a run that is stuck (no
    progress for the lease) or parked."""
    reason = _require_reason(reason)
    who = _actor(actor)
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status == RunStatus.FAILED:
            saga = saga_for(run)
            steps = list(run.steps.order_by("index"))
            if failed_forward(run, steps, saga):
                retry_forward(run, saga, steps, reason=reason, actor=who)
                logger.info(
                    "saga run %s retried forward by %s: %s", run.pk, who, reason, extra=logs.fields(run, actor=who)
                )
                return run
            failed = list(run.steps.filter(status=StepStatus.COMPENSATION_FAILED).order_by("index"))
            move_run(
                run,
                RunStatus.COMPENSATING,
                event=EventType.SAGA_RETRIED,
                data={"reason": reason, "steps": [s.name for s in failed]},
                actor=who,
            )
            for step_run in failed:
                schedule_retry(run, saga, step_run)
            advance_compensation(run, saga)
            logger.info("saga run %s retried by %s: %s", run.pk, who, reason, extra=logs.fields(run, actor=who))
            return run
    return run_redrive_by_operator(run_id=run_id, reason=reason, actor=who)


def run_resolve(*, run_id: RunId, step: str, reason: str, actor: str | None = None, output: Any = None) -> SagaRun:
    """Record that a person did by hand what a ``failed`` run gave up on: a step that failed after the pivot
    (done, with ``output`` as its output; the run goes on forward), or a failed compensation (undone; the run
    ends ``compensated`` once no failed compensation is left)."""
    reason = _require_reason(reason)
    with transaction.atomic():
        run = lock_run(run_id)
        steps = {s.name: s for s in run.steps.order_by("index")}
        step_run = steps.get(step)
        if step_run is None:
            message = f"Saga run {run.pk} has no step {step!r} (its steps: {', '.join(steps)})."
            raise UnknownStep(message, step=step, steps=(*steps,))
        if run.status != RunStatus.FAILED:
            raise InvalidTransition(
                f"Saga run {run.pk} is {run.status}; compensations can only be resolved by hand on a failed run "
                "(and so can a step that failed after the pivot)."
            )
        saga = saga_for(run)
        forward = step_run.status == StepStatus.FAILED and failed_forward(run, [*steps.values()], saga)
        if forward:
            resolve_forward(run, saga, [*steps.values()], step_run, output=output, reason=reason, actor=_actor(actor))
        else:
            _resolve_compensation(run, step_run, steps, output=output, reason=reason, actor=_actor(actor))
    logger.info(
        "saga run %s: step %s resolved%s by %s: %s",
        run.pk,
        step,
        " forward" if forward else "",
        _actor(actor),
        reason,
        extra=logs.fields(run, step=step, actor=_actor(actor)),
    )
    return run


def _resolve_compensation(
    run: SagaRun, step_run: SagaStepRun, steps: dict[str, SagaStepRun], *, output: Any, reason: str, actor: str
) -> None:
    """A failed compensation done by hand (caller holds the lock); the run ends compensated once none is left."""
    step = step_run.name
    if output is not None:
        raise InvalidTransition(
            f"Step {step!r} of saga run {run.pk} is {step_run.status}: an output is given only for a step that "
            "failed after the pivot, which a person resolves as done."
        )
    if step_run.status != StepStatus.COMPENSATION_FAILED:
        raise InvalidTransition(
            f"Step {step!r} of saga run {run.pk} is {step_run.status}; only a step whose compensation "
            "failed, or a step that failed after the pivot, can be resolved."
        )
    resolved = move_step(
        run, step_run, StepStatus.RESOLVED, event=EventType.COMPENSATION_RESOLVED, data={"reason": reason}, actor=actor
    )
    if not any(s.status == StepStatus.COMPENSATION_FAILED for s in steps.values()):
        move_run(
            run,
            RunStatus.COMPENSATED,
            event=EventType.SAGA_COMPENSATED,
            data={"reason": reason, "resolved": True},
            actor=actor,
            causation=resolved,
        )
