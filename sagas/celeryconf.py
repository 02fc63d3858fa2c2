"""The Celery app's configuration as the framework reads it, however the project configured Celery."""

from __future__ import annotations

from typing import Any


def celery_setting(name: str, default: Any = None) -> Any:
    """The current Celery app's setting ``name`` (its lowercase name, such as ``task_acks_late``), or
    ``default`` when it is unset (None). The project may configure Celery from Django settings with the ``CELERY``
    namespace, from a module, or with ``app.conf.update()``: the app's configuration has the answer in every case
    (Django settings are read through it live, so ``override_settings`` shows)."""
    from celery import current_app

    value = current_app.conf.get(name)
    return default if value is None else value
