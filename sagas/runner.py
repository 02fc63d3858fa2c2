"""Runs one attempt of a step or compensation: claim it, call the user's function behind the service's
circuit breaker, record the result."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from sagas import breakers, engine, leases, masking, services, timelimits, tracing
from sagas.conf import sagas_settings
from sagas.definitions import Saga, StepContext, StepFunction
from sagas.exceptions import AttemptsExhausted, CircuitOpen, StartDelayed, StepInFlight
from sagas.failures import Failure
from sagas.jsonsafe import json_copy
from sagas.outcomes import Outcome
from sagas.retry import RetryPolicy
from sagas.services.context import Attempt, Claim

# Called with the attempt's context before a step's action; raising fails the attempt without calling the service.
# Empty in production: the test toolkit installs its planned failures here, in the workers it starts.
_attempt_hooks: list[Callable[[StepContext], None]] = []


def install_attempt_hook(hook: Callable[[StepContext], None]) -> None:
    """Run ``hook`` before every step's action in this process (once, however often it is installed)."""
    if hook not in _attempt_hooks:
        _attempt_hooks.append(hook)


# Seconds before a step whose lease Redis could not grant is tried again (no attempt was counted).
LEASE_UNAVAILABLE_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class Result:
    """What the task does with the message: CONTINUE, STOP, or with the delay and ``exc`` (what Celery records),
    WAIT or RETRY (publish ``retry_task_id``), or FAILED (raise ``exc``). A compensation that gave up is a STOP
    with its ``exc``, which only its span records."""

    outcome: Outcome
    delay: float = 0.0
    exc: BaseException | None = None
    retry_task_id: str = ""  # with WAIT: this attempt's task id again; with RETRY: the next attempt's
    saga: type[Saga] | None = None  # with CONTINUE after an attempt: the saga, to tell whether to go on eagerly
    held: leases.Handover | None = None  # with ``hand_over``: the succeeded step's lease, for the caller to give back


def execute_step(
    *,
    run_id: str,
    step: str,
    task_id: str,
    hard_limit: float | None = None,
    previous: leases.Handover | None = None,
    hand_over: bool = False,
) -> Result:
    """One attempt of a forward step. ``hard_limit``: the task's hard time limit, the longest its lease lasts.
    ``previous``: the lease of the step this process just finished, given back with this step's acquire.
    ``hand_over``: after a success the run goes on from, keep the lease and return it as ``Result.held``."""
    try:
        claim = services.step_claim(run_id=run_id, step=step, task_id=task_id, hard_limit=hard_limit, previous=previous)
    except redis.RedisError as exc:
        # Leases live in Redis: without it no attempt may start. The message comes back, as a refused call does.
        return Result(Outcome.WAIT, delay=LEASE_UNAVAILABLE_DELAY, exc=exc, retry_task_id=task_id)
    if claim.attempt is None:
        return _unclaimed(claim, run_id, task_id, step)
    assert claim.saga is not None
    assert claim.context is not None
    try:
        with tracing.attempt(tracing.STEP, claim.context, claim.saga.version) as span:
            result = _attempt_step(run_id, step, claim, claim.attempt, hand_over=hand_over)
            span.ended(result.outcome, result.exc)
        return result
    except Exception:
        # The outcome could not be recorded (the database went away): the attempt started, so its count stays,
        # but nobody runs it any more. The errback, a redelivery or the reaper takes it from there.
        with contextlib.suppress(redis.RedisError):
            leases.release(run_id, step, claim.attempt.lease, mode="keep")
        raise


def _unclaimed(claim: Claim, run_id: str, task_id: str, step: str) -> Result:
    """What a message that got no attempt does: skip, stop, wait (for a breaker or a lease), or fail."""
    if claim.outcome in (Outcome.CONTINUE, Outcome.STOP):
        return Result(claim.outcome)
    if claim.outcome is Outcome.WAIT:
        return _wait(claim, run_id, task_id, step)
    if claim.outcome is Outcome.FAILED:
        message = claim.error.message if claim.error else step
        return Result(Outcome.FAILED, exc=_refused(claim) if claim.gate.refused else AttemptsExhausted(message))
    raise AssertionError(f"a claim of {claim.outcome} without an attempt")


def _attempt_step(run_id: str, step: str, claim: Claim, attempt: Attempt, *, hand_over: bool = False) -> Result:
    """Call the step's action for the claimed attempt and record how it went; the lease is given back after
    (with ``hand_over`` and a success the run goes on from: by the caller)."""
    assert claim.saga is not None
    assert claim.context is not None
    declared = claim.saga.step(step)
    if declared.waits_for is not None:  # a Wait or SubSaga: it waits, holding no worker, instead of running
        services.wait_begin(run_id=run_id, step=step, claim=claim)
        return Result(Outcome.STOP)
    policy = declared.retry or sagas_settings.default_retry
    # An eager saga's message may carry several steps: each step's own limits are enforced here.
    limits = engine.step_limits(declared) if claim.saga.is_eager() else (None, None)
    started = time.monotonic()
    try:
        with timelimits.limits(*limits):
            for hook in _attempt_hooks:
                _without_calling(claim, hook)
            raw = call_admitted(declared.action, claim)
        seconds = time.monotonic() - started
        output = json_copy(raw, what=f"output of step {step!r}")
    except Exception as exc:  # anything the action raised is a failed attempt, classified by the policy
        secrets = _secrets(claim.context)
        error = Failure.from_exception(exc, attempt=claim.context.attempt, secrets=secrets)
        delay = _retry_delay(policy, exc, attempt.of_budget)
        answer = services.step_fail_attempt(run_id=run_id, step=step, error=error, retry_in=delay, claim=claim)
        shown = masking.scrubbed_exception(exc, secrets)  # what Celery stores and logs
        if answer is Outcome.RETRY:
            return Result(Outcome.RETRY, delay=delay or 0.0, exc=shown, retry_task_id=claim.retry_task_id)
        return Result(answer, exc=shown)  # FAILED or STOP
    recorded = services.step_succeed(
        run_id=run_id, step=step, output=output, seconds=seconds, claim=claim, keep_lease=hand_over
    )
    if recorded:
        held = leases.Handover(step, attempt.lease) if hand_over else None
        return Result(Outcome.CONTINUE, saga=claim.saga, held=held)
    return Result(Outcome.STOP)


def execute_compensation(*, run_id: str, step: str, task_id: str, hard_limit: float | None = None) -> Result:
    """One attempt of a compensation. A compensation that gives up does not stop the others: the run's
    tables schedule what comes next, and the run ends ``failed`` once every other compensation has run.
    ``hard_limit``: the task's hard time limit (seconds), for how long the attempt's lease lasts."""
    claim = services.compensation_claim(run_id=run_id, step=step, task_id=task_id, hard_limit=hard_limit)
    if claim.outcome is Outcome.WAIT:
        return _wait(claim, run_id, task_id, step)
    if claim.outcome is not Outcome.RUN:  # a compensation that gives up stops only its own message
        return Result(Outcome.STOP)
    assert claim.saga is not None
    assert claim.context is not None
    assert claim.compensation is not None
    try:
        with tracing.attempt(tracing.COMPENSATE, claim.context, claim.saga.version) as span:
            result = _attempt_compensation(run_id, step, claim)
            span.ended(result.outcome, result.exc)
    finally:
        # The attempt is over, its outcome recorded (or not: then the errback or the reaper acts), before its
        # retry is published: a copy of its message may now claim it, and finds what it recorded.
        with contextlib.suppress(redis.RedisError):  # a lease Redis could not take back lapses by itself
            leases.release(run_id, step, claim.compensation.lease, mode="done", compensation=True)
    return result


def _attempt_compensation(run_id: str, step: str, claim: Claim) -> Result:
    """Call the compensation for the claimed attempt and record how it went."""
    assert claim.saga is not None
    assert claim.context is not None
    declared = claim.saga.step(step)
    assert declared.compensation is not None
    assert claim.compensation is not None
    policy = declared.compensation_retry or sagas_settings.default_compensation_retry
    try:
        call_admitted(declared.compensation, claim)
    except Exception as exc:
        secrets = _secrets(claim.context)
        error = Failure.from_exception(exc, attempt=claim.context.attempt, secrets=secrets)
        delay = _retry_delay(policy, exc, claim.compensation.of_budget)
        answer = services.compensation_fail_attempt(run_id=run_id, step=step, error=error, retry_in=delay)
        shown = masking.scrubbed_exception(exc, secrets)
        if answer is Outcome.RETRY:
            return Result(Outcome.RETRY, delay=delay or 0.0, exc=shown, retry_task_id=claim.retry_task_id)
        return Result(Outcome.STOP, exc=shown)  # it gave up: the error only for the span, the task stops
    services.compensation_succeed(run_id=run_id, step=step)
    return Result(Outcome.STOP)


def _secrets(ctx: StepContext) -> list[str]:
    """The masked values the attempt could see: they are masked wherever its failure is stored."""
    return masking.secret_values(dict(ctx.payload), dict(ctx.results), ctx.result)


def _retry_delay(policy: RetryPolicy, exc: Exception, attempt: int) -> float | None:
    """The delay before the next attempt, or None when the policy gives up."""
    return policy.delay(attempt, exc) if policy.should_retry(exc, attempt) else None


def _refused(claim: Claim) -> CircuitOpen:
    assert claim.gate.service is not None
    assert claim.gate.permit is not None
    return CircuitOpen(claim.gate.service, retry_after=claim.gate.permit.wait)


def _wait(claim: Claim, run_id: str, task_id: str, step: str) -> Result:
    """No attempt was used: publish the same attempt again (same task id) after the claim's delay, with why as
    ``exc``: a delayed start whose time has not come, the breaker's refusal (the claim recorded it), or another
    delivery holding the step's lease."""
    why: Exception
    if claim.not_before is not None:
        why = StartDelayed(run_id, claim.not_before.isoformat(), retry_after=claim.delay)
    elif claim.gate.refused:
        why = _refused(claim)
    else:
        holder = claim.holder
        who = (
            f"{holder.host} pid {holder.pid} (task {holder.task_id})"
            if holder
            else claim.awaited or "a run being stopped"
        )
        why = StepInFlight(step, who, retry_after=claim.delay)
    return Result(Outcome.WAIT, delay=claim.delay, exc=why, retry_task_id=task_id)


def _without_calling(claim: Claim, before: Callable[[StepContext], None]) -> None:
    """Run ``before`` (an attempt hook) ahead of the call: if it raises, the service
    was never called, so the breaker's permit is handed back without a verdict."""
    assert claim.context is not None
    try:
        before(claim.context)
    except Exception:
        claim.gate.report(claim.context.saga_id, claim.context.step, "neutral")
        raise


def call_admitted(function: StepFunction, claim: Claim) -> Any:
    """Call a step's function with the permit its claim got from the service's breaker, and report the
    outcome to the breaker (a change of the breaker's state goes to the run's log)."""
    assert claim.context is not None
    ctx = claim.context
    try:
        result = function(ctx)
    except Exception as exc:
        claim.gate.report(ctx.saga_id, ctx.step, breakers.outcome_of(exc))
        raise
    claim.gate.report(ctx.saga_id, ctx.step, "success")
    return result
