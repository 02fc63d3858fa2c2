"""A real Celery worker subprocess for tests: prefork, on the test database, consuming the test's queues."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from celery import current_app
from django.db import connections

from sagas.conf import sagas_settings
from sagas.testing import queues
from sagas.testing.worker_main import DATABASES_VARIABLE

# Generous: only keeps a broken worker from hanging a suite, measures nothing.
START_TIMEOUT = 90.0



def test_queues() -> list[str]:
    """The queues a test's saga tasks go to: ``SAGAS["QUEUE"]`` when set, and Celery's default queue."""
    queues = [current_app.conf.task_default_queue]
    if sagas_settings.QUEUE:
        queues.append(str(sagas_settings.QUEUE))
    return list(dict.fromkeys(queues))


class SagaWorker:
    """``celery -A <app> worker -P prefork`` on the test databases, consuming ``queues``, logging to
    ``log_path``. Start it once the test databases exist (inside ``django_db_blocker.unblock()``)."""

    def __init__(
        self,
        log_path: Path,
        *,
        app: str | None = None,
        queues: list[str] | None = None,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        loglevel: str = "INFO",
    ) -> None:
        self.log_path = log_path
        self.app = app or current_app.main or "celery"
        self.queues = queues or test_queues()
        self.queue = self.queues[0]
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
        environment = {
            **os.environ,
            DATABASES_VARIABLE: json.dumps({alias: connections[alias].settings_dict["NAME"] for alias in connections}),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        argv = [
            sys.executable, "-m", "sagas.testing.worker_main", "-A", self.app, "worker", "-P", "prefork",
            "-c", str(concurrency), "-Q", ",".join(self.queues), "-n", self.hostname, "--without-mingle",
            "--without-gossip", "-l", loglevel,
        ]  # fmt: skip
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._stopping = False
        self.process = subprocess.Popen(
            argv,
            cwd=cwd or Path.cwd(),
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.process.returncode}:\n{self.log_tail()}")
            # A worker not consuming yet leaves the ping unanswered for the whole timeout: ask often, briefly.
            if current_app.control.ping(destination=[self.hostname], timeout=0.25):
                return
        raise RuntimeError(f"celery worker did not answer a ping in {timeout}s:\n{self.log_tail()}")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the worker runs no task, holds none and none waits in its queues, twice in a row, so a
        test's database flush never races a task's transaction. (A run that settled may still send messages:
        the outbox relays its outcome to receivers, which run as tasks of their own.)"""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            quiet = quiet + 1 if self._idle() else 0
            time.sleep(0.1)

    def _idle(self) -> bool:
        inspect = current_app.control.inspect(destination=[self.hostname], timeout=1.0)
        active, reserved = inspect.active(), inspect.reserved()
        if not active or active.get(self.hostname) or (reserved or {}).get(self.hostname):
            return False  # no answer (busy or gone), or busy
        with current_app.connection_for_write() as conn:
            return not any(queues.waiting(conn, queue) for queue in self.queues)

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

    def begin_stop(self) -> None:
        """Ask for a warm shutdown without waiting for it: several workers then stop side by side (``stop``)."""
        if not self._log.closed and self.process.poll() is None and not self._stopping:
            # The main process lets running tasks finish. (The pool processes reset SIGTERM to die at once,
            # so it goes to the main process only.) Once: a second SIGTERM could turn it into a cold shutdown.
            self.process.send_signal(signal.SIGTERM)
            self._stopping = True

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown, then whatever is left of its process group is killed (after ``timeout`` seconds at most)."""
        if self._log.closed:
            return
        if self.process.poll() is None:
            self.begin_stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()
