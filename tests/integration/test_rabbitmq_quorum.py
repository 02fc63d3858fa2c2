"""On RabbitMQ quorum queues (`make test-rabbitmq` runs this with CELERY_QUEUE_TYPE=quorum): the task queue is a
quorum queue with a delivery limit, and a retry's countdown waits in the broker, not in a worker process."""

from __future__ import annotations

import json
import os
import time

import pytest
from django.conf import settings

from sagaproject.celery import app as celery_app
from sagas.models import SagaEvent
from sagas.states import EventType, RunStatus
from tests.faults.brokers import rabbitmqctl
from tests.testapp.sagas import SlowRetry
from tests.worker import WorkerProcess, wait_for_run, wait_until

pytestmark = pytest.mark.skipif(
    getattr(settings, "CELERY_TASK_DEFAULT_QUEUE_TYPE", "classic") != "quorum",
    reason="needs RabbitMQ quorum queues: make test-rabbitmq runs it",
)


def _queues() -> dict[str, dict]:
    listed = json.loads(rabbitmqctl("list_queues", "-p", "/", "name", "type", "arguments", "--formatter", "json"))
    return {queue["name"]: queue for queue in listed}


def test_the_task_queue_is_a_quorum_queue_with_a_delivery_limit(worker: WorkerProcess) -> None:
    queue = _queues()[worker.queue]
    assert queue["type"] == "quorum"
    arguments = {name: value for name, _, value in queue["arguments"]}
    assert arguments["x-delivery-limit"] == int(os.environ.get("RABBITMQ_DELIVERY_LIMIT", "10"))


def test_a_retrys_countdown_waits_in_the_broker_not_in_a_worker(worker: WorkerProcess) -> None:
    run = SlowRetry.start({"fail_times": 1})
    failed = SagaEvent.objects.filter(run=run, type=EventType.STEP_ATTEMPT_FAILED)
    wait_until(failed.exists, worker, "the first attempt to fail")

    # For the three seconds of the countdown no worker process holds the retry (a classic queue's worker would
    # list it among its scheduled tasks): it waits in Celery's celery_delayed_* queues in RabbitMQ.
    inspect = celery_app.control.inspect(destination=[worker.hostname], timeout=2.0)
    looks = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        looks.append((inspect.scheduled() or {}).get(worker.hostname))
        time.sleep(0.2)
    assert looks
    assert all(look == [] for look in looks), looks

    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPLETED
    assert run.steps.get().attempts == 2
