"""Choreography on a real worker: lifecycle messages from the outbox reach receivers once each, a failing
receiver is retried on its own and never touches the saga, and PlaceOrder feeds loyalty and analytics."""

from __future__ import annotations

from decimal import Decimal

from django.test import Client

from participants.analytics.models import SagaOutcomeCount
from participants.checkout.sagas import PlaceOrder
from participants.loyalty.models import LoyaltyAccount
from sagas.models import SagaEvent, SagaOutbox, SagaReceipt, SagaRun
from sagas.states import EventType, RunStatus
from tests.integration.conftest import Shop
from tests.metrics import scrape
from tests.testapp.models import Effect, Switch
from tests.testapp.sagas import Diamond, Flaky
from tests.worker import WorkerProcess, wait_for_run, wait_until


def test_every_lifecycle_message_reaches_its_receiver_once(worker: WorkerProcess) -> None:
    run = wait_for_run(Diamond.start({}), worker)
    assert run.status == RunStatus.COMPLETED
    expected = {f"tests.diamond.step.{name}.completed" for name in ("screen", "north", "east", "west", "join", "last")}
    expected |= {"tests.diamond.started", "tests.diamond.completed"}

    def received() -> set[str]:
        keys = Effect.objects.filter(key__startswith=f"{run.pk} ").values_list("key", flat=True)
        return {key.rsplit(" ", 1)[-1] for key in keys}

    wait_until(lambda: received() == expected, worker, "every message to be received")
    assert set(Effect.objects.filter(key__startswith=f"{run.pk} ").values_list("calls", flat=True)) == {1}
    messages = SagaOutbox.objects.filter(run=run)
    assert {m.topic for m in messages} == expected
    assert all(m.published_at is not None for m in messages)
    completed = messages.get(topic="tests.diamond.completed").message
    assert completed["status"] == RunStatus.COMPLETED
    assert completed["correlation_id"] == run.correlation_id
    assert set(completed["results"]) == {"screen", "north", "east", "west", "join", "last"}


def test_a_failing_receiver_is_retried_and_never_changes_the_saga(worker: WorkerProcess, client: Client) -> None:
    before = scrape(client)
    Switch.objects.create(name="ledger-down", on=True)
    run = wait_for_run(Flaky.start({}), worker)
    assert run.status == RunStatus.COMPLETED
    message = SagaOutbox.objects.get(run=run, topic="tests.flaky.completed")
    wait_until(lambda: SagaOutbox.objects.get(pk=message.pk).published_at is not None, worker, "the relay")

    # The receiver keeps failing: its effect rolls back each time, and the run is none the wiser.
    wait_until(lambda: "the ledger is down" in worker.log_tail(200), worker, "the receiver to fail")
    assert not SagaReceipt.objects.filter(receiver="tests.moody_ledger", message_id=message.pk).exists()
    assert not Effect.objects.filter(key=f"flaky completed:{message.pk}").exists()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.events.order_by("-seq").first().type == EventType.SAGA_COMPLETED

    Switch.objects.filter(name="ledger-down").update(on=False)
    wait_until(
        lambda: SagaReceipt.objects.filter(receiver="tests.moody_ledger", message_id=message.pk).exists(),
        worker,
        "the retry to succeed",
    )
    assert Effect.objects.get(key=f"flaky completed:{message.pk}").calls == 1
    assert SagaRun.objects.get(pk=run.pk).lock_version == run.lock_version
    deliveries = scrape(client).changes(before, "sagas_receiver_deliveries_total")
    assert deliveries[frozenset({("receiver", "tests.moody_ledger"), ("outcome", "received")})] == 1
    assert deliveries[frozenset({("receiver", "tests.moody_ledger"), ("outcome", "retried")})] >= 1


def test_a_completed_order_earns_points_and_is_counted_by_choreography(shop: Shop, worker: WorkerProcess) -> None:
    LoyaltyAccount.objects.create(customer_email="ada@example.com", service_down=True)
    run = wait_for_run(PlaceOrder.start(shop.payload()), worker)
    assert run.status == RunStatus.COMPLETED

    counted = SagaOutcomeCount.objects.filter(saga_name=PlaceOrder.name, outcome="completed")
    wait_until(lambda: counted.exists(), worker, "analytics to count the run")
    assert counted.get().count == 1
    # Loyalty is down for this customer: the order is done all the same, and the award waits.
    account = LoyaltyAccount.objects.get(customer_email="ada@example.com")
    assert account.points == 0
    assert SagaRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED

    LoyaltyAccount.objects.filter(pk=account.pk).update(service_down=False)
    total = Decimal(run.steps.get(name="create_order").output["total"])
    wait_until(
        lambda: LoyaltyAccount.objects.get(pk=account.pk).points == int(total), worker, "the points to be awarded"
    )
    assert not SagaEvent.objects.filter(run=run, seq__gt=run.lock_version).exists()
