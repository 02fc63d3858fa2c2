"""Models of the fraud service: the travellers operators blocked and the screenings made."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class Verdict(models.TextChoices):
    APPROVED = "approved", "Approved"
    REFUSED = "refused", "Refused"


class BlockedTraveller(models.Model):
    email = models.EmailField(
        verbose_name="e-mail",
        unique=True,
        help_text="Address of a traveller whose bookings are refused; matched without regard to case.",
    )
    reason = models.CharField(
        verbose_name="reason",
        max_length=200,
        blank=True,
        help_text="Why the traveller is blocked (chargebacks, stolen card, ...); told to the caller.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the traveller was blocked.",
    )

    class Meta:
        verbose_name = "blocked traveller"
        verbose_name_plural = "blocked travellers"
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Screening(models.Model):
    traveller_email = models.EmailField(
        verbose_name="traveller e-mail",
        help_text="Address of the traveller who was screened.",
    )
    amount = models.DecimalField(
        verbose_name="amount",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(0)],
        help_text="How much the traveller was about to spend.",
    )
    verdict = models.CharField(
        verbose_name="verdict",
        max_length=16,
        choices=Verdict.choices,
        help_text="Approved lets the booking go on; refused stops it (the traveller is blocked).",
    )
    reason = models.CharField(
        verbose_name="reason",
        max_length=200,
        blank=True,
        help_text="Why the screening refused the booking; empty when it was approved.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that asked for the screening; a repeat of it gets this verdict again.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the traveller was screened.",
    )

    class Meta:
        verbose_name = "screening"
        verbose_name_plural = "screenings"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="fraud_screening_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Screening {self.pk} of {self.traveller_email} ({self.verdict})"
