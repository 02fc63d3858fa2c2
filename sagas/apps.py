"""App config: registers saga tasks, autodiscovers ``sagas.py`` and ``receivers.py`` modules, syncs definitions."""

from __future__ import annotations

import json
import os
from typing import Any

from celery.signals import task_unknown, worker_init, worker_process_shutdown
from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules

# Set by sagas.testing's SagaWorker for the worker it starts: {"alias": "name of the test database"}, read here;
# and "1" in the second, read by the runner, which then applies the failures run_saga planned.
DATABASES_VARIABLE = "SAGAS_TESTING_DATABASES"
FAULTS_VARIABLE = "SAGAS_TESTING_FAULTS"


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sagas import checks, tasks  # noqa: F401  registers checks, and saga tasks as saga classes appear

        if os.environ.get(DATABASES_VARIABLE):
            # A worker that sagas.testing started: it works on the test databases of the suite that started it.
            use_test_databases(json.loads(os.environ[DATABASES_VARIABLE]))

        # Web and worker processes both run this, so both know every saga of every installed app.
        autodiscover_modules("sagas")
        autodiscover_modules("receivers")  # @sagas.on receivers of saga messages
        post_migrate.connect(sync_definitions, sender=self)
        post_migrate.connect(install_reaper, sender=self)
        worker_init.connect(refuse_pools_without_time_limits, weak=False)
        worker_init.connect(serve_worker_metrics, weak=False)
        worker_process_shutdown.connect(forget_pool_process, weak=False)
        task_unknown.connect(park_runs_of_unknown_tasks, weak=False)


def use_test_databases(names: dict[str, str]) -> None:
    """Point each database alias at the test database of that name, before anything connects."""
    from django.conf import settings
    from django.db import connections

    for alias, name in names.items():
        if alias in settings.DATABASES:
            settings.DATABASES[alias]["NAME"] = name
            connections.settings[alias]["NAME"] = name


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


def install_reaper(**kwargs: Any) -> None:
    """After migrations, put the reaper on django-celery-beat's schedule (visible in the beat admin)."""
    from sagas.recovery import ensure_reaper_schedule

    ensure_reaper_schedule()


def park_runs_of_unknown_tasks(sender: Any = None, message: Any = None, name: str = "", **kwargs: Any) -> None:
    """A worker was sent a saga task it does not know (renamed or removed by a deploy). Celery discards the
    message; park its run with the reason, so a person sees it instead of a run waiting for nothing."""
    if not name.startswith("saga.") or message is None:
        return
    from sagas.services import run_park

    try:
        args = message.decode()[0]
        run_id, step = str(args[0]), str(args[1])
    except (ValueError, TypeError, IndexError, KeyError):
        return
    run_park(run_id=run_id, step=step, task_name=name)


def serve_worker_metrics(**kwargs: Any) -> None:
    """In a worker's main process: serve its counts on SAGAS["WORKER_METRICS_PORT"], when set."""
    from sagas import metrics
    from sagas.conf import sagas_settings

    if sagas_settings.WORKER_METRICS_PORT:
        metrics.start_worker_exporter(
            int(sagas_settings.WORKER_METRICS_PORT), str(sagas_settings.WORKER_METRICS_ADDRESS)
        )


def forget_pool_process(pid: int | None = None, **kwargs: Any) -> None:
    """A pool process is ending: prometheus-client's clean-up of its live gauge files (multiprocess mode)."""
    from sagas import metrics

    metrics.forget_process(pid or os.getpid())
