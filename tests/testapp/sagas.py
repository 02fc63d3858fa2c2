"""Sagas with controllable failures, run by the real worker in integration tests."""

from __future__ import annotations

from django.db.models import F

import sagas
from tests.testapp.models import Effect


def _call(kind: str, ctx: sagas.StepContext) -> int:
    """Record one call under the context's key and return how many calls that key has had."""
    effect, _ = Effect.objects.get_or_create(key=ctx.idempotency_key, defaults={"kind": kind})
    Effect.objects.filter(pk=effect.pk).update(calls=F("calls") + 1)
    effect.refresh_from_db()
    return effect.calls


def record(ctx: sagas.StepContext) -> dict:
    _call("record", ctx)
    return {"recorded": ctx.step}


def undo(ctx: sagas.StepContext) -> None:
    _call("undo", ctx)


def flaky(ctx: sagas.StepContext) -> dict:
    calls = _call("flaky", ctx)
    if calls <= int(ctx.payload.get("fail_times", 0)):
        raise sagas.TransientError(f"flaky failure {calls}")
    return {"flaky_calls": calls}


def unserialisable(ctx: sagas.StepContext) -> object:
    _call("unserialisable", ctx)
    return {"when": object()}


def value_error(ctx: sagas.StepContext) -> None:
    _call("value_error", ctx)
    raise ValueError("a bug, not a transient condition")


class Flaky(sagas.Saga):
    name = "tests.flaky"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(
            flaky,
            undo,
            retry=sagas.RetryPolicy(max_attempts=4, backoff=0.2, multiplier=2.0, backoff_max=5.0, jitter=False),
        ),
    ]


class BadOutput(sagas.Saga):
    name = "tests.bad_output"
    steps = [sagas.Step(record, undo, name="first"), sagas.Step(unserialisable)]


class NotRetried(sagas.Saga):
    name = "tests.not_retried"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(value_error, retry=sagas.RetryPolicy(max_attempts=5, retry_on=(sagas.TransientError,))),
    ]
