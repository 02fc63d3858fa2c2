"""What a claim hands the runner: the outcome, and the context a step's function receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeLimitExceeded
from django.utils import timezone

from sagas.conf import sagas_settings
from sagas.definitions import StepContext
from sagas.exceptions import UnrecordedFailure
from sagas.failures import Failure
from sagas.leases import Holder
from sagas.models import SagaRun, SagaStepRun
from sagas.outcomes import Outcome
from sagas.services._core import last_event
from sagas.services.circuit import OPEN_GATE, Gate
from sagas.states import DONE_STEP_STATES, EventType, StepStatus
from sagas.workers import WorkerId

if TYPE_CHECKING:
    from sagas.definitions import Saga


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt a claim handed out, as its outcome needs it: the run as read, the step's status and recorded
    attempts then (the outcome's write is guarded by both), the attempt's number, task, start and lease."""

    run: SagaRun
    step_status: str
    recorded: int
    number: int
    task_id: str
    started_at: datetime
    first_started_at: datetime | None  # the step's first attempt, if one started before this one
    lease: str
    dependencies: frozenset[str]
    last: bool  # the last step of a sequence: its success completes the run
    worker: WorkerId  # the process the attempt runs in
    budget_base: int = 0  # attempts before a person's retry gave the step a fresh budget (budget_base)

    @property
    def of_budget(self) -> int:
        """This attempt's place in the step's current budget, 1-based: what its retry policy counts."""
        return self.number - self.budget_base


@dataclass(frozen=True, slots=True)
class CompensationAttempt:
    """A compensation attempt a claim handed out: its number in the compensation's round, the attempts before
    its budget (those of a first budget whose last attempt vanished), and the lease it holds while it runs."""

    number: int
    budget_base: int
    lease: str

    @property
    def of_budget(self) -> int:
        """This attempt's place in its budget, 1-based: what the compensation's retry policy counts."""
        return self.number - self.budget_base


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim's answer: RUN (with the context and the attempt), CONTINUE (done by an earlier delivery), STOP,
    WAIT (with the delay; no attempt used) or FAILED (the budget was spent by attempts that never reported back,
    or the circuit wait ran out: with the failure)."""

    outcome: Outcome
    saga: type[Saga] | None = None
    context: StepContext | None = None
    error: Failure | None = None
    step_id: int | None = None  # the claimed step row: its outcome is recorded by a write guarded on it
    attempt: Attempt | None = None  # with RUN: what the attempt's outcome records
    compensation: CompensationAttempt | None = None  # with RUN of a compensation: its attempt
    holder: Holder | None = None  # with WAIT on a lease: who holds it
    awaited: str = ""  # with WAIT for an attempt whose lease Redis lost: which one
    gate: Gate = OPEN_GATE  # the breaker's permit for this attempt's call, reported back after it
    delay: float = 0.0  # with WAIT: seconds until the breaker is asked again
    retry_task_id: str = ""  # with RUN: the task id of the next attempt, should this one be retried
    not_before: datetime | None = None  # with WAIT for a delayed start: when the run may start


def step_context(
    run: SagaRun, step_run: SagaStepRun, *, compensation: bool, steps: list[SagaStepRun] | None = None
) -> StepContext:
    """The context of one attempt: payload merged with the outputs of completed steps, and the key.
    ``steps``: the run's step rows when the caller has them already (saves a query)."""
    if steps is None:
        results = dict(run.steps.filter(status__in=DONE_STEP_STATES).order_by("index").values_list("name", "output"))
    else:
        results = {s.name: s.output for s in sorted(steps, key=lambda s: s.index) if s.status in DONE_STEP_STATES}
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


def lost_attempts_error(step_run: SagaStepRun, attempts: int, what: str) -> Failure:
    """The failure of a step whose attempts all vanished (worker killed or message lost each time)."""
    return Failure.without_exception(
        "sagas.WorkerLost",
        f"The {what} of step {step_run.name!r} was started {attempts} times and never reported back (worker "
        "killed or message lost each time); giving up instead of trying again.",
        code="attempts_lost",
        attempt=attempts,
    )


def unrecorded_failure(
    run: SagaRun,
    step_run: SagaStepRun,
    timeout: float | None,
    started_event: str,
    started_at: datetime | None = None,
) -> Exception:
    """The failure of a task that ended before the runner could record why: killed at its hard time
    limit when it ran that long, else a failure of the framework's own bookkeeping. ``started_at``: when the
    attempt started, when known (else its start event's time)."""
    what = "step" if started_event == EventType.STEP_STARTED else "compensation of step"
    if started_at is None:
        started = last_event(run, started_event, step_run.name)
        started_at = started.created_at if started else None
    elapsed = (timezone.now() - started_at).total_seconds() if started_at else 0.0
    if timeout is not None and elapsed >= timeout:
        killed: Exception = TimeLimitExceeded(
            f"The {what} {step_run.name!r} ran past its hard time limit "
            f"({timeout + sagas_settings.TIME_LIMIT_GRACE}s) and the worker killed it."
        )
        return killed
    return UnrecordedFailure(
        f"The task of the {what} {step_run.name!r} failed before its outcome was recorded; see the worker log."
    )


# The code of the failure recorded for an attempt that started and never reported back while its run compensated:
# its effect may have happened, so the step runs again (sagas.services.doubt) until its outcome is known.
IN_DOUBT = "attempt_in_doubt"


def budget_base(step_run: SagaStepRun) -> int:
    """The attempts that count no more against a step's retry policy: those before its last failure for good,
    which only a person's retry after the pivot (sagas.retry) can follow, or before the first attempt found in
    doubt since then (the attempts that settle it get a budget of their own). 0 for a step that never failed."""
    return min(_doubts(step_run), default=_gave_up_at(step_run))


def in_doubt(step_run: SagaStepRun) -> bool:
    """Whether a running step is being settled: an attempt of it started and never reported back after its run
    stopped executing, so it is run again (same idempotency key) until its outcome is known."""
    return step_run.status == StepStatus.RUNNING and bool(_doubts(step_run))


def _gave_up_at(step_run: SagaStepRun) -> int:
    """The attempt of the step's last failure for good (0 if none)."""
    return max(
        (f.get("attempt") or 0 for f in step_run.failures if f.get("kind") == "action" and f.get("retry_in") is None),
        default=0,
    )


def _doubts(step_run: SagaStepRun) -> list[int]:
    """The attempts found in doubt since the step last failed for good."""
    base = _gave_up_at(step_run)
    return [
        f.get("attempt") or 0
        for f in step_run.failures
        if f.get("kind") == "action" and f.get("code") == IN_DOUBT and (f.get("attempt") or 0) > base
    ]


def compensation_failures(step_run: SagaStepRun) -> list[dict[str, Any]]:
    """The failures of the step's compensation in its current round: since it last gave up (a person's retry
    then starts a new round, its attempts counted from 1 again)."""
    entries = [f for f in step_run.failures if f.get("kind") == "compensation"]
    gave_up = [index for index, f in enumerate(entries) if f.get("retry_in") is None]
    return entries[gave_up[-1] + 1 :] if gave_up else entries


def compensation_budget_base(step_run: SagaStepRun) -> int:
    """The attempts of the compensation's round that count no more against its retry policy: those up to its
    last attempt found in doubt (the first budget's last attempt vanished, so a second budget began)."""
    return max((f.get("attempt") or 0 for f in compensation_failures(step_run) if f.get("code") == IN_DOUBT), default=0)


def failure_recorded(step_run: SagaStepRun, kind: str, attempt: int) -> bool:
    """Whether this attempt's failure is on record already: an errback may fire more than once (a task
    killed at its hard limit reports once for the timeout and again for the lost process)."""
    return any(f.get("kind") == kind and f.get("attempt") == attempt for f in step_run.failures)
