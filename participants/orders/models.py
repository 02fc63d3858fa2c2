"""Models of the orders service: an order and its lines."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models


class OrderStatus(models.TextChoices):
    PLACED = "placed", "Placed"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    customer_email = models.EmailField(
        verbose_name="customer e-mail",
        help_text="Where the order confirmation goes.",
    )
    shipping_address = models.JSONField(
        verbose_name="shipping address",
        default=dict,
        help_text="The address as the customer gave it (country, city, line1, postal_code, ...).",
    )
    total = models.DecimalField(
        verbose_name="total",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(0)],
        help_text="Sum of quantity x unit price over the lines, computed when the order is placed.",
    )
    currency = models.CharField(
        verbose_name="currency",
        max_length=3,
        default="EUR",
        help_text="ISO 4217 code of the total and the unit prices.",
    )
    status = models.CharField(
        verbose_name="status",
        max_length=16,
        choices=OrderStatus.choices,
        default=OrderStatus.PLACED,
        help_text="Placed when created; cancelled once a cancellation succeeded.",
    )
    idempotency_key = models.CharField(
        verbose_name="idempotency key",
        max_length=255,
        unique=True,
        help_text="Key of the request that placed the order; a repeat of it returns this order.",
    )
    cancel_key = models.CharField(
        verbose_name="cancel key",
        max_length=255,
        unique=True,
        null=True,
        blank=True,
        help_text="Key of the request that cancelled the order; empty while it is placed.",
    )
    created_at = models.DateTimeField(
        verbose_name="created at",
        auto_now_add=True,
        help_text="When the order was placed.",
    )
    cancelled_at = models.DateTimeField(
        verbose_name="cancelled at",
        null=True,
        blank=True,
        help_text="When the order was cancelled; empty while it is placed.",
    )

    class Meta:
        verbose_name = "order"
        verbose_name_plural = "orders"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(total__gte=0), name="orders_order_total_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.customer_email}, {self.total} {self.currency}, {self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(
        Order,
        verbose_name="order",
        on_delete=models.CASCADE,
        related_name="lines",
        help_text="The order this line belongs to.",
    )
    sku = models.CharField(
        verbose_name="SKU",
        max_length=64,
        help_text="Stock keeping unit of the ordered product.",
    )
    quantity = models.PositiveIntegerField(
        verbose_name="quantity",
        validators=[MinValueValidator(1)],
        help_text="How many units were ordered (at least one).",
    )
    unit_price = models.DecimalField(
        verbose_name="unit price",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(0)],
        help_text="Price of one unit, in the order's currency.",
    )

    class Meta:
        verbose_name = "order line"
        verbose_name_plural = "order lines"
        ordering = ["order", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="orders_line_quantity_positive"),
            models.CheckConstraint(condition=models.Q(unit_price__gte=0), name="orders_line_unit_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku} at {self.unit_price}"

    @property
    def subtotal(self) -> Decimal:
        return self.quantity * self.unit_price
