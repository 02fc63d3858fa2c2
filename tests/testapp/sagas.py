"""Sagas with controllable failures, run by the real worker in integration tests."""

from __future__ import annotations

import os
import time

import pydantic
from celery.exceptions import SoftTimeLimitExceeded
from django.db.models import F
from django.utils import timezone

import sagas
from tests.testapp import bank
from tests.testapp.models import Call, Effect, Switch


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
            retry=sagas.RetryPolicy(max_attempts=4, backoff=0.2, multiplier=2.0, backoff_max=5.0, jitter=True),
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


# --- failure handling (issue: retry by failure type, timeouts, deadlines, breakers, cancellation, order) ---


def switch_on(name: str) -> bool:
    return Switch.objects.filter(name=name, on=True).exists()


def raise_unknown(ctx: sagas.StepContext) -> None:
    _call("unknown", ctx)
    raise KeyError("a bug: retried, since retry_on covers every exception by default")


def rate_limited_once(ctx: sagas.StepContext) -> dict:
    if _call("rate_limited", ctx) == 1:
        raise sagas.RateLimited("slow down", retry_after=1)
    return {}


def sleepy(ctx: sagas.StepContext) -> dict:
    """Sleeps `sleep` seconds, in small naps (so a soft time limit interrupts it promptly)."""
    _call("sleepy", ctx)
    deadline = time.monotonic() + float(ctx.payload.get("sleep", 0))
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {"slept": ctx.payload.get("sleep", 0)}


def stubborn(ctx: sagas.StepContext) -> None:
    """Ignores its soft time limit, so only the hard limit stops it (the worker kills the process)."""
    _call("stubborn", ctx)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue


def flaky_then_ok(ctx: sagas.StepContext) -> dict:
    if _call("flaky_then_ok", ctx) <= int(ctx.payload.get("fail_times", 0)):
        raise sagas.TransientError("not yet")
    return {}


def flaky_undo(ctx: sagas.StepContext) -> None:
    """Fails its first ``undo_fail_times`` calls (transient), then, with ``gate_at="undo"``, waits at the gate."""
    if _call("flaky_undo", ctx) <= int(ctx.payload.get("undo_fail_times", 0)):
        raise sagas.TransientError("undo not yet")
    _gate(ctx, "undo")


def refuse(ctx: sagas.StepContext) -> None:
    raise sagas.StepFailed("no", code="refused")


def wait_at_gate(ctx: sagas.StepContext) -> dict:
    """Waits until the test opens the gate named in the payload (at most 60 s)."""
    _call("gate", ctx)
    deadline = time.monotonic() + 60
    while not switch_on(ctx.payload["gate"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"gate": "passed"}


def slow_undo(ctx: sagas.StepContext) -> None:
    """A compensation that takes a while, so parallel ones visibly overlap."""
    _call("slow_undo", ctx)
    time.sleep(float(ctx.payload.get("undo_sleep", 0.5)))


def call_x(ctx: sagas.StepContext) -> dict:
    """A call to service X, which fails while the switch 'x-down' is on."""
    healthy = not switch_on("x-down")
    Call.objects.create(
        service="svc-x", key=ctx.idempotency_key, ok=healthy, started_at=timezone.now(), pid=os.getpid()
    )
    if not healthy:
        raise sagas.TransientError("svc-x is down")
    return {"x": "ok"}


def call_y(ctx: sagas.StepContext) -> dict:
    """A call to service Y, which always answers."""
    Call.objects.create(service="svc-y", key=ctx.idempotency_key, ok=True, started_at=timezone.now(), pid=os.getpid())
    return {"y": "booked"}


def undo_y(ctx: sagas.StepContext) -> None:
    """Undo of a call to service Y: broken (the service fails it) for runs started with ``broken_undo``."""
    broken = bool(ctx.payload.get("broken_undo"))
    Call.objects.create(
        service="svc-y", key=ctx.idempotency_key, ok=not broken, started_at=timezone.now(), pid=os.getpid()
    )
    if broken:
        raise sagas.TransientError("svc-y cannot undo this booking")


def refuse_after_gate(ctx: sagas.StepContext) -> None:
    """Refuses; with a ``gate`` in the payload, only once the test opens it."""
    deadline = time.monotonic() + 60
    while "gate" in ctx.payload and not switch_on(ctx.payload["gate"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    raise sagas.StepFailed("no", code="refused")


class SlowRetry(sagas.Saga):
    """One retry, three seconds later: long enough to see where its countdown waits."""

    name = "tests.slow_retry"
    steps = [sagas.Step(flaky_then_ok, retry=sagas.RetryPolicy(max_attempts=2, backoff=3.0, jitter=False))]


class RetriedLate(sagas.Saga):
    """`first`, then `second`, retried three seconds after a failure, then `third`: long enough for a test to stop
    the run while `second` waits for its retry."""

    name = "tests.retried_late"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(record, undo, name="second", retry=sagas.RetryPolicy(max_attempts=3, backoff=3.0, jitter=False)),
        sagas.Step(record, undo, name="third"),
    ]


class UndoesY(sagas.Saga):
    """Books at service Y, then is refused (when the payload's ``gate`` opens, if it names one): Y's booking is
    undone (or, with ``broken_undo``, fails to be)."""

    name = "tests.undoes_y"
    steps = [
        sagas.Step(
            call_y,
            undo_y,
            name="book_y",
            service="svc-y",
            compensation_retry=sagas.RetryPolicy(max_attempts=3, backoff=0.1, backoff_max=0.3),
        ),
        sagas.Step(refuse_after_gate, name="refuse"),
    ]


class WaitsForY(sagas.Saga):
    """A step that waits at most 2 s for service Y's circuit, after one that is undone when it gives up."""

    name = "tests.waits_for_y"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(call_y, undo_y, name="book_y", service="svc-y", circuit_wait=2),
    ]


class Secretive(sagas.Saga):
    """A saga whose payload carries secrets (keys in SAGAS["MASKED_KEYS"]); its receiver always fails."""

    name = "tests.secretive"
    steps = [sagas.Step(record, undo, name="charge")]


def leaky(ctx: sagas.StepContext) -> None:
    """A service whose error message repeats the card and token it was sent."""
    card, token = ctx.payload["card_number"], ctx.payload["auth_token"]
    raise sagas.TransientError(f"gateway refused card {card} (session {token})")


def leaky_undo(ctx: sagas.StepContext) -> None:
    """Fails once, quoting the token, then undoes."""
    if _call("leaky_undo", ctx) == 1:
        raise ValueError(f"undo refused for session {ctx.payload['auth_token']}")


class LeakySecrets(sagas.Saga):
    """Its second step fails with the payload's secrets in the error text; the first one's undo fails once too."""

    name = "tests.leaky_secrets"
    steps = [
        sagas.Step(record, leaky_undo, name="hold"),
        sagas.Step(leaky, name="charge", retry=sagas.RetryPolicy(max_attempts=2, backoff=0.05, jitter=False)),
    ]


class NoCircuitWait(sagas.Saga):
    """A step that does not wait for service Y's circuit at all."""

    name = "tests.no_circuit_wait"
    steps = [sagas.Step(call_y, undo_y, name="book_y", service="svc-y", circuit_wait=0)]


class UnknownErrors(sagas.Saga):
    name = "tests.unknown_errors"
    steps = [sagas.Step(record, undo, name="first"), sagas.Step(raise_unknown)]


class RateLimitedOnce(sagas.Saga):
    name = "tests.rate_limited"
    steps = [sagas.Step(rate_limited_once, retry=sagas.RetryPolicy(max_attempts=3, backoff=0.05, jitter=False))]


class SlowStep(sagas.Saga):
    name = "tests.slow_step"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(sleepy, undo, timeout=1, retry=sagas.RetryPolicy(max_attempts=2, backoff=0.1, jitter=False)),
    ]


class StubbornStep(sagas.Saga):
    name = "tests.stubborn_step"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(stubborn, undo, timeout=1, retry=sagas.RetryPolicy(max_attempts=1)),
    ]


class Deadline(sagas.Saga):
    name = "tests.deadline"
    timeout = 2
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(sleepy, undo, name="slow", timeout=20),
        sagas.Step(record, undo, name="third"),
    ]


class SeparateBudgets(sagas.Saga):
    name = "tests.separate_budgets"
    steps = [
        sagas.Step(
            flaky_then_ok,
            flaky_undo,
            retry=sagas.RetryPolicy(max_attempts=3, backoff=0.05, jitter=False),
            compensation_retry=sagas.RetryPolicy(max_attempts=5, backoff=0.05, jitter=False),
        ),
        sagas.Step(refuse),
    ]


class Gated(sagas.Saga):
    name = "tests.gated"
    steps = [
        sagas.Step(record, undo, name="one"),
        sagas.Step(wait_at_gate, undo, name="two"),
        sagas.Step(record, undo, name="three"),
        sagas.Step(record, undo, name="four"),
    ]


class Prioritised(sagas.Saga):
    name = "tests.prioritised"
    steps = [
        sagas.Step(record, undo, name="a"),
        sagas.Step(record, undo, name="b", priority=5),
        sagas.Step(record, undo, name="c"),
        sagas.Step(record, undo, name="d"),
        sagas.Step(refuse),
    ]


class FanOut(sagas.Saga):
    """`left` and `right` both depend on `urgent` only: independent, they are undone in parallel."""

    name = "tests.fan_out"
    steps = [
        sagas.Step(record, slow_undo, name="first"),
        sagas.Step(record, slow_undo, name="urgent", depends_on=["first"], priority=10),
        sagas.Step(record, slow_undo, name="left", depends_on=["urgent"]),
        sagas.Step(record, slow_undo, name="right", depends_on=["urgent"]),
        sagas.Step(refuse, depends_on=["left", "right"]),
    ]


class CallsX(sagas.Saga):
    name = "tests.calls_x"
    steps = [
        sagas.Step(
            call_x,
            service="svc-x",
            retry=sagas.RetryPolicy(max_attempts=12, backoff=0.2, backoff_max=1.0),
        )
    ]


class CallsXOnce(sagas.Saga):
    name = "tests.calls_x_once"
    steps = [sagas.Step(call_x, service="svc-x", retry=sagas.RetryPolicy(max_attempts=1))]


class StubbornUndo(sagas.Saga):
    name = "tests.stubborn_undo"
    steps = [
        sagas.Step(record, stubborn, name="first", timeout=1, compensation_retry=sagas.RetryPolicy(max_attempts=2)),
        sagas.Step(refuse),
    ]


# --- crash safety: a transfer through the idempotent test bank, with gates and injected faults ---


def _gate(ctx: sagas.StepContext, where: str) -> None:
    """Wait at a gate the test opens (payload: gate_at=<step>, gate=<switch>); records the process first."""
    if ctx.payload.get("gate_at") != where:
        return
    Call.objects.create(service="gate", key=ctx.idempotency_key, ok=True, started_at=timezone.now(), pid=os.getpid())
    while not switch_on(ctx.payload["gate"]):
        time.sleep(0.05)


def debit(ctx: sagas.StepContext) -> dict:
    if ctx.payload.get("poison") == "debit":
        os.kill(os.getpid(), 9)  # a message that kills whichever worker takes it
    bank.post(account=ctx.payload["from"], amount=-ctx.payload["amount"], idempotency_key=ctx.idempotency_key)
    _gate(ctx, "debit")
    return {}


def undo_debit(ctx: sagas.StepContext) -> None:
    if ctx.payload.get("undo_fails") == "debit":
        raise sagas.TransientError("the bank will not take this back")
    bank.post(account=ctx.payload["from"], amount=ctx.payload["amount"], idempotency_key=ctx.idempotency_key)


def credit(ctx: sagas.StepContext) -> dict:
    _gate(ctx, "credit")
    if ctx.payload.get("fail_at") == "credit":
        raise sagas.StepFailed("the receiving bank refused", code="refused")
    bank.post(account=ctx.payload["to"], amount=ctx.payload["amount"], idempotency_key=ctx.idempotency_key)
    return {}


def undo_credit(ctx: sagas.StepContext) -> None:
    bank.post(account=ctx.payload["to"], amount=-ctx.payload["amount"], idempotency_key=ctx.idempotency_key)


def confirm(ctx: sagas.StepContext) -> dict:
    _call("confirm", ctx)
    _gate(ctx, "confirm")
    if ctx.payload.get("fail_at") == "confirm":
        raise sagas.StepFailed("confirmation refused", code="refused")
    return {}


TRANSFER_RETRY = sagas.RetryPolicy(max_attempts=5, backoff=0.2, backoff_max=1.0)


class Transfer(sagas.Saga):
    """Moves `amount` from one test-bank account to another. Steps time out after 10 s, so an attempt
    that vanished is known lost 11 s (the hard limit) after it started."""

    name = "tests.transfer"
    steps = [
        sagas.Step(debit, undo_debit, timeout=10, retry=TRANSFER_RETRY, compensation_retry=TRANSFER_RETRY),
        sagas.Step(credit, undo_credit, timeout=10, retry=TRANSFER_RETRY, compensation_retry=TRANSFER_RETRY),
        sagas.Step(confirm, timeout=10, retry=TRANSFER_RETRY),
    ]


# --- parallel steps: a graph with a fan-out and a fan-in ---


def branch(ctx: sagas.StepContext) -> dict:
    """A parallel branch: takes `branch_sleep` seconds, then refuses if it is the payload's `fail_branch`."""
    _call("branch", ctx)
    deadline = time.monotonic() + float(ctx.payload.get("branch_sleep", 0))
    while time.monotonic() < deadline:
        time.sleep(0.02)
    if ctx.payload.get("fail_branch") == ctx.step:
        raise sagas.StepFailed(f"branch {ctx.step} refused", code="refused")
    return {ctx.step: "done"}


class Diamond(sagas.Saga):
    """`screen`, then `north`, `east` and `west` in parallel, then `join` once all three succeeded, then
    `last`. North compensates first (priority 2); east and west together."""

    name = "tests.diamond"
    steps = [
        sagas.Step(record, undo, name="screen"),
        sagas.Step(branch, undo, name="north", depends_on=["screen"], priority=2),
        sagas.Step(branch, undo, name="east", depends_on=["screen"], priority=1),
        sagas.Step(branch, undo, name="west", depends_on=["screen"], priority=1),
        sagas.Step(record, undo, name="join", depends_on=["north", "east", "west"]),
        sagas.Step(record, name="last", depends_on=["join"]),
    ]


class LongRetries(sagas.Saga):
    """A step that may fail hundreds of times without waiting: a run with a long event log."""

    name = "tests.long_retries"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(flaky, undo, retry=sagas.RetryPolicy(max_attempts=600, backoff=0, jitter=False)),
    ]


def where(ctx: sagas.StepContext) -> dict:
    """Records which pool process ran the step (the eager tests compare them)."""
    Call.objects.create(service="where", key=ctx.idempotency_key, ok=True, started_at=timezone.now(), pid=os.getpid())
    return {f"{ctx.step}_pid": os.getpid()}


class EagerThree(sagas.Saga):
    """Three steps the worker that ran the first one runs one after another, without publishing them."""

    name = "tests.eager_three"
    eager = True
    steps = [sagas.Step(where, undo, name="one"), sagas.Step(where, undo, name="two"), sagas.Step(where, name="three")]


class EagerFailures(sagas.Saga):
    """An eager saga whose second step fails `fail_times` times (retried) and whose third fails for good when
    the payload says `break`, or runs past its timeout when it says `sleep`."""

    name = "tests.eager_failures"
    eager = True
    steps = [
        sagas.Step(where, undo, name="one"),
        sagas.Step(flaky, undo, name="flaky", retry=sagas.RetryPolicy(max_attempts=3, backoff=0.05, jitter=False)),
        sagas.Step(sleepy, name="last", timeout=1, retry=sagas.RetryPolicy(max_attempts=1)),
    ]


def second_step_v1(ctx: sagas.StepContext) -> dict:
    _call("second_v1", ctx)
    return {"second_by": "version 1"}


def second_step_v2(ctx: sagas.StepContext) -> dict:
    _call("second_v2", ctx)
    return {"second_by": "version 2"}


class VersionedV1(sagas.Saga):
    """Version 1 of tests.versioned, kept beside version 2 while runs started under it remain."""

    name = "tests.versioned"
    version = 1
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(second_step_v1, undo, name="second"),
        sagas.Step(record, undo, name="only_in_v1"),
    ]


class Versioned(sagas.Saga):
    """Version 2: the second step does something else, and the third is gone."""

    name = "tests.versioned"
    version = 2
    steps = [sagas.Step(record, undo, name="first"), sagas.Step(second_step_v2, undo, name="second")]


class OrderLine(pydantic.BaseModel):
    sku: str
    quantity: int = pydantic.Field(gt=0)


class TypedOrder(pydantic.BaseModel):
    account_id: int
    lines: list[OrderLine] = pydantic.Field(min_length=1)


class PydanticTyped(sagas.Saga):
    """A saga whose payload is a pydantic model."""

    name = "tests.typed_pydantic"
    payload_schema = TypedOrder
    steps = [sagas.Step(record, undo, name="first")]


class JsonSchemaTyped(sagas.Saga):
    """A saga whose payload is described by a JSON Schema."""

    name = "tests.typed_jsonschema"
    payload_schema = {
        "type": "object",
        "required": ["account_id", "amount"],
        "properties": {
            "account_id": {"type": "integer"},
            "amount": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        },
        "additionalProperties": False,
    }
    steps = [sagas.Step(record, undo, name="first")]


# --- pivots and forward recovery ---


def ship_unless_down(ctx: sagas.StepContext) -> dict:
    """A step after the pivot: fails while the switch ``shipping_down`` is on."""
    _call("ship", ctx)
    if switch_on("shipping_down"):
        raise sagas.TransientError("the shipping service is down")
    return {"tracking": "T-1"}


def notify_with_tracking(ctx: sagas.StepContext) -> dict:
    _call("notify", ctx)
    return {"notified_with": ctx.payload.get("tracking")}


class Pivoted(sagas.Saga):
    """reserve (compensable), charge (the pivot), then ship and notify, which only go forward."""

    name = "tests.pivoted"
    timeout = 600  # lifted once the pivot succeeds
    steps = [
        sagas.Step(record, undo, name="reserve"),
        sagas.Step(record, name="charge", irreversible=True),
        sagas.Step(ship_unless_down, name="ship", retry=sagas.RetryPolicy(max_attempts=2, backoff=0.1, jitter=False)),
        sagas.Step(notify_with_tracking, name="notify"),
    ]


# --- durable waits and child sagas ---


class Approval(sagas.Saga):
    """reserve, then wait for a manager's approval (at most ``timeout`` seconds), then charge with its data."""

    name = "tests.approval"
    steps = [
        sagas.Step(record, undo, name="reserve"),
        sagas.Wait("approved", timeout=600),
        sagas.Step(notify_with_tracking, name="after"),
    ]


class QuickApproval(sagas.Saga):
    """Its Wait times out after two seconds."""

    name = "tests.quick_approval"
    steps = [
        sagas.Step(record, undo, name="reserve"),
        sagas.Wait("approved", timeout=2),
        sagas.Step(record, undo, name="after"),
    ]


def child_flaky(ctx: sagas.StepContext) -> dict:
    """A child's step: fails for good when the payload says so."""
    _call("child", ctx)
    if ctx.payload.get("child_fails"):
        raise sagas.StepFailed("the child cannot", code="child_refused")
    return {"child_said": ctx.payload.get("greeting", "hello")}


class Child(sagas.Saga):
    name = "tests.child_of_parent"
    steps = [
        sagas.Step(record, undo, name="child_first"),
        sagas.Step(child_flaky, undo, name="child_second"),
    ]


def fail_if_asked(ctx: sagas.StepContext) -> dict:
    _call("parent_last", ctx)
    if ctx.payload.get("parent_fails"):
        raise sagas.StepFailed("the parent's last step refuses", code="refused")
    return {"child_said_seen": ctx.payload.get("child_said")}


class Parent(sagas.Saga):
    """prepare, run a Child (with the payload it computes), then a last step that may fail."""

    name = "tests.parent"
    steps = [
        sagas.Step(record, undo, name="prepare"),
        sagas.SubSaga(Child, name="child", payload=lambda ctx: {**ctx.payload, "greeting": "from the parent"}),
        sagas.Step(fail_if_asked, name="last"),
    ]


class VettedApproval(sagas.Saga):
    """reserve, then a Wait whose signal data must match a schema, then a step that reads the signal's data."""

    name = "tests.vetted_approval"
    steps = [
        sagas.Step(record, undo, name="reserve"),
        sagas.Wait(
            "approved",
            schema={
                "type": "object",
                "required": ["tracking"],
                "properties": {"tracking": {"type": "string", "pattern": "^APPROVED-"}},
            },
        ),
        sagas.Step(notify_with_tracking, name="after"),
    ]


class CardChild(sagas.Saga):
    """A child whose payload_schema wants the card number as 16 digits (its refusal quotes what it got)."""

    name = "tests.card_child"
    payload_schema = {
        "type": "object",
        "required": ["card_number"],
        "properties": {"card_number": {"type": "string", "pattern": "^[0-9]{16}$"}},
    }
    steps = [sagas.Step(record, undo, name="charge_card")]


class CardParent(sagas.Saga):
    """hold, then a CardChild started with the card as the parent's payload spells it."""

    name = "tests.card_parent"
    steps = [
        sagas.Step(record, undo, name="hold"),
        sagas.SubSaga(CardChild, name="pay", payload=lambda ctx: {"card_number": ctx.payload["card_number"]}),
    ]


class GatedChild(sagas.Saga):
    """A child whose second step waits at the gate the payload names (so a test can kill its worker there)."""

    name = "tests.gated_child"
    steps = [
        sagas.Step(record, undo, name="child_first"),
        sagas.Step(wait_at_gate, undo, name="child_gate"),
    ]


class GatedParent(sagas.Saga):
    name = "tests.gated_parent"
    steps = [
        sagas.Step(record, undo, name="prepare"),
        sagas.SubSaga(GatedChild, name="child"),
        sagas.Step(record, undo, name="last"),
    ]


# --- tracing: the spans of one run's start, attempts, compensations and receivers (issue 18) ---


class Traced(sagas.Saga):
    """`first`, then `second`, whose first `fail_times` attempts fail and are retried, then `third`, which refuses
    when the payload says `parent_fails` (the run compensates `second` and `first`)."""

    name = "tests.traced"
    steps = [
        sagas.Step(record, undo, name="first"),
        sagas.Step(flaky, undo, name="second", retry=sagas.RetryPolicy(max_attempts=3, backoff=0.05, jitter=False)),
        sagas.Step(fail_if_asked, name="third"),
    ]
