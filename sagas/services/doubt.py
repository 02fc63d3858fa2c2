"""Steps in doubt: an attempt that started and never reported back after its run stopped executing.

A step's start is recorded with its outcome, so an attempt killed after its participant committed the effect
leaves the step pending (or running, between retries) with only its Redis attempt count ahead of the row. Once
the run compensates, such a step is neither skipped nor failed: it is run again with the same idempotency key,
so the participant answers what the lost attempt did, and undone in its place if it succeeded.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

from sagas import engine, leases, logs
from sagas.failures import Failure
from sagas.models import SagaRun, SagaStepRun
from sagas.services._core import publish_step, record_retry, start_attempt
from sagas.services.context import IN_DOUBT
from sagas.states import StepStatus

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sagas.definitions import Saga
    from sagas.workers import WorkerId

logger = logging.getLogger(__name__)


def unreported(run: SagaRun, steps: Iterable[SagaStepRun]) -> dict[str, int]:
    """Of ``steps`` (rows no live process holds the lease of), the pending or running ones whose attempt count
    in Redis is ahead of their rows: an attempt started and never reported back. The count of each, by name."""
    candidates = [s for s in steps if s.status in (StepStatus.PENDING, StepStatus.RUNNING)]
    counts = leases.started(run.pk, [s.name for s in candidates])
    return {s.name: counts[s.name] for s in candidates if counts[s.name] > s.attempts}


def settle(
    run: SagaRun,
    saga: type[Saga],
    step_run: SagaStepRun,
    lost: int,
    *,
    at: datetime | None = None,
    task_id: str = "",
    worker: WorkerId | None = None,
) -> None:
    """Attempt ``lost`` of a step of a run that stopped executing started and never reported back: record its
    start (unless on record) and a failure saying it is in doubt, and publish the next attempt, which runs
    although the run compensates (caller holds the run lock). ``at``, ``task_id``, ``worker``: the lost
    attempt's, when known (from its lease)."""
    if step_run.status == StepStatus.PENDING or step_run.attempts < lost:
        start_attempt(
            run,
            step_run,
            number=lost,
            task_id=task_id or engine.step_task_id(str(run.pk), step_run.name, lost),
            at=at or timezone.now(),
            worker=worker,
        )
    error = Failure.without_exception(
        "sagas.WorkerLost",
        f"Attempt {lost} of step {step_run.name!r} started and never reported back, and the run stopped "
        "executing: its effect may have happened. The step runs again with the same idempotency key to learn its "
        "outcome, and is undone if it succeeded.",
        code=IN_DOUBT,
        attempt=lost,
    )
    record_retry(run, step_run, "action", error, 0.0)
    publish_step(run, saga, step_run.name, attempt=lost + 1)
    logger.warning(
        "saga run %s: attempt %s of step %s is in doubt; running the step again to settle it",
        run.pk,
        lost,
        step_run.name,
        extra=logs.fields(run, step=step_run.name, attempt=lost),
    )
