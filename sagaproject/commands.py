"""Command lines of the project's Celery processes, shared by the demo, the tests and the chaos soak."""

from __future__ import annotations

import sys


def celery_worker(*, queue: str, hostname: str, concurrency: int = 2, loglevel: str = "INFO") -> list[str]:
    """A prefork worker (the pool that enforces time limits) on one queue, without mingle and gossip, which
    only slow down a start and add broadcast traffic."""
    return [
        sys.executable, "-m", "celery", "-A", "sagaproject", "worker", "-P", "prefork", "-c", str(concurrency),
        "-Q", queue, "-n", hostname, "--without-mingle", "--without-gossip", "-l", loglevel,
    ]  # fmt: skip


def celery_beat(*, schedule_file: str, loglevel: str = "INFO") -> list[str]:
    """Celery beat; the settings choose django-celery-beat's database scheduler, so the file goes unused."""
    return [sys.executable, "-m", "celery", "-A", "sagaproject", "beat", "-l", loglevel, "-s", schedule_file]
