"""Reads shared by the admin, the CLI and the health report: who needs a person, what is stuck, how long."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from sagas.conf import sagas_settings
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.registry import all_sagas
from sagas.states import ACTIVE_RUN_STATES, FINISHED_RUN_STATES, TERMINAL_RUN_STATES, RunStatus, StepStatus
from sagas.tracing import STORED_KEY

# A step in one of these is what a person looks at first.
ATTENTION_STEP_STATES = (
    StepStatus.COMPENSATION_FAILED,
    StepStatus.FAILED,
    StepStatus.RUNNING,
    StepStatus.WAITING,
    StepStatus.COMPENSATING,
)


def awaiting_person(runs: QuerySet[SagaRun] | None = None) -> QuerySet[SagaRun]:
    """Runs that stopped because a compensation could not complete: nothing moves them but a person."""
    return (runs if runs is not None else SagaRun.objects.all()).filter(status=RunStatus.FAILED)


def stale(now: datetime) -> Q:
    """Runs that should be moving but made no progress for the lease (``SagaRun.idle_since`` as a query): a
    delayed start counts from its time, since nothing was due to move the run before; a run whose step waits
    (for a signal, or a child run that is still going) is idle by design, unless the wait's timeout passed or the
    child its step waits for finished, both a lease ago."""
    cutoff = now - timedelta(seconds=sagas_settings.LEASE_SECONDS)
    not_delayed = Q(start_at__isnull=True) | Q(start_at__lt=cutoff)
    waiting = SagaStepRun.objects.filter(run=OuterRef("pk"), status=StepStatus.WAITING).filter(
        Q(wait_until__isnull=True) | Q(wait_until__gt=cutoff)
    )
    active_children = SagaRun.objects.filter(parent=OuterRef("pk"), status__in=ACTIVE_RUN_STATES)
    step_waits = SagaStepRun.objects.filter(
        run=OuterRef("parent"),
        name=OuterRef("parent_step"),
        status__in=[StepStatus.WAITING, StepStatus.COMPENSATING],
    )
    settled_children = SagaRun.objects.filter(
        Exists(step_waits), parent=OuterRef("pk"), status__in=FINISHED_RUN_STATES, updated_at__lt=cutoff
    )
    moving = (~Exists(waiting) & ~Exists(active_children)) | Exists(settled_children)
    return Q(status__in=ACTIVE_RUN_STATES, updated_at__lt=cutoff) & not_delayed & Q(moving)


def stuck(runs: QuerySet[SagaRun] | None = None, now: datetime | None = None) -> QuerySet[SagaRun]:
    """Runs that should be moving but made no progress for the lease (parked ones included)."""
    return (runs if runs is not None else SagaRun.objects.all()).filter(stale(now or timezone.now()))


@dataclass(frozen=True, slots=True)
class SagaVersion:
    """One version of a saga: whether this process's code declares it, and its runs in the database."""

    saga: str
    version: int
    declared: bool
    latest: bool  # the version a new run of the saga starts under
    runs: int
    unfinished: int  # not completed, compensated or cancelled: they need the version's code to go on

    @property
    def orphaned(self) -> bool:
        """Unfinished runs of a version the code no longer declares: they cannot move on."""
        return self.unfinished > 0 and not self.declared


def saga_versions(runs: QuerySet[SagaRun] | None = None) -> list[SagaVersion]:
    """Every saga version the code declares or the database has runs of, by saga and version."""
    counts: dict[tuple[str, int], tuple[int, int]] = {
        (row["saga_name"], row["version"]): (row["runs"], row["unfinished"])
        for row in (runs if runs is not None else SagaRun.objects.all())
        .order_by()
        .values("saga_name", "version")
        .annotate(runs=Count("pk"), unfinished=Count("pk", filter=~Q(status__in=TERMINAL_RUN_STATES)))
    }
    declared = {(saga.name, saga.version) for saga in all_sagas()}
    latest: dict[str, int] = {}
    for name, version in declared:
        latest[name] = max(version, latest.get(name, version))
    found = []
    for name, version in sorted(declared | set(counts)):
        total, unfinished = counts.get((name, version), (0, 0))
        is_declared, is_latest = (name, version) in declared, latest.get(name) == version
        found.append(SagaVersion(name, version, is_declared, is_latest, total, unfinished))
    return found


def waiting_on_circuit(steps: QuerySet[SagaStepRun] | None = None) -> QuerySet[SagaStepRun]:
    """Steps of active runs whose action or compensation waits for its service's open circuit breaker: a
    forward step at most its circuit_wait, a compensation until the breaker lets it through."""
    return (steps if steps is not None else SagaStepRun.objects.all()).filter(
        circuit_waiting_since__isnull=False, run__status__in=ACTIVE_RUN_STATES
    )


def circuit_call(status: str) -> str:
    """What of a step in ``status`` waits on its circuit: its "compensation", else its "action"."""
    return "compensation" if status == StepStatus.COMPENSATING else "action"


def run_duration(run: SagaRun, now: datetime | None = None) -> timedelta:
    """From start to the end (or until now, for a run still going)."""
    return (run.finished_at or now or timezone.now()) - run.created_at


def step_duration(step: SagaStepRun) -> timedelta | None:
    """From the step's first attempt to its outcome; None if it never started."""
    if step.started_at is None:
        return None
    return (step.finished_at or timezone.now()) - step.started_at


def current_step(steps: Iterable[SagaStepRun]) -> SagaStepRun | None:
    """The step a person should look at: the one whose compensation failed, failed, or is under way."""
    ordered = sorted(steps, key=lambda s: s.index)
    for status in ATTENTION_STEP_STATES:
        for step in ordered:
            if step.status == status:
                return step
    return None


def humanize_seconds(seconds: float) -> str:
    """12s, 4m 05s, 3h 20m, 2d 5h: a duration a person reads at a glance."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def trace_context(run_id: uuid.UUID | str) -> dict[str, str]:
    """The trace context a run stored at its start (its SagaStarted event's, with tracing on), else nothing: one
    read of the run's first event, by the unique (run, seq) index."""
    first = SagaEvent.objects.filter(run_id=run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(run_id), seq=1)
    stored = first.values_list(f"data__{STORED_KEY}", flat=True).first()  # that key alone, not the payload
    return {str(key): str(value) for key, value in stored.items()} if isinstance(stored, dict) else {}
