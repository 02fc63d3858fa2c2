"""The fault lab: a private broker (Redis, or a RabbitMQ vhost) that a test may restart or flush, and worker
processes it may kill."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from sagaproject.celery import app as celery_app
from sagas import recovery
from sagas.models import SagaRun
from sagas.states import FINISHED_RUN_STATES
from tests.faults.brokers import PrivateBroker, private_broker
from tests.testapp.models import Account
from tests.worker import WorkerProcess

SETTLE_TIMEOUT = 120  # generous: only keeps a broken recovery from hanging the suite


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@contextlib.contextmanager
def publishing_to(url: str) -> Iterator[None]:
    """Point this process's Celery app (what start() and the reaper publish with) at another broker."""
    conf = celery_app.conf
    # The app's own override, if any: restored as it was, so the URL is read from Django's settings again after.
    had_override, previous = "broker_url" in conf.changes, conf.changes.get("broker_url")
    previous_env = os.environ.get("CELERY_BROKER_URL")

    def reset_pools() -> None:
        # Connection and producer pools are built for the URL they first saw; so is the control mailbox's
        # (what ping and inspect publish with), reset the way Celery resets it after a fork.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        with contextlib.suppress(AttributeError):
            del celery_app.control.mailbox.producer_pool

    # Celery reads CELERY_BROKER_URL from the environment before its own setting.
    os.environ["CELERY_BROKER_URL"] = conf.broker_url = url
    reset_pools()
    try:
        yield
    finally:
        if had_override:
            conf.changes["broker_url"] = previous
        else:
            conf.changes.pop("broker_url", None)
        if previous_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = previous_env
        reset_pools()


class FaultLab:
    """Workers on a private broker, and the means to hurt them."""

    def __init__(self, tmp_path: Path, broker: PrivateBroker, *, eager: bool = False) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.eager = eager
        self.workers: list[WorkerProcess] = []

    def start_worker(self, concurrency: int = 2, **env: str) -> WorkerProcess:
        log = self.tmp_path / f"worker-{len(self.workers)}.log"
        lab_env = {"TEST_BROKER_URL": self.broker.url, "SAGAS_EAGER": "1" if self.eager else "0"}
        worker = WorkerProcess(log, concurrency=concurrency, env={**lab_env, **env})
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log_tail(40)}" for w in self.workers)

    def settle(self, runs: list[SagaRun], *, reap: bool = True, timeout: float = SETTLE_TIMEOUT) -> list[SagaRun]:
        """Run the reaper (as beat would) until every run has settled; the runs, fresh from the database."""
        ids = [run.pk for run in runs]
        deadline = time.monotonic() + timeout
        while True:
            if not SagaRun.objects.filter(pk__in=ids).exclude(status__in=FINISHED_RUN_STATES).exists():
                return list(SagaRun.objects.filter(pk__in=ids).order_by("created_at"))
            if time.monotonic() > deadline:
                stuck = SagaRun.objects.filter(pk__in=ids).exclude(status__in=FINISHED_RUN_STATES)
                pytest.fail(f"runs still not settled: {[(r.pk, r.status) for r in stuck]}\n{self.logs()}")
            if reap:
                recovery.reap()
            time.sleep(0.2)

    def close(self) -> None:
        for worker in self.workers:
            worker.begin_stop()  # side by side: each warm shutdown takes a second or two
        for worker in self.workers:
            # The test is over: a worker still busy with a poison message or reconnecting to a restarted broker is
            # killed after a few seconds rather than waited for (its writes are transactions: none is half done).
            worker.stop(timeout=5)
        self.broker.close()


# How the lab's sagas go from step to step: a chain of messages, or eager dispatch (sagas/eager.py, every sequence
# eager in the test process and the lab's workers). On the Redis broker every fault but the chaos soak runs both ways.
DISPATCHES = ("chained", "eager")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    on_redis = str(django_settings.CELERY_BROKER_URL).startswith("redis")
    if "lab" in metafunc.fixturenames and on_redis and not metafunc.module.__name__.endswith("test_chaos"):
        metafunc.parametrize("lab", DISPATCHES, indirect=True)


@pytest.fixture
def lab(request: pytest.FixtureRequest, transactional_db, tmp_path: Path, settings) -> Iterator[FaultLab]:
    """A fault lab for one test; the reaper's lease (and the outbox's graces) is short so recovery shows within
    seconds."""
    eager = getattr(request, "param", DISPATCHES[0]) == "eager"
    settings.SAGAS = {
        **settings.SAGAS,
        "LEASE_SECONDS": 2,
        "OUTBOX_RELAY_AFTER": 1,
        "OUTBOX_REDELIVER_AFTER": 3,
        "EAGER": eager,
    }
    # The kind of broker the session runs on (TEST_BROKER_URL): Redis by default, RabbitMQ in `make test-rabbitmq`.
    lab = FaultLab(tmp_path, private_broker(django_settings.CELERY_BROKER_URL, tmp_path), eager=eager)
    with publishing_to(lab.broker.url):
        try:
            yield lab
        finally:
            lab.close()


@pytest.fixture
def bank(transactional_db) -> dict[str, int]:
    """Two test-bank accounts; returns the balances they start with."""
    Account.objects.create(name="alice", balance=10_000)
    Account.objects.create(name="bob", balance=10_000)
    return {"alice": 10_000, "bob": 10_000}


def gate_name() -> str:
    return f"gate-{uuid.uuid4().hex[:8]}"
