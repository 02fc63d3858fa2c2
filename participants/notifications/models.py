"""Models of the notifications service: the suppression list and the messages sent."""

from __future__ import annotations

from django.db import models


class NotificationStatus(models.TextChoices):
    SENT = "sent", "Sent"


class Suppression(models.Model):
    email = models.EmailField(
        verbose_name="e-mail",
        unique=True,
        help_text="Address that gets no messages; matched without regard to case.",
    )
    reason = models.CharField(
        verbose_name="reason",
        max_length=200,
        blank=True,
        help_text="Why the address is suppressed (bounced, unsubscribed, complaint, ...).",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the address was suppressed.",
    )

    class Meta:
        verbose_name = "suppression"
        verbose_name_plural = "suppressions"
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email


class Notification(models.Model):
    recipient = models.EmailField(
        verbose_name="recipient",
        help_text="E-mail address the message went to.",
    )
    subject = models.CharField(
        verbose_name="subject",
        max_length=255,
        help_text="Subject line of the message.",
    )
    body = models.TextField(
        verbose_name="body",
        blank=True,
        help_text="Plain-text body of the message.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=NotificationStatus.choices,
        default=NotificationStatus.SENT,
        help_text="Sent once the message is recorded; this example service does not talk to a mail server.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that sent the message; a repeat of it returns this notification.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the message was sent.",
    )

    class Meta:
        verbose_name = "notification"
        verbose_name_plural = "notifications"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.subject!r} to {self.recipient}"
