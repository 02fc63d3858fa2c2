"""Faults a test can switch on in its worker processes through environment variables."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from celery.signals import task_postrun

KILL_AFTER = "SAGAS_FAULT_KILL_AFTER"  # a task name: kill the process once that task has returned
MARKER = "SAGAS_FAULT_MARKER"  # a file that says the kill happened (so the redelivery is not killed too)


def install() -> None:
    if os.environ.get(KILL_AFTER):
        task_postrun.connect(_kill_after_commit, weak=False)


def _kill_after_commit(sender: Any = None, **kwargs: Any) -> None:
    """The step has committed its outcome; the worker has not acknowledged the message yet."""
    if getattr(sender, "name", None) != os.environ[KILL_AFTER]:
        return
    marker = Path(os.environ[MARKER])
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
