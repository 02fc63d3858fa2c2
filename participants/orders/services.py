"""Writes of the orders service: place an order and cancel it, both idempotent on their key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from participants.orders.errors import InvalidOrder, OrderNotFound
from participants.orders.models import Order, OrderLine, OrderStatus

CENT = Decimal("0.01")
# DecimalField(max_digits=12, decimal_places=2) holds at most ten integer digits.
MAX_AMOUNT = Decimal("9999999999.99")


def order_create(
    *,
    customer_email: str,
    lines: Sequence[Mapping[str, Any]],
    shipping_address: Mapping[str, Any],
    idempotency_key: str,
) -> Order:
    """Place an order whose total is computed from its lines.

    ``lines`` are ``{"sku", "quantity", "unit_price"}`` dicts. A repeat with the same
    ``idempotency_key`` returns the order the first call placed and writes nothing.
    Raises ``InvalidOrder`` for a bad e-mail, no lines, a quantity below one or a negative price.
    """
    with transaction.atomic():
        existing = Order.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing

        _validate_email(customer_email)
        parsed = _parse_lines(lines)
        total = sum((quantity * unit_price for _, quantity, unit_price in parsed), Decimal("0.00"))
        if total > MAX_AMOUNT:
            raise InvalidOrder(f"The order total {total} exceeds the maximum of {MAX_AMOUNT}.")

        try:
            # A savepoint, so losing the race to a concurrent call with the same key leaves the
            # outer transaction usable for reading the winner's order.
            with transaction.atomic():
                order = Order.objects.create(
                    customer_email=customer_email,
                    shipping_address=dict(shipping_address),
                    total=total,
                    idempotency_key=idempotency_key,
                )
                OrderLine.objects.bulk_create(
                    OrderLine(order=order, sku=sku, quantity=quantity, unit_price=unit_price)
                    for sku, quantity, unit_price in parsed
                )
        except IntegrityError:
            existing = Order.objects.filter(idempotency_key=idempotency_key).first()
            if existing is None:
                raise
            return existing
        return order


def order_cancel(*, order_id: int, idempotency_key: str) -> Order:
    """Cancel an order; cancelling an already cancelled order returns it unchanged.

    Raises ``OrderNotFound`` when no order has ``order_id``.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise OrderNotFound(f"Order {order_id} does not exist, so it cannot be cancelled.")
        if order.status == OrderStatus.CANCELLED:
            return order
        order.status = OrderStatus.CANCELLED
        order.cancel_key = idempotency_key
        order.cancelled_at = timezone.now()
        order.save(update_fields=["status", "cancel_key", "cancelled_at"])
        return order


def _validate_email(customer_email: str) -> None:
    try:
        validate_email(customer_email)
    except ValidationError:
        raise InvalidOrder(f"{customer_email!r} is not a valid customer e-mail address.") from None


def _parse_lines(lines: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, Decimal]]:
    if not lines:
        raise InvalidOrder("An order needs at least one line.")
    parsed = []
    for number, line in enumerate(lines, start=1):
        sku = line.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise InvalidOrder(f"Line {number} has no SKU.")
        quantity = line.get("quantity")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
            raise InvalidOrder(f"Line {number} (SKU {sku!r}) has quantity {quantity!r}; it must be at least 1.")
        unit_price = _parse_price(line.get("unit_price"), number=number, sku=sku)
        parsed.append((sku, quantity, unit_price))
    return parsed


def _parse_price(value: object, *, number: int, sku: str) -> Decimal:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite():
        raise InvalidOrder(f"Line {number} (SKU {sku!r}) has unit price {value!r}, which is not a number.")
    if price < 0:
        raise InvalidOrder(f"Line {number} (SKU {sku!r}) has a negative unit price ({price}).")
    if price != price.quantize(CENT) or price > MAX_AMOUNT:
        raise InvalidOrder(
            f"Line {number} (SKU {sku!r}) has unit price {price}; it needs at most two decimal places "
            f"and at most {MAX_AMOUNT}."
        )
    return price.quantize(CENT)
