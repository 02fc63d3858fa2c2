"""A compensation that keeps failing leaves the run failed for a person; retry and resolve end it."""

from __future__ import annotations

import pytest

import sagas
from participants.checkout.sagas import PlaceOrder
from participants.orders.models import Order, OrderStatus
from participants.payments.models import Account, Payment, PaymentStatus, Refund
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.integration.conftest import Shop, ledger
from tests.worker import WorkerProcess, wait_for_run

UNSERVICEABLE = {"country": "ZZ", "city": "Nowhere", "line1": "1 Road", "postal_code": "0000"}


def failed_run(shop: Shop, worker: WorkerProcess) -> SagaRun:
    """Shipping refuses the address while the refund gateway is down: the refund gives up."""
    shop.account.refund_gateway_down = True
    shop.account.save()
    run = wait_for_run(PlaceOrder.start(shop.payload(shipping_address=UNSERVICEABLE)), worker)
    assert run.status == RunStatus.FAILED, run.error
    return run


def test_compensation_that_keeps_failing_leaves_run_failed_after_the_others_ran(
    shop: Shop, worker: WorkerProcess
) -> None:
    run = failed_run(shop, worker)

    steps = {s.name: s for s in run.steps.all()}
    charge = steps["charge_payment"]
    assert charge.status == StepStatus.COMPENSATION_FAILED
    assert charge.compensation_attempts == PlaceOrder.step("charge_payment").compensation_retry.max_attempts
    assert (charge.error["class"], charge.error["code"]) == ("transient", "refund_gateway_unavailable")
    assert steps["reserve_stock"].status == StepStatus.COMPENSATED
    assert steps["create_order"].status == StepStatus.COMPENSATED
    assert Order.objects.get().status == OrderStatus.CANCELLED
    assert Payment.objects.get().status == PaymentStatus.CAPTURED
    assert not Refund.objects.exists()
    attempts = SagaEvent.objects.filter(run=run, type=EventType.COMPENSATION_ATTEMPT_FAILED, step="charge_payment")
    assert attempts.count() == charge.compensation_attempts - 1
    assert SagaEvent.objects.filter(run=run).order_by("-seq").first().type == EventType.SAGA_FAILED


def test_retry_after_the_fault_clears_ends_compensated(shop: Shop, worker: WorkerProcess) -> None:
    before = ledger()
    run = failed_run(shop, worker)
    # update(), not save(): the in-memory account still has the balance from before the charge.
    Account.objects.filter(pk=shop.account.pk).update(refund_gateway_down=False)

    sagas.retry(run.pk, reason="refund gateway is back", actor="oncall@example.com")
    run = wait_for_run(run, worker, statuses={RunStatus.COMPENSATED, RunStatus.FAILED})

    assert run.status == RunStatus.COMPENSATED
    assert run.steps.get(name="charge_payment").status == StepStatus.COMPENSATED
    assert Refund.objects.count() == 1
    retried = SagaEvent.objects.get(run=run, type=EventType.SAGA_RETRIED)
    assert (retried.actor, retried.data["reason"]) == ("oncall@example.com", "refund gateway is back")
    assert retried.data["steps"] == ["charge_payment"]
    after = ledger()
    assert (after["balances"], after["stock"]) == (before["balances"], before["stock"])


def test_resolve_by_hand_ends_compensated_with_actor_and_reason(shop: Shop, worker: WorkerProcess) -> None:
    run = failed_run(shop, worker)

    sagas.resolve(run.pk, step="charge_payment", reason="refunded by bank transfer #4411", actor="alice")

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    assert run.steps.get(name="charge_payment").status == StepStatus.RESOLVED
    resolved = SagaEvent.objects.get(run=run, type=EventType.COMPENSATION_RESOLVED)
    assert (resolved.step, resolved.actor, resolved.data["reason"]) == (
        "charge_payment",
        "alice",
        "refunded by bank transfer #4411",
    )
    final = SagaEvent.objects.filter(run=run).order_by("-seq").first()
    assert (final.type, final.actor, final.causation_id) == (EventType.SAGA_COMPENSATED, "alice", resolved.pk)
    with pytest.raises(sagas.InvalidTransition):
        sagas.resolve(run.pk, step="charge_payment", reason="again", actor="alice")
