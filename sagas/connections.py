"""Database connections across saga tasks: kept between tasks, replaced when broken or old, and health-checked
only after the worker idled, not before every task."""

from __future__ import annotations

import time

from django.db import close_old_connections, connections

# A connection a task finished with this recently is not health-checked again before the next task: a worker
# under load would otherwise send one `SELECT 1` per task (CONN_HEALTH_CHECKS), a fifth of a step's statements.
RECENTLY_USED = 1.0  # seconds

_last_task_ended = float("-inf")


def before_task() -> None:
    """What Django does when a request starts, minus the health check of a connection just used."""
    close_old_connections()  # drops a connection that broke (errors_occurred) or outlived CONN_MAX_AGE
    if time.monotonic() - _last_task_ended < RECENTLY_USED:
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None:
                connection.health_check_done = True  # type: ignore[attr-defined]


def after_task() -> None:
    """What Django does when a request ends."""
    global _last_task_ended
    close_old_connections()
    _last_task_ended = time.monotonic()
