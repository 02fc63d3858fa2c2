"""Failures run_saga plans for a run and the worker's runner injects into its steps: a business refusal, N
transient failures, or a timeout on every attempt. Used only in workers started by SagaWorker (sagas.runner)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

import redis
from celery.exceptions import SoftTimeLimitExceeded

from sagas import breakers
from sagas.conf import sagas_settings
from sagas.definitions import Saga, StepContext
from sagas.exceptions import StepFailed, TransientError

PLAN_SECONDS = 3600  # a plan outlives any test run that uses it
KINDS = re.compile(r"^(business|timeout|transient:(?P<times>[1-9][0-9]*))\Z")


class InjectedBusinessFailure(StepFailed):
    """The refusal run_saga planned with ``"business"``."""


class InjectedTransientFailure(TransientError):
    """One of the transient failures run_saga planned with ``"transient:N"``."""


def _key(run_id: uuid.UUID | str) -> str:
    return f"{sagas_settings.KEY_PREFIX}:testing:faults:{run_id}"


def _client() -> redis.Redis:
    url = breakers.redis_url()
    if url is None:
        raise RuntimeError("sagas.testing needs Redis to hand planned failures to the worker: set REDIS_URL.")
    return breakers.redis_client(url)


def validate(saga: type[Saga], fail: Mapping[str, str]) -> dict[str, str]:
    """``fail`` as a plan: step name -> "business" | "transient:N" | "timeout"; ValueError says what is wrong."""
    names = [step.name for step in saga.steps]
    plan = {}
    for step, kind in fail.items():
        if step not in names:
            raise ValueError(f"fail names {step!r}, which is not a step of {saga.name!r} ({', '.join(names)}).")
        if not isinstance(kind, str) or not KINDS.match(kind):
            raise ValueError(f"fail[{step!r}] must be 'business', 'transient:N' (N >= 1) or 'timeout', got {kind!r}.")
        plan[step] = kind
    return plan


def plan(run_id: uuid.UUID | str, failures: Mapping[str, str]) -> None:
    """Store the run's planned failures where the worker's runner looks (before the run is published)."""
    if failures:
        pipeline = _client().pipeline()
        for step, kind in failures.items():
            pipeline.hset(_key(run_id), step, kind)
        pipeline.expire(_key(run_id), PLAN_SECONDS)
        pipeline.execute()


def inject(ctx: StepContext) -> None:
    """In the worker, before a step's action: raise the failure planned for this step and attempt, if any."""
    stored = _client().hget(_key(ctx.saga_id), ctx.step)  # the client decodes replies: a str
    if not stored:
        return
    kind = str(stored)
    match = KINDS.match(kind)
    if kind == "business":
        raise InjectedBusinessFailure(f"sagas.testing: planned business failure of step {ctx.step!r}")
    if kind == "timeout":
        raise SoftTimeLimitExceeded(f"sagas.testing: planned timeout of step {ctx.step!r}")
    if match and match.group("times") and ctx.attempt <= int(match.group("times")):
        raise InjectedTransientFailure(
            f"sagas.testing: planned transient failure {ctx.attempt} of {match.group('times')} of step {ctx.step!r}"
        )
