"""Receivers of the test sagas' lifecycle messages, with a ledger of what they did."""

from __future__ import annotations

import sagas
from tests.testapp.models import Effect, Switch

QUICK_RETRY = sagas.RetryPolicy(max_attempts=30, backoff=0.2, multiplier=1.5, backoff_max=1.0, jitter=False)


def _effect(kind: str, message: sagas.SagaMessage, key: str = "") -> None:
    """The receiver's effect, in its transaction: one Effect row per message, counting its calls."""
    effect, _ = Effect.objects.get_or_create(key=key or f"{kind}:{message.id}", defaults={"kind": kind})
    Effect.objects.filter(pk=effect.pk).update(calls=effect.calls + 1)


@sagas.on("tests.diamond.*", "tests.diamond.step.*", name="tests.diamond_ledger")
def diamond_ledger(message: sagas.SagaMessage) -> None:
    """Every lifecycle message of a Diamond run, keyed by run and topic."""
    _effect("diamond message", message, key=f"{message.run_id} {message.topic}")


@sagas.on("tests.transfer.completed", name="tests.transfer_ledger", retry=QUICK_RETRY)
def transfer_ledger(message: sagas.SagaMessage) -> None:
    _effect("transfer completed", message)


@sagas.on("tests.flaky.completed", name="tests.moody_ledger", retry=QUICK_RETRY)
def moody_ledger(message: sagas.SagaMessage) -> None:
    """Fails while the switch `ledger-down` is on (its effect rolls back); retried on its own."""
    _effect("flaky completed", message)
    if Switch.objects.filter(name="ledger-down", on=True).exists():
        raise sagas.TransientError("the ledger is down")


@sagas.on("tests.secretive.completed", name="tests.broken_keeper", retry=sagas.RetryPolicy(max_attempts=1))
def broken_keeper(message: sagas.SagaMessage) -> None:
    """Receives a message full of secrets and gives up at once, so a failed delivery is on record."""
    raise ValueError("the keeper is broken")


@sagas.on("tests.traced.completed", "tests.traced.compensated", name="tests.traced_ledger")
def traced_ledger(message: sagas.SagaMessage) -> None:
    """How a Traced run ended: its delivery is a span of the run's trace."""
    _effect("traced ended", message)
