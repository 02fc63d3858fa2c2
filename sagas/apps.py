"""App config: registers saga tasks, autodiscovers ``sagas.py`` modules and syncs definitions on migrate."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init
from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sagas import checks, tasks  # noqa: F401  registers checks, and saga tasks as saga classes appear

        # Web and worker processes both run this, so both know every saga of every installed app.
        autodiscover_modules("sagas")
        post_migrate.connect(sync_definitions, sender=self)
        worker_init.connect(refuse_pools_without_time_limits, weak=False)


def refuse_pools_without_time_limits(sender: Any = None, **kwargs: Any) -> None:
    """A worker whose pool cannot enforce Step(timeout=...) does not start (system check sagas.E001)."""
    from sagas.checks import TIMEOUT_POOLS_HINT, pool_error

    problem = pool_error(getattr(sender, "pool_cls", "prefork"))
    if problem:
        # SystemExit, not an exception: Celery logs and swallows exceptions raised by signal handlers.
        raise SystemExit(f"sagas.E001: {problem} {TIMEOUT_POOLS_HINT}")


def sync_definitions(*, using: str = "default", **kwargs: Any) -> None:
    """Store (or check) the definition row of every registered saga after migrations."""
    from sagas import services
    from sagas.registry import all_sagas

    for saga in all_sagas():
        services.definition_sync(saga=saga)
