"""Models of the loyalty service: customers' points accounts and the entries that awarded the points."""

from __future__ import annotations

from django.db import models


class LoyaltyAccount(models.Model):
    customer_email = models.EmailField(
        verbose_name="customer e-mail",
        unique=True,
        help_text="Address of the customer the points belong to, lower-cased; the first award opens the account.",
    )
    points = models.PositiveBigIntegerField(
        verbose_name="points",
        default=0,
        help_text="Points collected so far: the sum of the account's entries. Only awards change it.",
    )
    service_down = models.BooleanField(
        verbose_name="loyalty service down",
        default=False,
        help_text=(
            "Simulates the loyalty service being down for this customer: awards fail with "
            "loyalty_unavailable (and their receiver retries) until an operator clears this box."
        ),
    )
    updated_at = models.DateTimeField(
        verbose_name="updated at",
        auto_now=True,
        help_text="When points were last awarded or the switch was last flipped.",
    )

    class Meta:
        verbose_name = "loyalty account"
        verbose_name_plural = "loyalty accounts"
        ordering = ["customer_email"]

    def __str__(self) -> str:
        return f"{self.customer_email} ({self.points} points)"


class PointsEntry(models.Model):
    account = models.ForeignKey(
        LoyaltyAccount,
        verbose_name="account",
        on_delete=models.PROTECT,
        related_name="entries",
        help_text="The account the points were added to.",
    )
    points = models.PositiveBigIntegerField(
        verbose_name="points",
        help_text="How many points this award added (zero for an order under one currency unit).",
    )
    reason = models.CharField(
        verbose_name="reason",
        max_length=200,
        help_text="What earned the points, e.g. the order they were awarded for.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that awarded the points (a lifecycle message's id); a repeat returns this entry.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the points were awarded.",
    )

    class Meta:
        verbose_name = "points entry"
        verbose_name_plural = "points entries"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.points} points to {self.account_id} ({self.reason})"
