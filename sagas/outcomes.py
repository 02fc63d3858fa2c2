"""Outcome: what happens next to the message that carried a step or compensation, from claim to Celery task."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """One vocabulary for the services' answers (a claim, a failed attempt), the runner's result and the task's
    reaction to it."""

    RUN = "run"  # a claim granted an attempt: call the user's function
    CONTINUE = "continue"  # done, now or by an earlier delivery: let the chain go on
    STOP = "stop"  # nothing more for this message (the run moved on, or stopped): end the chain here, quietly
    # No attempt was used (the service's breaker refused the call, or another delivery holds the step's lease):
    # publish this same attempt again after the delay.
    WAIT = "wait"
    RETRY = "retry"  # the attempt failed and is tried again: publish the next attempt after the delay
    FAILED = "failed"  # the step failed for good: raise, so the chain's errback starts compensation
