"""Receivers under broker faults: a delivery the broker lost after it was published still reaches its receiver."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from sagas import recovery
from sagas.models import SagaOutbox, SagaReceipt
from sagas.states import RunStatus
from tests.faults.conftest import FaultLab
from tests.testapp.models import Effect
from tests.testapp.sagas import Diamond, Transfer
from tests.worker import wait_until

LOST = "deliveries-nobody-consumes"  # tests/settings.py routes the lost deliveries there


def test_a_delivery_the_broker_lost_after_its_publish_still_reaches_its_receiver(lab: FaultLab, bank: dict) -> None:
    lab.start_worker(SAGAS_FAULT_LOSE_DELIVERIES="tests.transfer_ledger")
    (run,) = lab.settle([Transfer.start({"from": "alice", "to": "bob", "amount": 250})])
    assert run.status == RunStatus.COMPLETED
    message = SagaOutbox.objects.get(run=run, topic="tests.transfer.completed")
    wait_until(lambda: lab.broker.queued(LOST) == 1, lab.workers[0], "the delivery to reach the broker")
    # The relay marks the message published once the broker took it (publish, then mark): wait for the mark too.
    wait_until(lambda: SagaOutbox.objects.get(pk=message.pk).published_at is not None, lab.workers[0], "the mark")
    assert lab.broker.queued(LOST) == 1  # published once, not again
    lab.broker.empty_queue(LOST)  # the broker loses it, as a Redis restarted without its data does
    receipt = SagaReceipt.objects.filter(receiver="tests.transfer_ledger", message_id=message.pk)

    def delivered() -> bool:
        recovery.reap()  # as beat would
        return receipt.exists()

    wait_until(delivered, lab.workers[0], "the lost delivery to reach its receiver", timeout=60)
    assert Effect.objects.get(key=f"transfer completed:{message.pk}").calls == 1  # and its effect, once
    message.refresh_from_db()
    assert message.redeliveries == 1
    assert "tests.transfer_ledger" in message.receivers

    def settled() -> bool:  # a tick after the grace finds every receipt: settled, and not published again
        recovery.reap()
        message.refresh_from_db()
        return message.settled_at is not None

    wait_until(settled, lab.workers[0], "the message to be settled", timeout=60)
    assert message.redeliveries == 1
    assert SagaReceipt.objects.filter(message_id=message.pk, receiver="tests.transfer_ledger").get().duplicates == 0


def test_a_delivery_waiting_behind_a_backlog_is_not_published_again(lab: FaultLab) -> None:
    if lab.broker.kind == "rabbitmq":
        pytest.skip("a RabbitMQ queue cannot be peeked: the reaper does not know how far behind it is")
    run = Diamond.start({})  # its "started" delivery waits in the queue behind the first step: no worker yet
    message = SagaOutbox.objects.get(run=run, topic="tests.diamond.started")
    grace = settings.SAGAS["OUTBOX_REDELIVER_AFTER"]
    waited_until = time.monotonic() + grace * 2
    while time.monotonic() < waited_until:  # past its grace, but the queue is as far behind as the message
        recovery.reap()
        time.sleep(0.5)
    message.refresh_from_db()
    assert (message.redeliveries, message.settled_at) == (0, None)

    worker = lab.start_worker()  # the queue catches up: the delivery reaches its receiver, once
    receipt = SagaReceipt.objects.filter(receiver="tests.diamond_ledger", message_id=message.pk)
    wait_until(receipt.exists, worker, "the delivery to reach its receiver")
    lab.settle([run])
    message.refresh_from_db()
    assert message.redeliveries == 0
    assert Effect.objects.get(key=f"{run.pk} tests.diamond.started").calls == 1
