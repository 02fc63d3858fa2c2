"""200 PlaceOrder runs at once on 2 worker processes over scarce stock: every run ends, nothing leaks."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

from participants.checkout.sagas import PlaceOrder
from participants.inventory.models import ReservationLine, ReservationStatus, StockItem
from participants.orders.models import Order, OrderStatus
from participants.payments.models import Account, CardStatus, Payment, Refund
from sagas.models import SagaRun
from sagas.states import FINISHED_RUN_STATES, RunStatus, StepStatus
from tests.factories import ADDRESS, AccountFactory, DeliveryZoneFactory, StockItemFactory
from tests.worker import WorkerProcess, wait_until

RUNS = 200
STOCK = {"mug": 40, "tee": 30, "cap": 25}
UNSERVICEABLE = {"country": "ZZ", "city": "Nowhere", "line1": "1 Road", "postal_code": "0000"}


def money_total() -> Decimal:
    balances = sum((a.balance for a in Account.objects.all()), Decimal(0))
    captured = sum((p.amount for p in Payment.objects.all()), Decimal(0))
    refunded = sum((r.amount for r in Refund.objects.all()), Decimal(0))
    return balances + captured - refunded


def test_concurrent_orders_all_end_and_conserve_stock_and_money(worker: WorkerProcess) -> None:
    rng = random.Random(2026)
    DeliveryZoneFactory(country="NL")
    for sku, units in STOCK.items():
        StockItemFactory(sku=sku, available=units)
    accounts = [AccountFactory(balance=Decimal(rng.randrange(20, 300))) for _ in range(16)]
    accounts += [AccountFactory(card_status=CardStatus.DECLINED) for _ in range(2)]
    accounts += [AccountFactory(balance=Decimal(500), refund_gateway_down=True) for _ in range(2)]
    money_before = money_total()

    runs = []
    for number in range(RUNS):
        lines = [
            {"sku": sku, "quantity": rng.randint(1, 3), "unit_price": str(rng.choice([5, 12, 20]))}
            for sku in rng.sample(sorted(STOCK), k=rng.randint(1, 2))
        ]
        # The first runs, started while stock lasts, get to the shipping step: some with an address
        # nobody serves, two of those from accounts whose refunds cannot get through.
        address = UNSERVICEABLE if number < 7 or rng.random() < 0.05 else ADDRESS
        account = accounts[-1 - number % 2] if number in (5, 6) else rng.choice(accounts[:-2])
        payload = {
            "customer_email": f"buyer{number}@example.com",
            "account_id": account.pk,
            "lines": lines,
            "shipping_address": address,
        }
        runs.append(PlaceOrder.start(payload, idempotency_key=f"load-{number}"))

    wait_until(
        lambda: not SagaRun.objects.exclude(status__in=FINISHED_RUN_STATES).exists(),
        worker,
        f"{RUNS} runs to settle",
        timeout=900,
    )

    outcomes = Counter(SagaRun.objects.values_list("status", flat=True))
    assert sum(outcomes.values()) == RUNS
    assert set(outcomes) <= {RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.FAILED}
    reasons = Counter((run.error or {}).get("code") for run in SagaRun.objects.filter(status=RunStatus.COMPENSATED))
    # The random mix really exercised each kind of refusal.
    assert outcomes[RunStatus.COMPLETED] > 0
    assert outcomes[RunStatus.FAILED] == 2
    assert {"out_of_stock", "card_declined", "unserviceable_address"} <= set(reasons)

    # Stock: nothing created or lost, and what is reserved is what the live reservations hold.
    for sku, units in STOCK.items():
        item = StockItem.objects.get(sku=sku)
        assert item.available + item.reserved == units, sku
        held = sum(
            line.quantity
            for line in ReservationLine.objects.filter(item=item, reservation__status=ReservationStatus.RESERVED)
        )
        assert item.reserved == held, sku

    # Money: balances + captured - refunded is unchanged; net capture is what completed orders cost
    # plus what failed runs could not refund yet.
    assert money_total() == money_before
    completed_totals = sum(
        (
            Decimal(run.steps.get(name="create_order").output["total"])
            for run in SagaRun.objects.filter(status="completed")
        ),
        Decimal(0),
    )
    stuck_charges = sum(
        (
            Decimal(run.steps.get(name="charge_payment").output["amount"])
            for run in SagaRun.objects.filter(status=RunStatus.FAILED)
        ),
        Decimal(0),
    )
    captured = sum((p.amount for p in Payment.objects.all()), Decimal(0))
    refunded = sum((r.amount for r in Refund.objects.all()), Decimal(0))
    assert captured - refunded == completed_totals + stuck_charges

    # Runs that await a person are exactly those whose refund could not get through.
    for run in SagaRun.objects.filter(status=RunStatus.FAILED):
        assert run.steps.get(name="charge_payment").status == StepStatus.COMPENSATION_FAILED
        assert Account.objects.get(pk=run.payload["account_id"]).refund_gateway_down
    assert Order.objects.filter(status=OrderStatus.PLACED).count() == outcomes[RunStatus.COMPLETED]
