"""Duplicated and late messages change nothing: the step rows decide, not the messages."""

from __future__ import annotations

import uuid

import pytest
from celery import Signature
from django.db import transaction
from django.db.models import Q
from django_celery_results.models import TaskResult

import sagas
from participants.checkout.sagas import PlaceOrder
from participants.orders.models import Order
from sagaproject.celery import app as celery_app
from sagas import engine
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.integration.conftest import Shop, effect_counts, ledger
from tests.testapp.tasks import delivered
from tests.worker import WorkerProcess, wait_for_run, wait_until

UNSERVICEABLE = {"country": "ZZ", "city": "Nowhere", "line1": "1 Road", "postal_code": "0000"}


def marker_for(task_id: str) -> Signature:
    """A task linked to ``task_id``'s success, whose own stored result tells a test that the task ended well."""
    return delivered.si().set(task_id=f"{task_id}-delivered")


def deliver(worker: WorkerProcess, task_name: str, *args: str) -> str:
    """Publish one task message and wait until the worker has run it to an end: "SUCCESS" (the marker linked to
    its success ran) or "FAILURE" (failures are stored, saga task or not)."""
    task_id = str(uuid.uuid4())
    marker = marker_for(task_id)
    celery_app.send_task(task_name, args=args, task_id=task_id, link=marker)
    ended = TaskResult.objects.filter(Q(task_id=task_id, status="FAILURE") | Q(task_id=marker.id, status="SUCCESS"))
    wait_until(ended.exists, worker, f"{task_name}{args} to run")
    return "FAILURE" if ended.filter(task_id=task_id).exists() else "SUCCESS"


def snapshot(run: SagaRun) -> dict:
    return {
        "ledger": ledger(),
        "effects": effect_counts(),
        "events": list(SagaEvent.objects.filter(run=run).values_list("seq", "type")),
        "steps": list(
            SagaStepRun.objects.filter(run=run)
            .order_by("index")
            .values_list("name", "status", "attempts", "compensation_attempts")
        ),
        "status": SagaRun.objects.get(pk=run.pk).status,
    }


def test_redelivered_step_messages_of_a_completed_run_change_nothing(shop: Shop, worker: WorkerProcess) -> None:
    run = wait_for_run(PlaceOrder.start(shop.payload()), worker)
    assert run.status == RunStatus.COMPLETED
    before = snapshot(run)

    for step in PlaceOrder.steps:
        assert deliver(worker, engine.step_task_name(PlaceOrder.name, step.name), str(run.pk), step.name) == "SUCCESS"
    # The whole chain published a second time, as a duplicated dispatch would: its first step sees a
    # finished run and ends the chain there.
    chain = engine.forward_canvas(PlaceOrder, str(run.pk), PlaceOrder.steps)
    chain.freeze()
    marker = marker_for(chain.tasks[0].id)
    chain.tasks[0].link(marker)  # so its end can be read from the result backend
    chain.apply_async()
    wait_until(lambda: TaskResult.objects.filter(task_id=marker.id, status="SUCCESS").exists(), worker, "second chain")

    assert snapshot(run) == before


def test_compensation_delivered_again_refunds_nothing(shop: Shop, worker: WorkerProcess) -> None:
    run = wait_for_run(PlaceOrder.start(shop.payload(shipping_address=UNSERVICEABLE)), worker)
    assert run.status == RunStatus.COMPENSATED
    before = snapshot(run)

    for name in ("charge_payment", "reserve_stock", "create_order"):
        deliver(worker, engine.compensation_task_name(PlaceOrder.name, name), str(run.pk), name)
    deliver(worker, engine.ON_STEP_FAILURE, str(run.pk), "schedule_shipment")  # an errback firing twice

    assert snapshot(run) == before
    assert before["effects"]["refunds"] == 1


@pytest.mark.parametrize("step", ["schedule_shipment", "send_confirmation", "charge_payment"])
def test_step_messages_never_run_once_the_run_is_no_longer_executing(
    step: str, shop: Shop, worker: WorkerProcess
) -> None:
    run = wait_for_run(PlaceOrder.start(shop.payload(shipping_address=UNSERVICEABLE)), worker)
    assert run.status == RunStatus.COMPENSATED
    before = snapshot(run)

    deliver(worker, engine.step_task_name(PlaceOrder.name, step), str(run.pk), step)

    assert snapshot(run) == before


def test_a_run_cancelled_before_its_chain_arrives_runs_no_step(shop: Shop, worker: WorkerProcess) -> None:
    with transaction.atomic():  # the chain is published at commit, after the cancel
        run = PlaceOrder.start(shop.payload())
        sagas.cancel(run.pk, reason="customer called", actor="dave")
    worker.wait_idle()  # the chain's first message consumed: nothing queued, nothing running, twice in a row
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert set(run.steps.values_list("status", "attempts")) == {(StepStatus.SKIPPED, 0)}
    assert not Order.objects.exists()
    assert SagaEvent.objects.get(run=run, type=EventType.SAGA_CANCELLED).actor == "dave"


def test_starting_twice_with_one_key_runs_the_saga_once(shop: Shop, worker: WorkerProcess) -> None:
    first = PlaceOrder.start(shop.payload(), idempotency_key="checkout-42")
    second = PlaceOrder.start(shop.payload(), idempotency_key="checkout-42")
    assert second.pk == first.pk

    run = wait_for_run(first, worker)

    assert run.status == RunStatus.COMPLETED
    assert SagaRun.objects.count() == 1
    assert effect_counts() == {"orders": 1, "payments": 1, "refunds": 0, "shipments": 1, "notifications": 1}


def test_concurrent_starts_with_one_key_make_one_run(shop: Shop, worker: WorkerProcess, run_concurrently) -> None:
    payload = shop.payload()
    results = run_concurrently(*[lambda: PlaceOrder.start(payload, idempotency_key="checkout-43")] * 4)

    assert {result.pk for result in results} == {results[0].pk}
    run = wait_for_run(results[0], worker)
    assert run.status == RunStatus.COMPLETED
    assert SagaRun.objects.count() == 1
    assert Order.objects.count() == 1
