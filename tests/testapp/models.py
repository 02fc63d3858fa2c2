"""A ledger of effects that test sagas write, so tests can count what really happened."""

from __future__ import annotations

from django.db import models


class Effect(models.Model):
    key = models.CharField("key", max_length=255, unique=True, help_text="Idempotency key of the call.")
    kind = models.CharField("kind", max_length=50, help_text="What the call did.")
    calls = models.PositiveIntegerField("calls", default=0, help_text="How many times it was called.")

    class Meta:
        verbose_name = "effect"
        verbose_name_plural = "effects"

    def __str__(self) -> str:
        return f"{self.kind} {self.key} x{self.calls}"


class Switch(models.Model):
    """A flag a test flips while a saga runs: a service that is down, a gate a step waits at."""

    name = models.CharField("name", max_length=100, unique=True, help_text="What the flag is for.")
    on = models.BooleanField("on", default=False, help_text="Whether it is on.")

    class Meta:
        verbose_name = "switch"
        verbose_name_plural = "switches"

    def __str__(self) -> str:
        return f"{self.name}={'on' if self.on else 'off'}"


class Call(models.Model):
    """One real call to a (pretend) remote service, as its server would log it."""

    service = models.CharField("service", max_length=100, help_text="The service called.")
    key = models.CharField("key", max_length=255, help_text="Idempotency key of the call.")
    ok = models.BooleanField("ok", default=False, help_text="Whether the service answered well.")
    started_at = models.DateTimeField("started at", help_text="When the call reached the service.")
    pid = models.PositiveIntegerField("pid", help_text="Process that made the call.")

    class Meta:
        verbose_name = "call"
        verbose_name_plural = "calls"

    def __str__(self) -> str:
        return f"{self.service} {'ok' if self.ok else 'failed'}"


def calls_of(run: models.Model, step: str, suffix: str = "") -> int:
    """How many times a test saga's step (``suffix=":compensate"``: its compensation) was called in ``run``."""
    effect = Effect.objects.filter(key=f"{run.pk}:{step}{suffix}").first()
    return effect.calls if effect else 0


class Account(models.Model):
    """An account of the test bank: the participant the fault suite moves money through."""

    name = models.CharField("name", max_length=50, unique=True, help_text="Account name.")
    balance = models.IntegerField("balance", default=0, help_text="Balance in cents.")

    class Meta:
        verbose_name = "account"
        verbose_name_plural = "accounts"

    def __str__(self) -> str:
        return f"{self.name}: {self.balance}"


class Entry(models.Model):
    """One posting to an account; its key makes posting idempotent."""

    key = models.CharField("key", max_length=255, unique=True, help_text="Idempotency key of the posting.")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="entries", help_text="Account.")
    amount = models.IntegerField("amount", help_text="Cents; negative for a debit.")

    class Meta:
        verbose_name = "entry"
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.key}: {self.amount}"
