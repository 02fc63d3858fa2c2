"""Steps in doubt: an attempt that started and never reported back after its run stopped executing.

A step's start is recorded with its outcome, so an attempt killed after its participant committed the effect
leaves the step pending (or running, between retries) with only its Redis attempt count ahead of the row (or,
once Redis lost its data, nothing at all: a step published before that counts as in doubt). Once the run
compensates, such a step is neither skipped nor failed: it is run again with the same idempotency key,
so the participant answers what the lost attempt did, and undone in its place if it succeeded.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from celery.exceptions import TimeLimitExceeded
from django.utils import timezone

from sagas import engine, leases, logs
from sagas.exceptions import UnrecordedFailure
from sagas.failures import Failure
from sagas.models import SagaRun, SagaStepRun
from sagas.services._core import publish_step, record_retry, start_attempt
from sagas.services.context import IN_DOUBT, in_doubt
from sagas.states import DONE_STEP_STATES, StepStatus

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sagas.definitions import Saga
    from sagas.workers import WorkerId

logger = logging.getLogger(__name__)


# The failures the framework records for an attempt that could not report what it did: its task failed before
# the runner recorded the outcome (the database went away after the service acted), or it was killed at its hard
# time limit. Such an attempt is retried while its run executes; its effect may exist all the same.
UNREPORTED_TYPES = frozenset(f"{cls.__module__}.{cls.__qualname__}" for cls in (UnrecordedFailure, TimeLimitExceeded))


def unreported_outcome(step_run: SagaStepRun) -> bool:
    """Whether a running step (waiting for its retry, not being settled yet) last failed with one of the
    ``UNREPORTED_TYPES``: if its run stops now, its latest attempt is in doubt, not failed."""
    return (
        step_run.status == StepStatus.RUNNING
        and not in_doubt(step_run)
        and any(
            f.get("kind") == "action" and f.get("attempt") == step_run.attempts and f.get("type") in UNREPORTED_TYPES
            for f in step_run.failures
        )
    )


def unreported(run: SagaRun, steps: Iterable[SagaStepRun]) -> dict[str, int]:
    """Of ``steps`` (rows no live process holds the lease of), the pending or running ones whose attempt count
    in Redis is ahead of their rows: an attempt started and never reported back. The count of each, by name.
    A running step whose latest attempt's outcome went unreported (``unreported_outcome``) counts too.

    When Redis lost its data after such a step's message was published, its count and lease are gone with it:
    an attempt may have started (and may still be running), so the step counts as in doubt too, its next
    attempt as the lost one."""
    candidates = [s for s in steps if s.status in (StepStatus.PENDING, StepStatus.RUNNING)]
    if not candidates:
        return {}
    counts = leases.started(run.pk, [s.name for s in candidates])
    found = {s.name: counts[s.name] for s in candidates if counts[s.name] > s.attempts}
    found.update({s.name: s.attempts for s in candidates if s.name not in found and unreported_outcome(s)})
    # A step already being settled has its settling attempt published (and re-published by the reaper).
    unsure = [s for s in candidates if s.name not in found and not in_doubt(s)]
    if unsure and run.created_at.timestamp() < (since := leases.memory_since()):
        forgotten = _published_before(run, unsure, datetime.fromtimestamp(since, tz=UTC))
        found.update({s.name: s.attempts + 1 for s in forgotten})
    return found


def _published_before(run: SagaRun, steps: list[SagaStepRun], moment: datetime) -> list[SagaStepRun]:
    """Of ``steps`` (pending or running), those an attempt may have been published for before ``moment``: a
    running one (its retry), and a pending one whose dependencies had all succeeded by then (a first step: its
    run began before)."""
    declared = run.definition.spec["steps"]
    graph = any(step.get("depends_on") for step in declared)
    names = [step["name"] for step in declared]
    depends = {
        step["name"]: list(step.get("depends_on") or []) if graph else names[max(0, index - 1) : index]
        for index, step in enumerate(declared)
    }
    succeeded_at = {
        name: finished or run.created_at  # a success without its time: as early as it could be
        for name, status, finished in run.steps.values_list("name", "status", "finished_at")
        if status in DONE_STEP_STATES
    }

    def published(step_run: SagaStepRun) -> bool:
        if step_run.status == StepStatus.RUNNING:
            return True
        needed = depends.get(step_run.name, [])
        if any(name not in succeeded_at for name in needed):
            return False  # not every dependency succeeded: nothing published it
        return max((succeeded_at[name] for name in needed), default=run.created_at) < moment

    return [s for s in steps if published(s)]


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
