"""Models of the inventory service: stock per SKU and reservations against it."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class ReservationStatus(models.TextChoices):
    RESERVED = "reserved", "Reserved"
    RELEASED = "released", "Released"


class StockItem(models.Model):
    sku = models.CharField(
        verbose_name="SKU",
        max_length=64,
        unique=True,
        help_text="Stock keeping unit that identifies the product.",
    )
    name = models.CharField(
        verbose_name="name",
        max_length=200,
        blank=True,
        help_text="What the product is called, for people.",
    )
    available = models.PositiveIntegerField(
        verbose_name="available",
        default=0,
        help_text="Units on hand that no reservation holds; an operator may change it to restock.",
    )
    reserved = models.PositiveIntegerField(
        verbose_name="reserved",
        default=0,
        help_text="Units held by active reservations; only reservations and releases change it.",
    )

    class Meta:
        verbose_name = "stock item"
        verbose_name_plural = "stock items"
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} ({self.available} available, {self.reserved} reserved)"


class Reservation(models.Model):
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that made the reservation; a repeat of it returns this reservation.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=ReservationStatus.choices,
        default=ReservationStatus.RESERVED,
        help_text="Reserved while it holds stock; released once the stock went back to available.",
    )
    release_key = models.CharField(
        verbose_name="release key",
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text="Key of the request that released the reservation; empty while it holds stock.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the stock was reserved.",
    )
    released_at = models.DateTimeField(
        verbose_name="released at",
        null=True,
        blank=True,
        help_text="When the stock went back to available; empty while it is reserved.",
    )

    class Meta:
        verbose_name = "reservation"
        verbose_name_plural = "reservations"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Reservation {self.pk} ({self.status})"


class ReservationLine(models.Model):
    reservation = models.ForeignKey(
        Reservation,
        verbose_name="reservation",
        on_delete=models.CASCADE,
        related_name="lines",
        help_text="The reservation this line belongs to.",
    )
    item = models.ForeignKey(
        StockItem,
        verbose_name="stock item",
        on_delete=models.PROTECT,
        related_name="reservation_lines",
        help_text="The stock the units are held from.",
    )
    quantity = models.PositiveIntegerField(
        verbose_name="quantity",
        validators=[MinValueValidator(1)],
        help_text="How many units of the item the reservation holds.",
    )

    class Meta:
        verbose_name = "reservation line"
        verbose_name_plural = "reservation lines"
        ordering = ["reservation", "item__sku"]
        constraints = [
            models.UniqueConstraint(fields=["reservation", "item"], name="inventory_line_one_per_item"),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="inventory_line_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.item.sku}"
