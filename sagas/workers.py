"""Which worker process runs an attempt: its Celery node name (or host name) and pid, recorded on the attempt."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from celery import current_task


@dataclass(frozen=True, slots=True)
class WorkerId:
    """A worker process: the Celery node name (``celery@host``, what Flower and ``celery inspect`` call it) or,
    outside a Celery task, the host name; and the process id."""

    hostname: str
    pid: int

    def event_data(self) -> dict[str, Any]:
        """The keys an attempt's start event carries."""
        return {"worker": self.hostname, "pid": self.pid}

    def step_fields(self) -> dict[str, Any]:
        """The step row's columns of its latest attempt."""
        return {"worker": self.hostname, "worker_pid": self.pid}

    def __str__(self) -> str:
        return f"{self.hostname} pid {self.pid}"


def current() -> WorkerId:
    """This process, named as the worker whose task it runs (the task's ``request.hostname``)."""
    request = getattr(current_task, "request", None) if current_task else None
    return WorkerId(getattr(request, "hostname", None) or socket.gethostname(), os.getpid())
