"""PlaceOrder end to end on a real worker: the happy path and a business failure at every step."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django_celery_results.models import TaskResult

from participants.checkout.sagas import PlaceOrder
from participants.inventory.models import Reservation, ReservationStatus, StockItem
from participants.notifications.models import Notification
from participants.orders.models import Order, OrderStatus
from participants.payments.models import CardStatus, Payment, PaymentStatus
from participants.shipping.models import Shipment
from sagas.models import SagaEvent
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SuppressionFactory
from tests.integration.conftest import Shop, effect_counts, ledger
from tests.worker import WorkerProcess, wait_for_run

STEPS = ["create_order", "reserve_stock", "charge_payment", "schedule_shipment", "send_confirmation"]


def event_types(run) -> list[tuple[str, str]]:
    return list(SagaEvent.objects.filter(run=run).order_by("seq").values_list("type", "step"))


def test_place_order_completes_with_every_effect_once(shop: Shop, worker: WorkerProcess) -> None:
    run = PlaceOrder.start(shop.payload(), idempotency_key="order-happy")

    run = wait_for_run(run, worker)

    assert run.status == RunStatus.COMPLETED, run.error
    steps = list(run.steps.order_by("index"))
    assert [(s.name, s.status, s.attempts) for s in steps] == [(n, StepStatus.SUCCEEDED, 1) for n in STEPS]
    # Deterministic task ids: each step row links to its Celery task and its Flower page. A successful saga
    # task stores no result: the run's tables hold its outcome (failed attempts are stored: test_retries).
    assert [s.task_id for s in steps] == [f"{run.pk}:{n}:1" for n in STEPS]
    assert not TaskResult.objects.filter(task_id__in=[s.task_id for s in steps]).exists()
    # Each attempt names the worker and the pool process that ran it, on the step row and in its start event.
    pool = set(worker.pool_pids())
    assert {s.worker for s in steps} == {worker.hostname}
    assert {s.worker_pid for s in steps} <= pool
    started = SagaEvent.objects.filter(run=run, type=EventType.STEP_STARTED).order_by("seq")
    assert [(e.data["worker"], e.data["pid"]) for e in started] == [(s.worker, s.worker_pid) for s in steps]
    assert event_types(run) == [
        ("SagaStarted", ""),
        ("SagaExecuting", ""),
        *[(kind, name) for name in STEPS for kind in ("StepStarted", "StepSucceeded")],
        ("SagaCompleted", ""),
    ]
    seqs = list(SagaEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    run.refresh_from_db()
    assert run.lock_version == len(seqs)

    mug, tee = StockItem.objects.get(sku="mug"), StockItem.objects.get(sku="tee")
    assert (mug.available, mug.reserved) == (8, 2)
    assert (tee.available, tee.reserved) == (4, 1)
    order = Order.objects.get()
    assert order.status == OrderStatus.PLACED
    assert order.total == Decimal("39.00")
    payment = Payment.objects.get()
    assert (payment.status, payment.amount) == (PaymentStatus.CAPTURED, Decimal("39.00"))
    shop.account.refresh_from_db()
    assert shop.account.balance == Decimal("61.00")
    shipment = Shipment.objects.get()
    assert shipment.order_id == order.pk
    notification = Notification.objects.get()
    assert notification.recipient == "ada@example.com"
    assert shipment.tracking_number in notification.body
    assert effect_counts() == {"orders": 1, "payments": 1, "refunds": 0, "shipments": 1, "notifications": 1}
    outputs = {s.name: s.output for s in steps}
    assert outputs["create_order"] == {"order_id": order.pk, "total": "39.00"}
    assert outputs["charge_payment"]["payment_id"] == payment.pk


def _fail_at(step: str, shop: Shop) -> dict:
    """A payload (and shop state) that makes ``step`` refuse for a business reason."""
    if step == "create_order":
        return shop.payload(lines=[])  # an order needs lines
    if step == "reserve_stock":
        return shop.payload(lines=[{"sku": "tee", "quantity": 6, "unit_price": "20.00"}])  # 5 in stock
    if step == "charge_payment":
        shop.account.card_status = CardStatus.DECLINED
        shop.account.save()
        return shop.payload()
    if step == "schedule_shipment":
        return shop.payload(shipping_address={"country": "ZZ", "city": "X", "line1": "1 Road", "postal_code": "1"})
    SuppressionFactory(email="ada@example.com")
    return shop.payload()


@pytest.mark.parametrize("failing", STEPS)
def test_business_failure_compensates_completed_steps_in_reverse(
    failing: str, shop: Shop, worker: WorkerProcess
) -> None:
    payload = _fail_at(failing, shop)
    before = ledger()

    run = wait_for_run(PlaceOrder.start(payload), worker)

    assert run.status == RunStatus.COMPENSATED, run.error
    k = STEPS.index(failing)
    completed = STEPS[:k]
    steps = {s.name: s for s in run.steps.all()}
    assert steps[failing].status == StepStatus.FAILED
    assert steps[failing].attempts == 1  # a business failure is never retried
    assert steps[failing].error["class"] == "invalid_request"
    assert run.error["step"] == failing
    for name in completed:
        assert (steps[name].status, steps[name].compensation_attempts) == (StepStatus.COMPENSATED, 1)
        assert (steps[name].worker, steps[name].worker_pid in worker.pool_pids()) == (worker.hostname, True)
    undone = SagaEvent.objects.filter(run=run, type=EventType.COMPENSATION_STARTED)
    assert {(e.data["worker"], e.data["pid"] in worker.pool_pids()) for e in undone} <= {(worker.hostname, True)}
    for name in STEPS[k + 1 :]:
        assert (steps[name].status, steps[name].attempts) == (StepStatus.SKIPPED, 0)
    compensated_in_order = list(
        SagaEvent.objects.filter(run=run, type=EventType.COMPENSATION_SUCCEEDED)
        .order_by("seq")
        .values_list("step", flat=True)
    )
    assert compensated_in_order == list(reversed(completed))
    assert ledger() == before
    # Every effect that happened was undone exactly once.
    counts = effect_counts()
    assert counts["orders"] == (1 if k > 0 else 0)
    assert Order.objects.filter(status=OrderStatus.PLACED).count() == 0
    assert counts["refunds"] == counts["payments"] == (1 if k > 2 else 0)
    assert Reservation.objects.exclude(status=ReservationStatus.RELEASED).count() == 0
    assert counts["shipments"] == (1 if k > 3 else 0)
    assert counts["notifications"] == 0
