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
