"""Fixtures: one real Celery worker per session, and the marker that says a test uses it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from sagaproject.celery import app as celery_app
from sagas.testing import queues
from sagas.testing.worker import SagaWorker
from tests import rebuild_check

pytest_plugins = ["sagas.testing.pytest_plugin"]

if TYPE_CHECKING:
    from tests.integration.conftest import Shop

UNCONSUMED_QUEUE = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-nobody"


# Lanes of their own under pytest-xdist (`--dist loadgroup`, as `make test` runs it): the tests that kill workers or
# restart servers run one at a time, each kind in its own xdist worker, beside the others; the longest go first.
LANES = {"tests/faults/test_chaos_infra.py": "soak", "tests/faults/test_chaos.py": "chaos", "tests/faults/": "faults"}


def lane(item: pytest.Item) -> str | None:
    path = str(item.path.relative_to(item.config.rootpath))
    name = next((name for prefix, name in LANES.items() if path.startswith(prefix)), None)
    eager = getattr(item, "callspec", None) is not None and item.callspec.params.get("lab") == "eager"
    return f"{name}-eager" if name and eager else name  # the eager run of the faults is a lane beside theirs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "saga_worker_process" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.worker)
        if (name := lane(item)) is not None:
            item.add_marker(pytest.mark.xdist_group(name))
    # The lanes first (a stable sort: each keeps its own order), so the longest work is not what the run waits for.
    order = ["soak", "faults-eager", "faults", "chaos"]
    items.sort(key=lambda item: order.index(name) if (name := lane(item)) in order else len(order))


# The session's real worker is sagas.testing's (`saga_worker_process`, the app named in pyproject.toml's
# sagas_celery_app), as a project's own suite would use it.


@pytest.fixture
def worker(saga_worker: SagaWorker) -> SagaWorker:
    """The session's worker, for a test whose writes the worker must see (committed transactions).

    Every such test starts with closed circuit breakers: one test's failures must not slow the next.
    """
    reset_breakers()
    return saga_worker


DATABASE_FIXTURES = {"db", "transactional_db", "live_server"}


@pytest.fixture(autouse=True)
def _every_run_rebuilds_from_its_events(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the database, and before its data is flushed or rolled back, every run the
    framework wrote must fold from its events to exactly its stored rows (sagas.eventlog)."""
    if not (request.node.get_closest_marker("django_db") or DATABASE_FIXTURES & set(request.fixturenames)):
        yield
        return
    # Set up the database first, so it is torn down after this check.
    request.getfixturevalue("_django_db_helper")
    yield
    django_db_blocker = request.getfixturevalue("django_db_blocker")
    with django_db_blocker.unblock():
        if "saga_worker_process" in request.fixturenames:
            request.getfixturevalue("saga_worker_process").wait_idle()
        rebuild_check.TALLY.tests += 1
        mismatches = rebuild_check.check_every_run()
    assert not mismatches, "stored rows differ from the runs rebuilt from their events:\n" + "\n".join(mismatches)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session-end check: database tests ran, so framework runs must have been rebuilt and compared."""
    tally = rebuild_check.TALLY
    worker_tests_ran = tally.tests and any("worker" in item.keywords for item in session.items)
    if worker_tests_ran and not tally.runs and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nevent log check: tests with a worker ran, yet no framework-written run was rebuilt")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    tally = rebuild_check.TALLY
    if tally.tests:
        terminalreporter.write_line(
            f"event log: {tally.runs} runs ({tally.events} events, {tally.snapshots} snapshots) written by the "
            f"framework in {tally.tests} tests rebuilt from their events equal to their rows; "
            f"{tally.planted} runs planted by tests skipped; {len(tally.mismatches)} mismatches"
        )


@pytest.fixture(autouse=True)
def _messages_without_a_worker_go_nowhere(request: pytest.FixtureRequest, settings) -> None:
    """A test without a worker of its own may still publish (a reaper re-drive, say). Those messages go to a
    queue nobody consumes: the session's worker must not run them while the test's data is being flushed."""
    if {"saga_worker_process", "lab"} & set(request.fixturenames):
        return
    settings.SAGAS = {**settings.SAGAS, "QUEUE": UNCONSUMED_QUEUE}


@pytest.fixture(scope="session", autouse=True)
def _drop_the_unconsumed_queue() -> Iterator[None]:
    yield
    with celery_app.connection_for_write() as conn:
        queues.delete(conn, UNCONSUMED_QUEUE)


@pytest.fixture(scope="session", autouse=True)
def _forget_the_sessions_redis_keys() -> Iterator[None]:
    """At the end of the session, drop every Redis key under its own prefix (breakers, the steps' leases and
    attempt counts of runs a test left unfinished), so sessions leave nothing behind in a shared Redis."""
    yield
    from sagas import breakers
    from sagas.conf import sagas_settings

    url = breakers.redis_url()
    if url is None:
        return
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{sagas_settings.KEY_PREFIX}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def reset_breakers() -> None:
    from sagas import breakers
    from sagas.conf import sagas_settings

    url = breakers.redis_url()
    assert url is not None
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{sagas_settings.KEY_PREFIX}:breaker:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def open_breaker(service: str, *, ago: float = 0.0) -> Any:
    """Open ``service``'s breaker by hand, as if it had opened ``ago`` seconds ago (on Redis's clock, which the
    breaker's scripts read); returns the breaker."""
    from sagas import breakers

    breaker = breakers.for_service(service)
    assert breaker is not None
    seconds, micros = breaker._client.time()
    breaker._client.hset(breaker.keys[0], mapping={"state": "open", "opened_at": seconds + micros / 1e6 - ago})
    return breaker


RunConcurrently = Callable[..., list[Any]]


@pytest.fixture
def run_concurrently() -> RunConcurrently:
    """Run each callable in its own thread (so its own connection), all released at once.

    Returns each call's result, or the exception it raised, in the order given.
    """

    def run(*calls: Callable[[], Any]) -> list[Any]:
        barrier = threading.Barrier(len(calls))
        results: list[Any] = [None] * len(calls)

        def work(index: int, call: Callable[[], Any]) -> None:
            try:
                barrier.wait(timeout=30)
                results[index] = call()
            except Exception as exc:
                results[index] = exc
            finally:
                # Each thread opened its own connection; left open, it blocks dropping the test database.
                connection.close()

        threads = [threading.Thread(target=work, args=(i, call)) for i, call in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "a concurrent call hung (deadlock?)"
        return results

    return run


@pytest.fixture
def shop(worker: SagaWorker) -> Shop:
    """A small shop (stock, an account, a delivery zone) for PlaceOrder runs on the real worker."""
    from tests.integration.conftest import Shop

    return Shop()
