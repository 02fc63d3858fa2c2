"""PlaceOrder: create the order, reserve stock, charge the card, schedule shipment, confirm.

The orchestrator is the only code that talks to several services; the services never import each
other. Each step passes its service an id or two, amounts as strings and ``ctx.idempotency_key``, and
turns the service's business refusals into ``sagas.StepFailed`` so the saga compensates at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sagas
from participants.inventory import errors as inventory_errors
from participants.inventory import services as inventory
from participants.notifications import errors as notification_errors
from participants.notifications import services as notifications
from participants.orders import errors as order_errors
from participants.orders import services as orders
from participants.payments import errors as payment_errors
from participants.payments import services as payments
from participants.shipping import errors as shipping_errors
from participants.shipping import services as shipping


@contextmanager
def refusals_fail_the_step(*business_errors: type[Exception]) -> Iterator[None]:
    """A service's business refusal is final: raise StepFailed (no retry) with its code."""
    try:
        yield
    except business_errors as exc:
        raise sagas.StepFailed(str(exc), code=getattr(exc, "code", "")) from exc


def create_order(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(order_errors.OrderError):
        order = orders.order_create(
            customer_email=ctx.payload["customer_email"],
            lines=ctx.payload["lines"],
            shipping_address=ctx.payload["shipping_address"],
            idempotency_key=ctx.idempotency_key,
        )
    return {"order_id": order.pk, "total": str(order.total)}


def cancel_order(ctx: sagas.StepContext) -> None:
    orders.order_cancel(order_id=ctx.result["order_id"], idempotency_key=ctx.idempotency_key)


def reserve_stock(ctx: sagas.StepContext) -> dict[str, Any]:
    lines = [{"sku": line["sku"], "quantity": line["quantity"]} for line in ctx.payload["lines"]]
    with refusals_fail_the_step(inventory_errors.InventoryError):
        reservation = inventory.stock_reserve(lines=lines, idempotency_key=ctx.idempotency_key)
    return {"reservation_id": reservation.pk}


def release_stock(ctx: sagas.StepContext) -> None:
    inventory.stock_release(reservation_id=ctx.result["reservation_id"], idempotency_key=ctx.idempotency_key)


def charge_payment(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(payment_errors.PaymentError):
        payment = payments.payment_charge(
            account_id=ctx.payload["account_id"],
            amount=ctx.results["create_order"]["total"],
            idempotency_key=ctx.idempotency_key,
        )
    return {"payment_id": payment.pk, "amount": str(payment.amount)}


def refund_payment(ctx: sagas.StepContext) -> None:
    try:
        payments.payment_refund(payment_id=ctx.result["payment_id"], idempotency_key=ctx.idempotency_key)
    except payment_errors.RefundGatewayUnavailable as exc:
        # One account's refund gateway is down, not the payments service: retry, but leave its breaker be.
        raise sagas.TransientError(str(exc), code=exc.code, service_fault=False) from exc


def schedule_shipment(ctx: sagas.StepContext) -> dict[str, Any]:
    with refusals_fail_the_step(shipping_errors.ShippingError):
        shipment = shipping.shipment_schedule(
            order_id=ctx.results["create_order"]["order_id"],
            address=ctx.payload["shipping_address"],
            idempotency_key=ctx.idempotency_key,
        )
    return {"shipment_id": shipment.pk, "tracking_number": shipment.tracking_number}


def cancel_shipment(ctx: sagas.StepContext) -> None:
    shipping.shipment_cancel(shipment_id=ctx.result["shipment_id"], idempotency_key=ctx.idempotency_key)


def send_confirmation(ctx: sagas.StepContext) -> dict[str, Any]:
    order_id = ctx.results["create_order"]["order_id"]
    with refusals_fail_the_step(notification_errors.NotificationError):
        notification = notifications.notification_send(
            recipient=ctx.payload["customer_email"],
            subject=f"Order {order_id} confirmed",
            body=(
                f"Thank you for your order {order_id} of {ctx.results['create_order']['total']}. "
                f"Tracking number: {ctx.results['schedule_shipment']['tracking_number']}."
            ),
            idempotency_key=ctx.idempotency_key,
        )
    return {"notification_id": notification.pk}


class PlaceOrder(sagas.Saga):
    """Payload: ``customer_email``, ``account_id``, ``lines`` ([{sku, quantity, unit_price}]) and
    ``shipping_address`` ({country, city, line1, postal_code})."""

    name = "orders.place_order"
    version = 2  # 2: the confirmation is declared irreversible (the steps run as in 1)
    timeout = 300
    searchable = ("customer_email", "account_id")
    steps = [
        sagas.Step(create_order, cancel_order, service="orders"),
        sagas.Step(reserve_stock, release_stock, service="inventory"),
        sagas.Step(
            charge_payment,
            refund_payment,
            service="payments",
            timeout=30,
            retry=sagas.RetryPolicy(max_attempts=3, backoff=0.5, backoff_max=5.0),
            # A refund that cannot get through leaves money taken: try hard before asking a person.
            compensation_retry=sagas.RetryPolicy(max_attempts=4, backoff=0.5, backoff_max=5.0),
        ),
        sagas.Step(schedule_shipment, cancel_shipment, service="shipping"),
        # The pivot: once the customer is told, nothing is undone.
        sagas.Step(send_confirmation, service="notifications", irreversible=True),
    ]


class PlaceOrderV1(PlaceOrder):
    """Version 1, kept so that runs started under it finish under it (docs/versions.md): the steps of version 2,
    without the confirmation declared irreversible."""

    name = PlaceOrder.name
    version = 1
    steps = [*PlaceOrder.steps[:-1], sagas.Step(send_confirmation, service="notifications")]
