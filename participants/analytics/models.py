"""Models of the analytics service: saga outcomes counted per day, and the messages already counted."""

from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    COMPLETED = "completed", "Completed"
    COMPENSATED = "compensated", "Compensated"
    FAILED = "failed", "Failed"


class SagaOutcomeCount(models.Model):
    saga_name = models.CharField(
        verbose_name="saga name",
        max_length=200,
        help_text="Name of the saga whose runs are counted, e.g. orders.place_order.",
    )
    outcome = models.CharField(
        verbose_name="outcome",
        max_length=16,
        choices=Outcome.choices,
        help_text="How the counted runs ended: completed, compensated, or failed (a person must act).",
    )
    day = models.DateField(
        verbose_name="day",
        help_text="UTC day on which the counted runs ended.",
    )
    count = models.PositiveIntegerField(
        verbose_name="count",
        default=0,
        help_text="How many runs of the saga ended with this outcome on this day.",
    )

    class Meta:
        verbose_name = "saga outcome count"
        verbose_name_plural = "saga outcome counts"
        ordering = ["-day", "saga_name", "outcome"]
        constraints = [
            models.UniqueConstraint(fields=["saga_name", "outcome", "day"], name="analytics_count_one_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.saga_name} {self.outcome} on {self.day}: {self.count}"


class CountedMessage(models.Model):
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that was counted (a lifecycle message's id); a repeat of it counts nothing.",
    )
    outcome_count = models.ForeignKey(
        SagaOutcomeCount,
        verbose_name="outcome count",
        on_delete=models.PROTECT,
        related_name="messages",
        help_text="The count this request added one to.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the request was counted.",
    )

    class Meta:
        verbose_name = "counted message"
        verbose_name_plural = "counted messages"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.idempotency_key} ({self.outcome_count})"
