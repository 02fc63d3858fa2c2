"""Run and step statuses, the transitions allowed between them (docs/internals.md#the-state-machine), event types."""

from __future__ import annotations

from datetime import datetime

from django.db import models


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    EXECUTING = "executing", "Executing"
    COMPLETED = "completed", "Completed"
    COMPENSATING = "compensating", "Compensating"
    COMPENSATED = "compensated", "Compensated"
    TIMEOUT = "timeout", "Timed out"
    FAILED = "failed", "Failed (awaiting a person)"
    CANCELLED = "cancelled", "Cancelled"


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting (for a signal or a child run)"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    COMPENSATING = "compensating", "Compensating"
    COMPENSATED = "compensated", "Compensated"
    COMPENSATION_FAILED = "compensation_failed", "Compensation failed"
    RESOLVED = "resolved", "Resolved by a person"


RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.PENDING: frozenset({RunStatus.EXECUTING, RunStatus.CANCELLED}),
    # executing -> failed: a step after the pivot gave up; the run goes forward only, once a person acts.
    RunStatus.EXECUTING: frozenset({RunStatus.COMPLETED, RunStatus.COMPENSATING, RunStatus.TIMEOUT, RunStatus.FAILED}),
    RunStatus.TIMEOUT: frozenset({RunStatus.COMPENSATING, RunStatus.FAILED}),
    RunStatus.COMPENSATING: frozenset({RunStatus.COMPENSATED, RunStatus.FAILED}),
    # failed -> executing: a person retried or resolved the failed step after the pivot (forward recovery).
    RunStatus.FAILED: frozenset({RunStatus.COMPENSATING, RunStatus.COMPENSATED, RunStatus.EXECUTING}),
    # completed -> compensating: only a child run, which its parent undoes when the parent compensates.
    RunStatus.COMPLETED: frozenset({RunStatus.COMPENSATING}),
    RunStatus.COMPENSATED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}

STEP_TRANSITIONS: dict[str, frozenset[str]] = {
    # pending -> failed: a step whose circuit stayed open past its circuit_wait fails without ever starting.
    # pending -> waiting: a Wait or SubSaga step's claim.
    StepStatus.PENDING: frozenset({StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.FAILED, StepStatus.WAITING}),
    # waiting -> succeeded: the signal came, or the child completed; -> failed: the timeout passed, or the child
    # did not complete; -> skipped: the run stopped before the signal; -> compensating: the run stopped while its
    # child ran, which is undone.
    StepStatus.WAITING: frozenset(
        {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.COMPENSATING}
    ),
    # running -> running: a redelivered message (the worker died mid-step) claims the step again.
    # running -> waiting: a Wait a person retried after it failed past the pivot waits again.
    StepStatus.RUNNING: frozenset({StepStatus.RUNNING, StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.WAITING}),
    StepStatus.SUCCEEDED: frozenset({StepStatus.COMPENSATING}),
    # compensating -> compensating: a compensation retried, or redelivered after a crash.
    StepStatus.COMPENSATING: frozenset(
        {StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
    ),
    StepStatus.COMPENSATION_FAILED: frozenset({StepStatus.COMPENSATING, StepStatus.RESOLVED}),
    # After the pivot a failed step is not undone but taken up again by a person: retried with a fresh budget
    # (failed -> running) or resolved by hand with the output it should have given (failed -> succeeded).
    StepStatus.FAILED: frozenset({StepStatus.RUNNING, StepStatus.SUCCEEDED}),
    StepStatus.SKIPPED: frozenset(),
    StepStatus.COMPENSATED: frozenset(),
    StepStatus.RESOLVED: frozenset(),
}

# Final but for a completed child run, which its parent's compensation may undo (completed -> compensating).
TERMINAL_RUN_STATES = frozenset({RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.CANCELLED})
# Runs that a person has to look at: nothing moves them on by itself.
AWAITING_PERSON_STATES = frozenset({RunStatus.FAILED})
# Runs that something should still be moving: the reaper looks at these when they stop moving.
ACTIVE_RUN_STATES = frozenset({RunStatus.PENDING, RunStatus.EXECUTING, RunStatus.TIMEOUT, RunStatus.COMPENSATING})
# Runs at rest: finished, or waiting for a person. Nothing moves them on by itself.
FINISHED_RUN_STATES = TERMINAL_RUN_STATES | AWAITING_PERSON_STATES
# Steps whose forward action completed: their outputs feed later steps and receivers, compensations undo them.
DONE_STEP_STATES = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.COMPENSATING,
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATION_FAILED,
        StepStatus.RESOLVED,
    }
)


def stamp_run(source: str, target: str, now: datetime) -> dict[str, datetime | None]:
    """The timestamps a run transition sets: when execution began, when the run last came to rest."""
    if target == RunStatus.EXECUTING and source == RunStatus.PENDING:
        return {"started_at": now}
    if target in FINISHED_RUN_STATES:
        return {"finished_at": now}
    if source == RunStatus.FAILED:  # a person sent it back to compensating or on forward: no longer finished
        return {"finished_at": None}
    return {}


def stamp_step(target: str, started_at: datetime | None, now: datetime) -> dict[str, datetime | None]:
    """The timestamps a step transition sets: its first attempt, its outcome, its undoing."""
    if target == StepStatus.RUNNING:  # finished_at: a failed step a person retries is no longer finished
        return {"started_at": started_at or now, "finished_at": None}
    if target == StepStatus.WAITING:
        return {"started_at": started_at or now}
    if target in (StepStatus.SUCCEEDED, StepStatus.FAILED):
        return {"finished_at": now}
    if target in (StepStatus.COMPENSATED, StepStatus.RESOLVED):
        return {"compensated_at": now}
    return {}


def run_sources(target: str) -> frozenset[str]:
    """The run statuses from which ``target`` may be reached."""
    return frozenset(source for source, targets in RUN_TRANSITIONS.items() if target in targets)


def step_sources(target: str) -> frozenset[str]:
    """The step statuses from which ``target`` may be reached."""
    return frozenset(source for source, targets in STEP_TRANSITIONS.items() if target in targets)


class EventType(models.TextChoices):
    """What a SagaEvent records; each run or step transition appends exactly one."""

    SAGA_STARTED = "SagaStarted"
    SAGA_EXECUTING = "SagaExecuting"
    SAGA_COMPLETED = "SagaCompleted"
    SAGA_COMPENSATING = "SagaCompensating"
    SAGA_COMPENSATED = "SagaCompensated"
    SAGA_FAILED = "SagaFailed"
    SAGA_CANCELLED = "SagaCancelled"
    SAGA_RETRIED = "SagaRetried"
    SAGA_RESUMED = "SagaResumed"  # a failed run goes forward again: its failed step was resolved by hand
    SAGA_TIMED_OUT = "SagaTimedOut"
    SAGA_REDRIVEN = "SagaRedriven"
    SAGA_PARKED = "SagaParked"
    STEP_STARTED = "StepStarted"
    STEP_SUCCEEDED = "StepSucceeded"
    STEP_ATTEMPT_FAILED = "StepAttemptFailed"
    STEP_FAILED = "StepFailed"
    STEP_SKIPPED = "StepSkipped"
    STEP_WAITING = "StepWaiting"  # a Wait or SubSaga step began to wait (for a signal, or the child it started)
    SIGNAL_RECEIVED = "SignalReceived"  # the signal a Wait step waited for: its data is the step's output
    STEP_RETRIED = "StepRetried"  # a person retried a failed step after the pivot, with a fresh budget
    STEP_RESOLVED = "StepResolved"  # a person recorded a failed step after the pivot as done, with its output
    COMPENSATION_SCHEDULED = "CompensationScheduled"
    COMPENSATION_STARTED = "CompensationStarted"
    COMPENSATION_SUCCEEDED = "CompensationSucceeded"
    COMPENSATION_ATTEMPT_FAILED = "CompensationAttemptFailed"
    COMPENSATION_FAILED = "CompensationFailed"
    COMPENSATION_RESOLVED = "CompensationResolved"
    BREAKER_OPENED = "BreakerOpened"
    BREAKER_HALF_OPENED = "BreakerHalfOpened"
    BREAKER_CLOSED = "BreakerClosed"
    CIRCUIT_REFUSED = "CircuitRefused"  # a call the service's open breaker refused: not an attempt


# The ``kind`` of a step's failures entry for a call its open breaker refused, beside "action" and "compensation".
CIRCUIT_REFUSAL = "circuit_open"

# Events that report a service's breaker moving: their "from"/"to" are the breaker's states, not the step's.
BREAKER_EVENTS = frozenset({EventType.BREAKER_OPENED, EventType.BREAKER_HALF_OPENED, EventType.BREAKER_CLOSED})
