"""/metrics after a mix of PlaceOrder runs on the real worker: what the web and worker processes counted, summed."""

from __future__ import annotations

from decimal import Decimal

from django.test import Client

from participants.checkout.sagas import PlaceOrder
from participants.payments.models import CardStatus
from sagas.states import RunStatus
from tests.factories import AccountFactory
from tests.integration.conftest import Shop
from tests.metrics import scrape
from tests.worker import WorkerProcess, wait_for_run

SAGA = PlaceOrder.name
UNSERVICEABLE = {"country": "ZZ", "city": "Nowhere", "line1": "1 Road", "postal_code": "0000"}
# Every label the framework uses: bounded sets fixed by the code (a breaker's service and state included).
LABELS = {"saga", "step", "kind", "failure_class", "retried", "outcome", "action", "receiver", "le", "service", "state"}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset({"saga": SAGA, **values}.items())


def test_metrics_count_runs_steps_retries_and_give_ups_of_every_process(
    shop: Shop, worker: WorkerProcess, client: Client
) -> None:
    declined = AccountFactory(balance=Decimal("100.00"), card_status=CardStatus.DECLINED)
    gateway_down = AccountFactory(balance=Decimal("100.00"), refund_gateway_down=True)
    before = scrape(client)
    assert before.value("sagas_runs_awaiting_person", saga=SAGA) == 0

    runs = [
        PlaceOrder.start(shop.payload()),
        PlaceOrder.start(shop.payload()),
        # The card is declined: the order and the reservation are undone.
        PlaceOrder.start(shop.payload(account_id=declined.pk)),
        # Shipping refuses the address, and the refund gateway is down: the refund gives up.
        PlaceOrder.start(shop.payload(account_id=gateway_down.pk, shipping_address=UNSERVICEABLE)),
    ]
    settled = [wait_for_run(run, worker) for run in runs]
    assert [run.status for run in settled] == [
        RunStatus.COMPLETED,
        RunStatus.COMPLETED,
        RunStatus.COMPENSATED,
        RunStatus.FAILED,
    ]
    worker.wait_idle()  # the worker counts right after each commit: let its last task end
    after = scrape(client)

    assert after.changes(before, "sagas_runs_started_total") == {labels(): 4}
    assert after.changes(before, "sagas_runs_finished_total") == {
        labels(outcome="completed"): 2,
        labels(outcome="compensated"): 1,
        labels(outcome="failed"): 1,
    }
    # One observation per successful attempt: the declined charge and the refused shipment have none.
    assert after.changes(before, "sagas_step_duration_seconds_count") == {
        labels(step="create_order"): 4,
        labels(step="reserve_stock"): 4,
        labels(step="charge_payment"): 3,
        labels(step="schedule_shipment"): 2,
        labels(step="send_confirmation"): 2,
    }
    assert after.changes(before, "sagas_step_duration_seconds_sum")[labels(step="create_order")] > 0
    # A step's +Inf bucket holds every observation.
    assert after.changes(before, "sagas_step_duration_seconds_bucket")[labels(step="reserve_stock", le="+Inf")] == 4
    refunds = PlaceOrder.step("charge_payment").compensation_retry
    assert refunds is not None
    assert after.changes(before, "sagas_attempt_failures_total") == {
        labels(step="charge_payment", kind="action", failure_class="invalid_request", retried="false"): 1,
        labels(step="schedule_shipment", kind="action", failure_class="invalid_request", retried="false"): 1,
        # The refund gateway: every attempt but the last was retried, then the policy gave up.
        labels(step="charge_payment", kind="compensation", failure_class="transient", retried="true"): (
            refunds.max_attempts - 1
        ),
        labels(step="charge_payment", kind="compensation", failure_class="transient", retried="false"): 1,
    }
    assert after.changes(before, "sagas_compensation_failures_total") == {labels(step="charge_payment"): 1}
    assert after.changes(before, "sagas_redrives_total") == {}
    assert after.value("sagas_runs_awaiting_person", saga=SAGA) == 1

    run_ids = {str(run.pk) for run in runs}
    for (_, sample_labels), _value in after.samples.items():
        assert {name for name, _ in sample_labels} <= LABELS
        assert not any(run_id in value for _, value in sample_labels for run_id in run_ids)
    assert not any(run_id in after.text for run_id in run_ids)
