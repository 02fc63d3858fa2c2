"""A real Celery worker subprocess on the test database, and helpers that wait for its work."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from sagas.models import SagaRun
from sagas.states import FINISHED_RUN_STATES
from sagas.testing import runs
from sagas.testing.worker import SagaWorker

ROOT = Path(__file__).resolve().parent.parent
# Generous: it only keeps a broken run from hanging the suite, it measures nothing.
RUN_TIMEOUT = 120


class WorkerProcess(SagaWorker):
    """sagas.testing's worker with this suite's settings: the project's Celery app, tests.settings, the
    session's queue (or ``queue``: a test's own, with the session's key prefix); ``env`` adds or overrides
    variables (the fault tests point one at another broker)."""

    def __init__(
        self, log_path: Path, concurrency: int = 2, env: dict[str, str] | None = None, queue: str | None = None
    ) -> None:
        db = connection.settings_dict
        super().__init__(
            log_path,
            app="sagaproject",
            queues=[queue or settings.CELERY_TASK_DEFAULT_QUEUE],
            concurrency=concurrency,
            cwd=ROOT,
            env={
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "TEST_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
                "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
                **(env or {}),
            },
        )


def wait_for_run(
    run: SagaRun | object,
    worker: SagaWorker,
    statuses: frozenset[str] = FINISHED_RUN_STATES,
    timeout: float = RUN_TIMEOUT,
) -> SagaRun:
    """Poll the database until the run reaches one of ``statuses``; fail with the worker log if not."""
    run_id = run.pk if isinstance(run, SagaRun) else run
    return runs.wait_for_run(run_id, statuses=statuses, timeout=timeout, worker=worker)


def wait_until(predicate: Callable[[], bool], worker: SagaWorker, what: str, timeout: float = RUN_TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail with the worker log if it never is."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}.\n{worker.log_tail()}")
        time.sleep(0.05)
