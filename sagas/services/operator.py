"""Operator services: cancel, retry and resolve, each recorded with actor and reason."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from sagas.exceptions import InvalidTransition
from sagas.models import SagaRun, SagaStepRun
from sagas.services._core import RunId, lock_run, logger, move_run, move_step
from sagas.services.runs import dispatch_compensations, saga_for
from sagas.states import EventType, RunStatus, StepStatus


def _require_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("A reason is required: say why, for the audit trail.")
    return reason.strip()


def _actor(actor: str | None) -> str:
    return (actor or "api")[:150]


def run_cancel(*, run_id: RunId, reason: str, actor: str | None = None) -> SagaRun:
    """Cancel a run that has not started executing: it ends ``cancelled`` and none of its steps run."""
    reason = _require_reason(reason)
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.PENDING:
            raise InvalidTransition(
                f"Saga run {run.pk} is {run.status}; only a pending run (no step started yet) can be cancelled."
            )
        cancelled = move_run(
            run,
            RunStatus.CANCELLED,
            event=EventType.SAGA_CANCELLED,
            data={"reason": reason},
            actor=_actor(actor),
            fields={"finished_at": timezone.now()},
        )
        for step_run in run.steps.filter(status=StepStatus.PENDING).order_by("index"):
            move_step(run, step_run, StepStatus.SKIPPED, event=EventType.STEP_SKIPPED, causation=cancelled)
    logger.info("saga run %s cancelled by %s: %s", run.pk, _actor(actor), reason)
    return run


def run_retry(*, run_id: RunId, reason: str, actor: str | None = None) -> SagaRun:
    """Re-run the failed compensations of a ``failed`` run, each with a fresh attempt budget."""
    reason = _require_reason(reason)
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.FAILED:
            raise InvalidTransition(
                f"Saga run {run.pk} is {run.status}; only a failed run (a compensation gave up) can be retried."
            )
        saga = saga_for(run)
        steps = list(run.steps.order_by("index"))
        failed = [s for s in steps if s.status == StepStatus.COMPENSATION_FAILED]
        SagaStepRun.objects.filter(pk__in=[s.pk for s in failed]).update(compensation_attempts=0)
        for step_run in failed:
            step_run.compensation_attempts = 0
        move_run(
            run,
            RunStatus.COMPENSATING,
            event=EventType.SAGA_RETRIED,
            data={"reason": reason, "steps": [s.name for s in failed]},
            actor=_actor(actor),
            fields={"finished_at": None},
        )
        dispatch_compensations(run, saga, steps)
    logger.info("saga run %s retried by %s: %s", run.pk, _actor(actor), reason)
    return run


def run_resolve(*, run_id: RunId, step: str, reason: str, actor: str | None = None) -> SagaRun:
    """Record that a person undid a step by hand; the run ends ``compensated`` once no failed
    compensation is left."""
    reason = _require_reason(reason)
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != RunStatus.FAILED:
            raise InvalidTransition(
                f"Saga run {run.pk} is {run.status}; compensations can only be resolved by hand on a failed run."
            )
        steps = {s.name: s for s in run.steps.all()}
        step_run = steps.get(step)
        if step_run is None:
            raise InvalidTransition(f"Saga run {run.pk} has no step {step!r} (steps: {', '.join(steps)}).")
        if step_run.status != StepStatus.COMPENSATION_FAILED:
            raise InvalidTransition(
                f"Step {step!r} of saga run {run.pk} is {step_run.status}; only a step whose compensation "
                "failed can be resolved."
            )
        resolved = move_step(
            run,
            step_run,
            StepStatus.RESOLVED,
            event=EventType.COMPENSATION_RESOLVED,
            data={"reason": reason},
            actor=_actor(actor),
            fields={"compensated_at": timezone.now()},
        )
        if not any(s.status == StepStatus.COMPENSATION_FAILED for s in steps.values()):
            move_run(
                run,
                RunStatus.COMPENSATED,
                event=EventType.SAGA_COMPENSATED,
                data={"reason": reason, "resolved": True},
                actor=_actor(actor),
                causation=resolved,
                fields={"finished_at": timezone.now()},
            )
    logger.info("saga run %s: step %s resolved by %s: %s", run.pk, step, _actor(actor), reason)
    return run
