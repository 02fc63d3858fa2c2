"""Runs one attempt of a step or compensation: claim it, call the user's function behind the service's
circuit breaker, record the result."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sagas import breakers, engine, services
from sagas.apps import FAULTS_VARIABLE
from sagas.conf import sagas_settings
from sagas.definitions import StepContext, StepFunction
from sagas.exceptions import AttemptsExhausted, CircuitOpen
from sagas.jsonsafe import json_copy
from sagas.retry import RetryPolicy, describe_failure
from sagas.services import AttemptOutcome, ClaimOutcome

# Only a worker that sagas.testing started applies the failures a test planned; no other process loads the
# testing package, and the check is read once per process.
INJECT_PLANNED_FAULTS = os.environ.get(FAULTS_VARIABLE) == "1"


class Outcome(StrEnum):
    CONTINUE = "continue"  # let the chain go on
    STOP = "stop"  # end the chain here, quietly
    RETRY = "retry"  # publish this attempt again after `delay`
    FAILED = "failed"  # raise `exc`, so the chain's errback starts compensation


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    delay: float = 0.0
    exc: BaseException | None = None
    retry_task_id: str = ""  # with RETRY: the task id of the next attempt


def execute_step(*, run_id: str, step: str, task_id: str) -> Result:
    """One attempt of a forward step."""
    claim = services.step_claim(run_id=run_id, step=step, task_id=task_id)
    if claim.outcome is ClaimOutcome.DONE:
        return Result(Outcome.CONTINUE)
    if claim.outcome is ClaimOutcome.STOP:
        return Result(Outcome.STOP)
    if claim.outcome is ClaimOutcome.GAVE_UP:
        return Result(Outcome.FAILED, exc=AttemptsExhausted(claim.error["message"] if claim.error else step))
    assert claim.saga is not None
    assert claim.context is not None
    declared = claim.saga.step(step)
    policy = declared.retry or sagas_settings.default_retry
    started = time.monotonic()
    try:
        if INJECT_PLANNED_FAULTS:
            from sagas.testing import faults

            faults.inject(claim.context)
        raw = call_guarded(declared.action, claim.context, declared.service)
        seconds = time.monotonic() - started
        output = json_copy(raw, what=f"output of step {step!r}")
    except Exception as exc:  # anything the action raised is a failed attempt, classified by the policy
        error = describe_failure(exc, attempt=claim.context.attempt)
        delay = _retry_delay(policy, exc, claim.context.attempt)
        answer = services.step_fail_attempt(run_id=run_id, step=step, error=error, retry_in=delay)
        if answer is AttemptOutcome.RETRY:
            next_id = engine.step_task_id(run_id, step, claim.context.attempt + 1)
            return Result(Outcome.RETRY, delay=delay or 0.0, exc=exc, retry_task_id=next_id)
        return Result(Outcome.FAILED if answer is AttemptOutcome.FAILED else Outcome.STOP, exc=exc)
    recorded = services.step_succeed(
        run_id=run_id,
        step=step,
        output=output,
        seconds=seconds,
        cause=claim.started_event_id,
        step_id=claim.step_id,
        attempt=claim.context.attempt,
    )
    if recorded:
        return Result(Outcome.CONTINUE)
    return Result(Outcome.STOP)


def execute_compensation(*, run_id: str, step: str, task_id: str) -> Result:
    """One attempt of a compensation. A compensation that gives up does not stop the others: the run's
    tables schedule what comes next, and the run ends ``failed`` once every other compensation has run."""
    claim = services.compensation_claim(run_id=run_id, step=step, task_id=task_id)
    if claim.outcome is not ClaimOutcome.RUN:
        return Result(Outcome.STOP)
    assert claim.saga is not None
    assert claim.context is not None
    declared = claim.saga.step(step)
    assert declared.compensation is not None
    policy = declared.compensation_retry or sagas_settings.default_compensation_retry
    try:
        call_guarded(declared.compensation, claim.context, declared.service)
    except Exception as exc:
        error = describe_failure(exc, attempt=claim.context.attempt)
        delay = _retry_delay(policy, exc, claim.context.attempt)
        next_id = services.compensation_fail_attempt(run_id=run_id, step=step, error=error, retry_in=delay)
        if next_id:
            return Result(Outcome.RETRY, delay=delay or 0.0, exc=exc, retry_task_id=next_id)
        return Result(Outcome.STOP)
    services.compensation_succeed(run_id=run_id, step=step)
    return Result(Outcome.STOP)


def _retry_delay(policy: RetryPolicy, exc: Exception, attempt: int) -> float | None:
    """The delay before the next attempt, or None when the policy gives up."""
    return policy.delay(attempt, exc) if policy.should_retry(exc, attempt) else None


def call_guarded(function: StepFunction, ctx: StepContext, service: str | None) -> Any:
    """Call a step's function; when it names a service, only if that service's breaker lets it through,
    and report the outcome to the breaker."""
    breaker = breakers.for_service(service) if service else None
    if breaker is None:
        return function(ctx)
    assert service is not None
    report = _reporter(ctx, service)
    permit = breaker.acquire()
    report(permit.change)
    if not permit.allowed:
        raise CircuitOpen(service, retry_after=permit.wait)
    try:
        result = function(ctx)
    except Exception as exc:
        report(breaker.record(permit, breakers.outcome_of(exc)))
        raise
    report(breaker.record(permit, "success"))
    return result


def _reporter(ctx: StepContext, service: str) -> Callable[[tuple[str, str] | None], None]:
    def report(change: tuple[str, str] | None) -> None:
        if change is not None:
            before, after = change
            services.record_breaker_change(
                run_id=ctx.saga_id, step=ctx.step, service=service, before=before, after=after
            )

    return report
