"""The infrastructure soak's history checker on real runs: silent on a clean history, loud on a tampered one."""

from __future__ import annotations

import random

from bench.chaos import history
from bench.chaos.faults import FaultLog
from bench.chaos.workload import Workload, ledger, seed
from participants.checkout.sagas import PlaceOrder
from participants.inventory.models import Reservation
from participants.orders.models import Order
from sagas.models import SagaOutbox, SagaReceipt
from sagas.states import RunStatus
from tests.faults.conftest import FaultLab
from tests.worker import wait_until


def test_the_history_checker_passes_real_runs_and_names_what_was_tampered_with(lab: FaultLab) -> None:
    worker = lab.start_worker()
    shop = seed("history")
    before = ledger()
    order = Workload(shop, random.Random(1)).order
    good = {**order(1), "account_id": shop.accounts[5]}
    unserviceable = {**good, "shipping_address": {**good["shipping_address"], "country": "ZZ"}}
    completed, compensated = lab.settle([PlaceOrder.start(good), PlaceOrder.start(unserviceable)])
    assert (completed.status, compensated.status) == (RunStatus.COMPLETED, RunStatus.COMPENSATED)
    messages = SagaOutbox.objects.filter(run__in=[completed.pk, compensated.pk])
    # Each run's end goes to analytics, a completed order to loyalty too.
    wait_until(lambda: SagaReceipt.objects.filter(message_id__in=messages.values("id")).count() == 3, worker,
               "the receivers to get the runs' messages")  # fmt: skip
    ids = [completed.pk, compensated.pk]

    clean = history.check(ids, shop, before)
    assert clean.ok, clean.violations
    assert clean.by_status == {"completed": 1, "compensated": 1}

    Order.objects.filter(idempotency_key=f"{completed.pk}:create_order").update(cancel_key="by hand")
    Reservation.objects.filter(idempotency_key=f"{compensated.pk}:reserve_stock").update(release_key="")
    tampered = history.check(ids, shop, before)

    assert {(v.category, v.run_id, v.message) for v in tampered.violations} == {
        ("lost", completed.pk, "create_order is succeeded but its effect was undone"),
        ("lost", compensated.pk, "reserve_stock is compensated but its effect is applied, not undone"),
    }
    assert (tampered.count("lost"), tampered.count("doubled")) == (2, 0)
    shown = history.timeline(completed.pk, FaultLog())
    assert "#1 SagaStarted" in shown
    assert "effect create_order: Order" in shown
