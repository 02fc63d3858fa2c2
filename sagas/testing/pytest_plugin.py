"""pytest fixtures for a project's saga tests; load with ``pytest_plugins = ["sagas.testing.pytest_plugin"]``
in the root conftest.py (needs pytest-django)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from celery import current_app
from django.core.exceptions import ImproperlyConfigured
from redis import RedisError

from sagas import leases
from sagas.testing import queues
from sagas.testing.runs import current_worker
from sagas.testing.worker import SagaWorker


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("sagas_celery_app", "the Celery app the test worker runs (celery -A ...)", default="")
    parser.addini("sagas_worker_concurrency", "pool processes of the test worker", default="2")


@pytest.fixture(scope="session")
def saga_worker_process(
    request: pytest.FixtureRequest,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SagaWorker]:
    """One real Celery worker (prefork) for the session, on the test database and the test's queues."""
    app = str(request.config.getini("sagas_celery_app")) or None
    concurrency = int(str(request.config.getini("sagas_worker_concurrency")))
    with django_db_blocker.unblock():
        worker = SagaWorker(
            tmp_path_factory.mktemp("saga-worker") / "worker.log", app=app, concurrency=concurrency
        )
    current_worker.append(worker)
    try:
        worker.wait_ready()
        yield worker
    finally:
        current_worker.remove(worker)
        worker.stop()
        with current_app.connection_for_write() as conn:
            queues.delete(conn, *worker.queues)


@pytest.fixture
def saga_worker(saga_worker_process: SagaWorker, transactional_db: None) -> Iterator[SagaWorker]:
    """The session's worker, for a test whose runs it executes: the test's writes are committed (so the worker
    sees them), and the test ends only once the worker is idle (so the flush never races a task)."""
    yield saga_worker_process
    saga_worker_process.wait_idle()


@pytest.fixture(autouse=True)
def _redis_kept_its_data() -> None:
    """Every test begins with a Redis that has kept the saga keys all along: a Redis flushed by an earlier test
    (or by a project's own fixture) would otherwise make the runs a test starts look begun before a loss of its
    data, whose steps are then settled as in doubt when the run stops (sagas.services.doubt). A test of such a
    loss deletes the mark (``leases.memory_key()``) itself."""
    with contextlib.suppress(ImproperlyConfigured, RedisError):
        leases.client().set(leases.memory_key(), "0")
