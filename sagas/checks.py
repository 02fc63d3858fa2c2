"""System checks: settings the framework cannot work with, and worker pools that cannot enforce timeouts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import concurrency
from celery.concurrency.prefork import TaskPool as PreforkPool
from django.apps import AppConfig, apps
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, router, transaction

from sagas.breakers import breaker_settings, redis_url
from sagas.celeryconf import celery_setting, is_rabbitmq
from sagas.conf import sagas_settings
from sagas.engine import DEADLINE_CHECK_MAX_DELAY, message_limits
from sagas.models import SagaRun
from sagas.registry import all_sagas
from sagas.retry import RetryPolicy
from sagas.selectors import saga_versions
from sagas.tracing import INSTALLED as TRACING_INSTALLED

TIMEOUT_POOLS_HINT = (
    "Run the worker with the prefork pool (`celery worker -P prefork`, Celery's default): it is the pool "
    "that enforces soft and hard time limits, which Step(timeout=...) relies on."
)


def pool_enforces_time_limits(pool: Any) -> bool:
    """Whether a Celery pool (an alias like "threads", a path, or a class) enforces task time limits."""
    try:
        pool_cls = concurrency.get_implementation(pool) if isinstance(pool, str) else pool
    except ImportError:  # eventlet/gevent not installed: certainly not prefork
        return False
    return isinstance(pool_cls, type) and issubclass(pool_cls, PreforkPool)


def steps_with_timeouts() -> list[str]:
    names = [f"{saga.name}.{step.name}" for saga in all_sagas() for step in saga.steps if step.timeout is not None]
    return list(dict.fromkeys(names))  # once per step, however many versions declare it


def pool_error(pool: Any) -> str | None:
    """Why a worker with ``pool`` must not run these sagas, or None if it may."""
    timed = steps_with_timeouts()
    if not timed or pool_enforces_time_limits(pool):
        return None
    name = pool if isinstance(pool, str) else f"{pool.__module__}.{pool.__qualname__}"
    shown = ", ".join(timed[:5]) + (f" and {len(timed) - 5} more" if len(timed) > 5 else "")
    return f"The Celery worker pool {name!r} cannot enforce time limits, and these steps declare a timeout: {shown}."


@register("sagas")
def check_worker_pool(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    problem = pool_error(celery_setting("worker_pool", "prefork"))
    return [Error(problem, hint=TIMEOUT_POOLS_HINT, id="sagas.E001")] if problem else []


@register("sagas")
def check_sagas_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    try:
        policies = {
            "DEFAULT_RETRY": sagas_settings.default_retry,
            "DEFAULT_COMPENSATION_RETRY": sagas_settings.default_compensation_retry,
        }
    except (ImproperlyConfigured, TypeError) as exc:
        return [Error(f"SAGAS settings: {exc}", id="sagas.E002")]
    for key, policy in policies.items():
        problems = policy.problems() if isinstance(policy, RetryPolicy) else [f"{policy!r} is not a policy"]
        errors += [Error(f"SAGAS[{key!r}]: {problem}.", id="sagas.E002") for problem in problems]
    for service in ["", *sorted(sagas_settings.BREAKERS)]:
        try:
            breaker_settings(service)
        except (ImproperlyConfigured, TypeError) as exc:
            errors.append(Error(str(exc), id="sagas.E003"))
    wait = sagas_settings.CIRCUIT_WAIT
    if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
        errors.append(Error(f"SAGAS['CIRCUIT_WAIT'] must be a number of seconds >= 0, got {wait!r}.", id="sagas.E002"))
    if sagas_settings.WRITE_PATH not in ("auto", "portable"):
        errors.append(
            Error(
                f"SAGAS['WRITE_PATH'] must be 'auto' or 'portable', got {sagas_settings.WRITE_PATH!r}.",
                id="sagas.E002",
            )
        )
    if redis_url() is None:
        errors.append(
            Error(
                "Saga steps keep their leases and attempt counts in Redis, and no Redis is configured.",
                hint="Set SAGAS['REDIS_URL'] or REDIS_URL (a Redis broker is used when there is one).",
                id="sagas.E004",
            )
        )
    return errors


# What a broker's transport needs installed, by URL scheme: kombu imports the client library only when the first
# connection is made, so without this check a missing one shows as a message that was never published.
TRANSPORT_EXTRAS = {"redis": "celery[redis]", "rediss": "celery[redis]", "sentinel": "celery[redis]"}


def broker_transport_problem(broker_url: str) -> str | None:
    """Why the Celery broker at ``broker_url`` cannot be reached from this process's installed packages (its kombu
    transport or the client library it imports is missing), or None. Nothing is connected to."""
    from kombu.connection import Connection

    scheme = broker_url.split("://", 1)[0] if "://" in broker_url else (broker_url or "amqp")
    try:
        # Loads the transport class and the client library it imports; connects to nothing.
        Connection(broker_url or None).transport  # type: ignore[no-untyped-call]  # noqa: B018
    except ImportError as exc:
        return f"The Celery broker's transport ({scheme}://) cannot be loaded: {exc}."
    except (KeyError, ValueError) as exc:  # kombu knows no such transport
        return f"The Celery broker URL's scheme {scheme!r} names no transport kombu knows: {exc}."
    return None


@register("sagas")
def check_broker_transport(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    broker_url = str(celery_setting("broker_url") or "")
    problem = broker_transport_problem(broker_url)
    if problem is None:
        return []
    scheme = broker_url.split("://", 1)[0]
    extra = TRANSPORT_EXTRAS.get(scheme)
    hint = (
        f'pip install "{extra}" (django-celery-sagas depends on it; an install that left it out, or a constraints '
        "file, keeps the transport's client library away)."
        if extra
        else "Install the client library of the broker's transport (Celery's extras: celery[redis], celery[amqp], "
        "...), or fix CELERY_BROKER_URL."
    )
    return [Error(f"{problem} No saga message can be published.", hint=hint, id="sagas.E007")]


def longest_hard_limit() -> float:
    """The longest time a saga task may run before Celery kills it (0 when some task has no limit)."""

    default = celery_setting("task_time_limit", 0)
    limits = [float(default)]
    for saga in all_sagas():
        limits += [float(s.timeout) + float(sagas_settings.TIME_LIMIT_GRACE) for s in saga.steps if s.timeout]
        if saga.is_eager() and saga.steps:
            limits.append(float(message_limits(saga, saga.steps[0]).get("time_limit", 0)))
    return max(limits)


def longest_backoff() -> float:
    """The longest retry delay any policy can choose, and the longest wait of a deadline check."""
    policies = [sagas_settings.default_retry, sagas_settings.default_compensation_retry]
    policies += [p for saga in all_sagas() for step in saga.steps for p in (step.retry, step.compensation_retry) if p]
    return max([DEADLINE_CHECK_MAX_DELAY, *(float(p.backoff_max) for p in policies)])


# The apps the framework needs beside itself: the reaper's schedule is a django_celery_beat periodic task (stored
# by migrate), and the console links failed attempts to their django_celery_results rows.
REQUIRED_APPS = ("django_celery_beat", "django_celery_results")
DATABASE_SCHEDULERS = (
    "django_celery_beat.schedulers:DatabaseScheduler",
    "django_celery_beat.schedulers.DatabaseScheduler",
)


@register("sagas")
def check_required_apps(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    missing = [name for name in REQUIRED_APPS if not apps.is_installed(name)]
    if not missing:
        return []
    return [
        Error(
            f"The saga framework needs {', '.join(missing)} in INSTALLED_APPS: the reaper's periodic task lives in "
            "django_celery_beat's tables and failed attempts are linked to django_celery_results' rows.",
            hint=f"Add {', '.join(repr(name) for name in missing)} to INSTALLED_APPS, then run migrate.",
            id="sagas.E005",
        )
    ]


@register("sagas")
def check_tracing(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if not sagas_settings.TRACING or TRACING_INSTALLED:
        return []
    return [
        Error(
            "SAGAS['TRACING'] is on, but the OpenTelemetry API is not installed: runs would make no spans.",
            hint="pip install django-celery-sagas[tracing] (and an OpenTelemetry SDK with an exporter), or turn "
            "SAGAS['TRACING'] off.",
            id="sagas.E006",
        )
    ]


@register("sagas")
def check_beat_scheduler(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    scheduler = celery_setting("beat_scheduler", "celery.beat:PersistentScheduler")
    name = scheduler if isinstance(scheduler, str) else f"{scheduler.__module__}.{scheduler.__qualname__}"
    if name in DATABASE_SCHEDULERS:
        return []
    return [
        CheckWarning(
            f"Celery beat uses the scheduler {name!r}: the reaper is a periodic task stored in the database, which "
            "only django_celery_beat's DatabaseScheduler runs, so runs a crash left stuck would never be re-driven.",
            hint="Set CELERY_BEAT_SCHEDULER = 'django_celery_beat.schedulers:DatabaseScheduler' (or beat_scheduler "
            "in the Celery app's configuration), or run beat with -S django.",
            id="sagas.W007",
        )
    ]


@register("sagas")
def check_delivery_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """The Celery settings at-least-once delivery depends on, read from the Celery app's configuration (the
    messages name them as Django settings under the CELERY namespace, the usual set-up)."""
    warnings: list[CheckMessage] = []
    if not celery_setting("task_acks_late", False):
        warnings.append(
            CheckWarning(
                "CELERY_TASK_ACKS_LATE is off: a task is acknowledged before it runs, so a worker killed mid-task "
                "loses it.",
                hint="Set CELERY_TASK_ACKS_LATE = True. (Saga tasks ack late regardless; your other tasks do not.)",
                id="sagas.W001",
            )
        )
    prefetch = celery_setting("worker_prefetch_multiplier", 4)
    if prefetch != 1:
        warnings.append(
            CheckWarning(
                f"CELERY_WORKER_PREFETCH_MULTIPLIER is {prefetch}: each worker process reserves more messages than "
                "it runs, and with late acks a killed worker takes them all down with it until they are redelivered.",
                hint="Set CELERY_WORKER_PREFETCH_MULTIPLIER = 1.",
                id="sagas.W002",
            )
        )
    broker = str(celery_setting("broker_url", "") or "")
    if broker.startswith(("redis", "rediss", "sqs")):
        options = celery_setting("broker_transport_options", {}) or {}
        visibility = float(options.get("visibility_timeout", 3600))
        needed = longest_hard_limit() + longest_backoff()
        if visibility < needed:
            warnings.append(
                CheckWarning(
                    f"The broker's visibility_timeout ({visibility:g}s) is shorter than the longest step hard limit "
                    f"plus the longest retry delay ({needed:g}s): the broker will hand a task that is still running or "
                    "waiting out its countdown to a second worker.",
                    hint=f"Set CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'] to at least {needed:g}.",
                    id="sagas.W003",
                )
            )
    if is_rabbitmq(broker):
        warnings += _rabbitmq_warnings()
    serializers = {
        celery_setting("task_serializer", "json"),
        celery_setting("result_serializer", "json"),
        *(celery_setting("accept_content", ["json"]) or []),
    }
    if {"pickle", "application/x-python-serialize"} & serializers:
        warnings.append(
            CheckWarning(
                "A Celery serializer or accepted content type is pickle: anyone who can write to the broker can run "
                "code in your workers, and saga messages carry only ids anyway.",
                hint="Use JSON only: CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = 'json', "
                "CELERY_ACCEPT_CONTENT = ['json'].",
                id="sagas.W004",
            )
        )
    if not celery_setting("task_reject_on_worker_lost", False):
        warnings.append(
            CheckWarning(
                "CELERY_TASK_REJECT_ON_WORKER_LOST is off: a task whose worker process dies is marked failed instead "
                "of being delivered again.",
                hint="Set CELERY_TASK_REJECT_ON_WORKER_LOST = True (saga steps cap their attempts in the database).",
                id="sagas.W005",
            )
        )
    if not celery_setting("task_time_limit"):
        warnings.append(
            CheckWarning(
                "CELERY_TASK_TIME_LIMIT is not set: a step without its own timeout may hang forever, and the reaper "
                "cannot tell a lost attempt of it from a slow one.",
                hint="Set CELERY_TASK_TIME_LIMIT (seconds), or give every step a timeout.",
                id="sagas.W006",
            )
        )
    return warnings


# RabbitMQ's default consumer_timeout (rabbitmq.conf): a delivery unacknowledged this long closes its channel.
RABBITMQ_CONSUMER_TIMEOUT = 1800.0


def _rabbitmq_warnings() -> list[CheckMessage]:
    """What at-least-once delivery needs of a RabbitMQ broker (docs/rabbitmq.md)."""
    warnings: list[CheckMessage] = []
    options = celery_setting("broker_transport_options", {}) or {}
    if not options.get("confirm_publish"):
        warnings.append(
            CheckWarning(
                "The RabbitMQ broker is used without publisher confirms: a step's message that RabbitMQ did not "
                "take (a full disk, a failover) is lost without an error, and its run waits for the reaper.",
                hint="Set CELERY_BROKER_TRANSPORT_OPTIONS = {'confirm_publish': True}.",
                id="sagas.W009",
            )
        )
    quorum = celery_setting("task_default_queue_type", "classic") == "quorum"
    needed = longest_hard_limit() + (0.0 if quorum else longest_backoff())
    if needed > RABBITMQ_CONSUMER_TIMEOUT:
        warnings.append(
            CheckWarning(
                f"A saga task may stay unacknowledged for {needed:g}s (the longest step hard limit"
                f"{'' if quorum else ' plus the longest retry delay, which a classic queue waits out in the worker'}"
                f"), longer than RabbitMQ's default consumer_timeout ({RABBITMQ_CONSUMER_TIMEOUT:g}s): RabbitMQ would "
                "close the worker's channel and deliver the task again.",
                hint=f"Set consumer_timeout in rabbitmq.conf above {needed * 1000:.0f} (milliseconds), or shorten "
                "the limits; with quorum queues, countdowns wait in the broker instead.",
                id="sagas.W010",
            )
        )
    if quorum and celery_setting("task_default_exchange_type", "direct") == "direct":
        warnings.append(
            CheckWarning(
                "Quorum queues with a direct exchange: Celery cannot delay a countdown message in the broker, so "
                "every retry's countdown holds a worker process until it is due.",
                hint="Set CELERY_TASK_DEFAULT_EXCHANGE_TYPE = 'topic' (and "
                "CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = 'topic').",
                id="sagas.W011",
            )
        )
    return warnings


@register("sagas", Tags.database)
def check_undeclared_versions(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Unfinished runs of a saga version the code no longer declares: they fail as unknown when they move on. A
    database check: `manage.py migrate` and `manage.py check --database default` run it."""
    warnings: list[CheckMessage] = []
    for alias in databases or []:
        if not router.allow_migrate_model(alias, SagaRun):
            continue
        try:
            with transaction.atomic(using=alias):  # a failed read inside a caller's transaction rolls back alone
                orphaned = [found for found in saga_versions(SagaRun.objects.using(alias)) if found.orphaned]
        except DatabaseError:  # not migrated yet (migrate runs its checks first): no runs to speak of
            continue
        for found in orphaned:
            declared = sorted(saga.version for saga in all_sagas() if saga.name == found.saga)
            warnings.append(
                CheckWarning(
                    f"Saga {found.saga!r} version {found.version} has {found.unfinished} unfinished run(s) in "
                    f"database {alias!r}, and the code declares no such version (declared: "
                    f"{', '.join(map(str, declared)) or 'none'}): they fail as unknown when they move on.",
                    hint=f"Keep the class of version {found.version} (docs/versions.md) until `manage.py "
                    "saga_versions` shows none of its runs unfinished.",
                    id="sagas.W008",
                )
            )
    return warnings
