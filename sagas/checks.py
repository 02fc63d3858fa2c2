"""System checks: settings the framework cannot work with, and worker pools that cannot enforce timeouts."""

from __future__ import annotations

from typing import Any

from celery import concurrency
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

TIMEOUT_POOLS_HINT = (
    "Run the worker with the prefork pool (`celery worker -P prefork`, Celery's default): it is the pool "
    "that enforces soft and hard time limits, which Step(timeout=...) relies on."
)


def pool_enforces_time_limits(pool: Any) -> bool:
    """Whether a Celery pool (an alias like "threads", a path, or a class) enforces task time limits."""
    from celery.concurrency.prefork import TaskPool as PreforkPool

    try:
        pool_cls = concurrency.get_implementation(pool) if isinstance(pool, str) else pool
    except ImportError:  # eventlet/gevent not installed: certainly not prefork
        return False
    return isinstance(pool_cls, type) and issubclass(pool_cls, PreforkPool)


def steps_with_timeouts() -> list[str]:
    from sagas.registry import all_sagas

    return [f"{saga.name}.{step.name}" for saga in all_sagas() for step in saga.steps if step.timeout is not None]


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
    problem = pool_error(getattr(settings, "CELERY_WORKER_POOL", None) or "prefork")
    return [Error(problem, hint=TIMEOUT_POOLS_HINT, id="sagas.E001")] if problem else []


@register("sagas")
def check_sagas_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    from sagas.breakers import breaker_settings
    from sagas.conf import sagas_settings
    from sagas.retry import RetryPolicy

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
    return errors
