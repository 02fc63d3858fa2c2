"""Models of the shipping service: the countries it delivers to and the shipments it schedules."""

from __future__ import annotations

import secrets

from django.core.validators import RegexValidator
from django.db import models


def generate_tracking_number() -> str:
    """A random tracking number such as ``TRK-3F9A0C12B7D4E5A6``."""
    return f"TRK-{secrets.token_hex(8).upper()}"


class ShipmentStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    CANCELLED = "cancelled", "Cancelled"


class DeliveryZone(models.Model):
    country = models.CharField(
        verbose_name="country",
        max_length=2,
        unique=True,
        validators=[RegexValidator(r"^[A-Z]{2}$", "Use the two capital letters of the ISO 3166 code, e.g. NL.")],
        help_text="ISO 3166-1 alpha-2 code of the country, in capitals (NL, DE, ...).",
    )
    active = models.BooleanField(
        verbose_name="active",
        default=True,
        help_text="Whether shipments to this country can be scheduled; an operator may switch it off.",
    )

    class Meta:
        verbose_name = "delivery zone"
        verbose_name_plural = "delivery zones"
        ordering = ["country"]

    def __str__(self) -> str:
        return f"{self.country} ({'active' if self.active else 'inactive'})"


class Shipment(models.Model):
    # Not a foreign key: the order lives in another service's database tables.
    order_id = models.PositiveBigIntegerField(
        verbose_name="order id",
        help_text="Id of the order in the orders service.",
    )
    address = models.JSONField(
        verbose_name="address",
        default=dict,
        help_text="Where the parcel goes: country, city, line1, postal_code and any other lines.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=ShipmentStatus.choices,
        default=ShipmentStatus.SCHEDULED,
        help_text="Scheduled once booked; cancelled once a cancellation succeeded.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that scheduled the shipment; a repeat of it returns this shipment.",
    )
    cancel_key = models.CharField(
        verbose_name="cancel key",
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text="Key of the request that cancelled the shipment; empty while it is scheduled.",
    )
    tracking_number = models.CharField(
        verbose_name="tracking number",
        max_length=32,
        unique=True,
        default=generate_tracking_number,
        editable=False,
        help_text="Number the customer tracks the parcel with, generated when the shipment is scheduled.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the shipment was scheduled.",
    )
    cancelled_at = models.DateTimeField(
        verbose_name="cancelled at",
        null=True,
        blank=True,
        help_text="When the shipment was cancelled; empty while it is scheduled.",
    )

    class Meta:
        verbose_name = "shipment"
        verbose_name_plural = "shipments"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Shipment {self.tracking_number} for order {self.order_id} ({self.status})"
