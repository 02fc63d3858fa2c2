"""Models of the payments service: accounts, the payments charged to them and their refunds."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class CardStatus(models.TextChoices):
    OK = "ok", "OK"
    DECLINED = "declined", "Declined"


class PaymentStatus(models.TextChoices):
    CAPTURED = "captured", "Captured"
    REFUNDED = "refunded", "Refunded"


class Account(models.Model):
    holder = models.CharField(
        verbose_name="holder",
        max_length=200,
        help_text="Name of the person the account belongs to.",
    )
    email = models.EmailField(
        verbose_name="e-mail",
        blank=True,
        help_text="Contact address of the holder.",
    )
    balance = models.DecimalField(
        verbose_name="balance",
        max_digits=12,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0)],
        help_text="Money left to charge; charges lower it and refunds raise it.",
    )
    card_status = models.CharField(
        verbose_name="card status",
        max_length=16,
        choices=CardStatus.choices,
        default=CardStatus.OK,
        help_text="Declined makes every new charge fail with card_declined; an operator may switch it.",
    )
    refund_gateway_down = models.BooleanField(
        verbose_name="refund gateway down",
        default=False,
        help_text=(
            "Simulates this account's refund gateway being down: refunds fail with a transient error "
            "(and are retried) until an operator clears this box."
        ),
    )

    class Meta:
        verbose_name = "account"
        verbose_name_plural = "accounts"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="payments_account_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Account {self.pk} ({self.holder})"


class Payment(models.Model):
    account = models.ForeignKey(
        Account,
        verbose_name="account",
        on_delete=models.PROTECT,
        related_name="payments",
        help_text="The account the amount was charged to.",
    )
    amount = models.DecimalField(
        verbose_name="amount",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(0)],
        help_text="How much was charged.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=PaymentStatus.choices,
        default=PaymentStatus.CAPTURED,
        help_text="Captured once charged; refunded once the amount went back to the account.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that charged the account; a repeat of it returns this payment.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the amount was charged.",
    )

    class Meta:
        verbose_name = "payment"
        verbose_name_plural = "payments"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payments_payment_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Payment {self.pk} of {self.amount} ({self.status})"


class Refund(models.Model):
    payment = models.OneToOneField(
        Payment,
        verbose_name="payment",
        on_delete=models.PROTECT,
        related_name="refund",
        help_text="The payment this refund gave back; a payment is refunded at most once.",
    )
    amount = models.DecimalField(
        verbose_name="amount",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(0)],
        help_text="How much went back to the account: the whole payment.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that refunded the payment.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the payment was refunded.",
    )

    class Meta:
        verbose_name = "refund"
        verbose_name_plural = "refunds"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payments_refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund {self.pk} of payment {self.payment_id} ({self.amount})"
