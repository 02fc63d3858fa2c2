"""App config: registers saga tasks, autodiscovers ``sagas.py`` and ``receivers.py`` modules, syncs definitions."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import task_unknown, worker_init, worker_process_shutdown
from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules

# Django imports this module before the models are ready, so every import of the framework's own modules below is
# in a function that runs once they are (docs/internals.md#layers).


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks, and the Celery tasks of sagas and receivers as they are declared.
        from sagas import checks, delivery, tasks, tracing  # noqa: F401
        from sagas.definitions import install_run_starter
        from sagas.services import run_start

        install_run_starter(run_start)
        # Web and worker processes both run this, so both know every saga of every installed app.
        autodiscover_modules("sagas")
        autodiscover_modules("receivers")  # @sagas.on receivers of saga messages
        post_migrate.connect(sync_definitions, sender=self)
        post_migrate.connect(install_reaper, sender=self)
        post_migrate.connect(install_purge, sender=self)
        worker_init.connect(refuse_pools_without_time_limits, weak=False)
        worker_init.connect(serve_worker_metrics, weak=False)
        worker_process_shutdown.connect(forget_pool_process, weak=False)
        task_unknown.connect(park_runs_of_unknown_tasks, weak=False)
        # With SAGAS["TRACING"] on, Celery's publishing and task signals carry the runs' trace context from the
        # first task on (docs/tracing.md); with it off this connects nothing.
        tracing.enabled()


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


def install_purge(**kwargs: Any) -> None:
    """After migrations, put the purge on django-celery-beat's schedule if SAGAS["PURGE_AFTER"] is set (or take
    it off if it no longer is)."""
    from sagas.retention import ensure_purge_schedule

    ensure_purge_schedule()


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
