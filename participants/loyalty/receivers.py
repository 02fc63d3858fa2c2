"""Receivers of the loyalty service: a completed order earns its customer points."""

from __future__ import annotations

import sagas
from participants.loyalty import services as loyalty


@sagas.on("orders.place_order.completed", retry=sagas.RetryPolicy(max_attempts=10, backoff=1.0, backoff_max=60.0))
def award_points(message: sagas.SagaMessage) -> None:
    """Award one point per whole currency unit of the order's total; retried while the service is down."""
    order = message.results["create_order"]
    loyalty.points_award(
        customer_email=message.payload["customer_email"],
        points=loyalty.points_for_amount(order["total"]),
        reason=f"order {order['order_id']}",
        idempotency_key=message.id,
    )
