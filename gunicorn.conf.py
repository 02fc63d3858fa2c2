"""gunicorn's settings file, read from the working directory (the image's /app): the multiprocess metrics clean-up."""

from __future__ import annotations

import os
from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """A gunicorn worker exited: prometheus-client's documented clean-up of its live gauge files."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
