"""A real Celery worker subprocess on the test database, and helpers that wait for its work."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from sagaproject import commands
from sagaproject.celery import app as celery_app
from sagas.models import SagaRun
from sagas.states import RunStatus

ROOT = Path(__file__).resolve().parent.parent
# States in which a run stays until a person acts: what a test waits for.
SETTLED = {RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.CANCELLED, RunStatus.FAILED}
# Generous limits: they only keep a broken run from hanging the suite, they measure nothing.
WORKER_START_TIMEOUT = 90
RUN_TIMEOUT = 120


class WorkerProcess:
    """A `celery worker` subprocess (prefork, 2 processes) consuming this session's queue."""

    def __init__(self, log_path: Path, concurrency: int = 2, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.queue = settings.CELERY_TASK_DEFAULT_QUEUE
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
        db = connection.settings_dict
        database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_DATABASE_URL": database_url,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            commands.celery_worker(queue=self.queue, hostname=self.hostname, concurrency=concurrency),
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if celery_app.control.ping(destination=[self.hostname], timeout=1.0):
                return
        raise RuntimeError(f"celery worker did not answer a ping in {WORKER_START_TIMEOUT}s:\n{self.log_tail()}")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the worker runs no task, holds none and none waits in its queue, twice in a row, so a
        test's database flush never races a task's transaction. (A run that settled still sends messages:
        the outbox relays its outcome to receivers, which run as tasks of their own.)"""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            quiet = quiet + 1 if self._idle() else 0
            time.sleep(0.1)

    def _idle(self) -> bool:
        inspect = celery_app.control.inspect(destination=[self.hostname], timeout=1.0)
        active, reserved = inspect.active(), inspect.reserved()
        if not active or active.get(self.hostname) or (reserved or {}).get(self.hostname):
            return False  # no answer (busy or gone), or busy
        with celery_app.connection_for_write() as conn:
            return not conn.default_channel.client.llen(self.queue)

    def log_tail(self, lines: int = 60) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pool_pids(self) -> list[int]:
        """The worker's pool processes (its children)."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def kill(self) -> None:
        """SIGKILL the whole worker, pool included: no warm shutdown, no acknowledgements, nothing restored."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        if self._log.closed:
            return
        if self.process.poll() is None:
            # Warm shutdown: the main process lets running tasks finish. (The pool processes reset SIGTERM to
            # die at once, so it goes to the main process only.)
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever is left of the group
        self.process.wait()
        self._log.close()


def wait_for_run(
    run: SagaRun | object, worker: WorkerProcess, statuses: set[str] = SETTLED, timeout: float = RUN_TIMEOUT
) -> SagaRun:
    """Poll the database until the run reaches one of ``statuses``; fail with the worker log if not."""
    run_id = run.pk if isinstance(run, SagaRun) else run
    deadline = time.monotonic() + timeout
    while True:
        current = SagaRun.objects.get(pk=run_id)
        if current.status in statuses:
            return current
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} is still {current.status} after {timeout}s.\n{worker.log_tail()}")
        time.sleep(0.05)


def wait_until(predicate: Callable[[], bool], worker: WorkerProcess, what: str, timeout: float = RUN_TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail with the worker log if it never is."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}.\n{worker.log_tail()}")
        time.sleep(0.05)
