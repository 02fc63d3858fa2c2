"""Tests of the orders service."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from participants.orders.errors import InvalidOrder, OrderError, OrderNotFound
from participants.orders.models import Order, OrderLine, OrderStatus
from participants.orders.services import order_cancel, order_create
from tests.factories import ADDRESS, OrderFactory

LINES = [
    {"sku": "mug", "quantity": 2, "unit_price": "7.50"},
    {"sku": "tee", "quantity": 1, "unit_price": Decimal("19.99")},
]


def create(**overrides: Any) -> Order:
    arguments: dict[str, Any] = {
        "customer_email": "ada@example.com",
        "lines": LINES,
        "shipping_address": ADDRESS,
        "idempotency_key": "order-1",
    }
    return order_create(**{**arguments, **overrides})


@pytest.mark.django_db
def test_create_computes_total_from_lines_and_stores_them() -> None:
    order = create()

    order.refresh_from_db()
    assert order.total == Decimal("34.99")
    assert order.currency == "EUR"
    assert order.status == OrderStatus.PLACED
    assert order.shipping_address == ADDRESS
    assert [(line.sku, line.quantity, line.unit_price) for line in order.lines.order_by("id")] == [
        ("mug", 2, Decimal("7.50")),
        ("tee", 1, Decimal("19.99")),
    ]


@pytest.mark.django_db
def test_create_with_same_key_twice_places_one_order() -> None:
    first = create()
    second = create()

    assert second.pk == first.pk
    assert Order.objects.count() == 1
    assert OrderLine.objects.count() == 2


@pytest.mark.django_db
def test_create_repeated_with_other_details_returns_the_first_order_unchanged() -> None:
    first = create()

    again = create(customer_email="other@example.com", lines=[{"sku": "x", "quantity": 9, "unit_price": "1"}])

    assert again.pk == first.pk
    assert again.customer_email == "ada@example.com"
    assert again.total == Decimal("34.99")
    assert OrderLine.objects.count() == 2


@pytest.mark.django_db
def test_create_with_new_key_places_another_order() -> None:
    create(idempotency_key="order-1")
    create(idempotency_key="order-2")

    assert Order.objects.count() == 2


@pytest.mark.django_db
def test_create_accepts_free_lines() -> None:
    order = create(lines=[{"sku": "sticker", "quantity": 3, "unit_price": "0"}])

    assert order.total == Decimal("0.00")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lines": []}, "at least one line"),
        ({"lines": [{"sku": "mug", "quantity": 0, "unit_price": "1.00"}]}, "quantity 0"),
        ({"lines": [{"sku": "mug", "quantity": -1, "unit_price": "1.00"}]}, "quantity -1"),
        ({"lines": [{"sku": "mug", "quantity": "2", "unit_price": "1.00"}]}, "quantity '2'"),
        ({"lines": [{"sku": "mug", "quantity": 1, "unit_price": "-0.01"}]}, "negative unit price"),
        ({"lines": [{"sku": "mug", "quantity": 1, "unit_price": "cheap"}]}, "not a number"),
        ({"lines": [{"sku": "mug", "quantity": 1}]}, "not a number"),
        ({"lines": [{"sku": "mug", "quantity": 1, "unit_price": "1.005"}]}, "two decimal places"),
        ({"lines": [{"sku": "", "quantity": 1, "unit_price": "1.00"}]}, "no SKU"),
        ({"customer_email": "not-an-email"}, "'not-an-email' is not a valid customer e-mail"),
    ],
)
def test_create_refuses_invalid_order_and_writes_nothing(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOrder, match=message) as excinfo:
        create(**overrides)

    assert excinfo.value.code == "invalid_order"
    assert Order.objects.count() == 0
    assert OrderLine.objects.count() == 0


@pytest.mark.django_db
def test_invalid_order_names_the_offending_line() -> None:
    lines = [*LINES, {"sku": "poster", "quantity": 0, "unit_price": "5.00"}]

    with pytest.raises(InvalidOrder, match=r"Line 3 \(SKU 'poster'\) has quantity 0"):
        create(lines=lines)


@pytest.mark.django_db
def test_cancel_marks_order_cancelled_and_records_the_key() -> None:
    order = OrderFactory.create()

    cancelled = order_cancel(order_id=order.pk, idempotency_key="cancel-1")

    order.refresh_from_db()
    assert cancelled.pk == order.pk
    assert order.status == OrderStatus.CANCELLED
    assert order.cancel_key == "cancel-1"
    assert order.cancelled_at is not None


@pytest.mark.django_db
def test_cancel_with_same_key_twice_changes_nothing_the_second_time() -> None:
    order = OrderFactory.create()
    first = order_cancel(order_id=order.pk, idempotency_key="cancel-1")

    second = order_cancel(order_id=order.pk, idempotency_key="cancel-1")

    assert second.pk == first.pk
    assert second.cancelled_at == first.cancelled_at
    assert second.cancel_key == "cancel-1"


@pytest.mark.django_db
def test_cancel_of_cancelled_order_with_another_key_keeps_the_first_cancellation() -> None:
    order = OrderFactory.create()
    first = order_cancel(order_id=order.pk, idempotency_key="cancel-1")

    second = order_cancel(order_id=order.pk, idempotency_key="cancel-2")

    assert second.cancel_key == "cancel-1"
    assert second.cancelled_at == first.cancelled_at


@pytest.mark.django_db
def test_cancel_leaves_other_orders_alone() -> None:
    order, other = OrderFactory.create_batch(2)

    order_cancel(order_id=order.pk, idempotency_key="cancel-1")

    other.refresh_from_db()
    assert other.status == OrderStatus.PLACED


@pytest.mark.django_db
def test_cancel_of_missing_order_raises_order_not_found() -> None:
    with pytest.raises(OrderNotFound, match="Order 999 does not exist") as excinfo:
        order_cancel(order_id=999, idempotency_key="cancel-1")

    assert excinfo.value.code == "order_not_found"


def test_order_errors_share_a_base_with_stable_codes() -> None:
    assert {error.code for error in (OrderError, InvalidOrder, OrderNotFound)} == {
        "order_error",
        "invalid_order",
        "order_not_found",
    }
    assert issubclass(InvalidOrder, OrderError)
    assert issubclass(OrderNotFound, OrderError)
