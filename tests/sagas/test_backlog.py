"""The queue's backlog: how long the oldest saga message has waited, and a reaper that waits as long."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from sagas import backlog, outbox, recovery
from sagas.breakers import redis_client
from sagas.models import SagaOutbox
from sagas.states import RunStatus
from tests import history
from tests.factories import SagaRunFactory
from tests.testapp.sagas import Diamond

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(settings):
    """A queue of this test's own for every saga task, removed afterwards."""
    name = f"backlog-{uuid.uuid4().hex[:8]}"
    settings.SAGAS = {**settings.SAGAS, "QUEUE": name}
    client = redis_client(str(current_app.conf.broker_url))
    yield name
    client.delete(name)


def _waiting(queue: str, *ages: float | None) -> None:
    """Messages in ``queue`` as kombu's Redis transport stores them, oldest first, published ``ages`` seconds
    ago (None: without the header)."""
    client = redis_client(str(current_app.conf.broker_url))
    for age in ages:
        headers = {} if age is None else {backlog.SENT_HEADER: time.time() - age}
        client.lpush(queue, json.dumps({"body": "", "headers": {"task": "x", **headers}, "properties": {}}))


def test_the_delay_is_the_age_of_the_oldest_waiting_message(queue: str) -> None:
    _waiting(queue, None, 30, 5)

    assert 29 <= backlog.queue_delay() <= 32  # the message without a time is passed over


def test_an_empty_queue_is_not_behind(queue: str) -> None:
    assert backlog.queue_delay() == 0.0


def test_saga_messages_are_published_with_their_time(queue: str, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        Diamond.start({})

    waiting = redis_client(str(current_app.conf.broker_url)).lrange(queue, 0, -1)
    tasks = sorted(json.loads(raw)["headers"]["task"] for raw in waiting)
    assert tasks == ["saga.tests.diamond.screen", "sagas.receiver.tests.diamond_ledger"]  # a step, a delivery
    assert all(abs(json.loads(raw)["headers"][backlog.SENT_HEADER] - time.time()) < 60 for raw in waiting)
    assert 0 <= backlog.queue_delay() < 60


def test_the_reaper_counts_a_run_stuck_only_once_the_queue_delay_has_passed_too(queue: str, settings) -> None:
    lease = settings.SAGAS["LEASE_SECONDS"]
    run = SagaRunFactory(status=RunStatus.PENDING)
    history.make_stale(run, timedelta(seconds=lease * 2))  # idle for two leases
    _waiting(queue, lease * 3)  # while the queue is three leases behind: its message may be in there

    assert recovery.reap() == []

    redis_client(str(current_app.conf.broker_url)).delete(queue)  # the queue caught up and the run did not move
    (outcome,) = recovery.reap()
    assert outcome.run_id == str(run.pk)


def test_a_delivery_waiting_behind_the_queue_is_not_published_again(
    queue: str, settings, django_capture_on_commit_callbacks
) -> None:
    settings.SAGAS = {**settings.SAGAS, "OUTBOX_REDELIVER_AFTER": 60}
    with django_capture_on_commit_callbacks(execute=True):
        run = Diamond.start({})
    client = redis_client(str(current_app.conf.broker_url))
    client.delete(queue)  # the run's messages; a backlog of others stands in front of its delivery
    published = timezone.now() - timedelta(seconds=120)  # two graces ago
    SagaOutbox.objects.filter(run=run).update(published_at=published)
    _waiting(queue, 180)  # the queue is three minutes behind: the delivery may still be in it

    assert outbox.redeliver_lost() == 0
    assert SagaOutbox.objects.get(run=run).redeliveries == 0

    client.delete(queue)  # the queue caught up, and the delivery brought no receipt: it was lost
    assert outbox.redeliver_lost() == 1
    assert SagaOutbox.objects.get(run=run).redeliveries == 1
