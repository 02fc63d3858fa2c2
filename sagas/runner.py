"""Runs one attempt of a step or compensation: claim it, call the user's function, record the result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sagas import services
from sagas.conf import sagas_settings
from sagas.exceptions import AttemptsExhausted, InvalidPayload
from sagas.jsonsafe import json_copy
from sagas.retry import RetryPolicy, describe_failure
from sagas.services import ClaimOutcome


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
    attempt = claim.context.attempt
    try:
        output = json_copy(declared.action(claim.context), what=f"output of step {step!r}")
    except InvalidPayload as exc:
        # The action did its work but returned something we cannot store: a bug, not worth retrying.
        services.step_fail_attempt(
            run_id=run_id, step=step, error=describe_failure(exc, attempt=attempt), retry_in=None
        )
        return Result(Outcome.FAILED, exc=exc)
    except Exception as exc:  # anything the action raised is a failed attempt, classified by the policy
        retry = _record_failure(services.step_fail_attempt, policy, run_id, step, exc, attempt)
        return retry or Result(Outcome.FAILED, exc=exc)
    if services.step_succeed(run_id=run_id, step=step, output=output):
        return Result(Outcome.CONTINUE)
    return Result(Outcome.STOP)


def execute_compensation(*, run_id: str, step: str, task_id: str) -> Result:
    """One attempt of a compensation. A compensation that gives up does not stop the others: the
    chain goes on and the run ends ``failed`` once every other compensation has run."""
    claim = services.compensation_claim(run_id=run_id, step=step, task_id=task_id)
    if claim.outcome in (ClaimOutcome.DONE, ClaimOutcome.GAVE_UP):
        return Result(Outcome.CONTINUE)
    if claim.outcome is ClaimOutcome.STOP:
        return Result(Outcome.STOP)
    assert claim.saga is not None
    assert claim.context is not None
    declared = claim.saga.step(step)
    assert declared.compensation is not None
    policy = declared.compensation_retry or sagas_settings.default_compensation_retry
    attempt = claim.context.attempt
    try:
        declared.compensation(claim.context)
    except Exception as exc:
        retry = _record_failure(services.compensation_fail_attempt, policy, run_id, step, exc, attempt)
        return retry or Result(Outcome.CONTINUE)
    services.compensation_succeed(run_id=run_id, step=step)
    return Result(Outcome.CONTINUE)


def _record_failure(
    record: Callable[..., None], policy: RetryPolicy, run_id: str, step: str, exc: Exception, attempt: int
) -> Result | None:
    """Record a failed attempt; the retry to schedule, or None when the policy gives up."""
    error = describe_failure(exc, attempt=attempt)
    if policy.should_retry(exc, attempt):
        delay = policy.delay(attempt, exc)
        record(run_id=run_id, step=step, error=error, retry_in=delay)
        return Result(Outcome.RETRY, delay=delay, exc=exc)
    record(run_id=run_id, step=step, error=error, retry_in=None)
    return None
