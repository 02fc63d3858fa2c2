"""System checks: pools that cannot enforce time limits, and SAGAS settings that cannot work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from sagas.checks import check_sagas_settings, check_worker_pool

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("pool", ["threads", "solo", "gevent", "celery.concurrency.thread:TaskPool"])
def test_pools_that_cannot_enforce_time_limits_are_errors(settings, pool: str) -> None:
    settings.CELERY_WORKER_POOL = pool
    (error,) = check_worker_pool(None)
    assert error.id == "sagas.E001"
    assert "orders.place_order.charge_payment" in error.msg  # a step with a timeout
    assert "prefork" in error.hint
    with pytest.raises(SystemCheckError, match=r"sagas\.E001"):
        call_command("check")


@pytest.mark.parametrize("pool", ["prefork", "processes"])
def test_prefork_passes(settings, pool: str) -> None:
    settings.CELERY_WORKER_POOL = pool
    assert check_worker_pool(None) == []


def test_a_worker_with_a_threads_pool_refuses_to_start() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "sagaproject", "worker", "-P", "threads", "-Q", "never-consumed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "sagas.E001" in result.stderr
    assert "orders.place_order.charge_payment" in result.stderr


@pytest.mark.parametrize(
    ("sagas_setting", "error_id", "words"),
    [
        ({"DEFAULT_RETRY": {"max_attempts": 0}}, "sagas.E002", "max_attempts must be an int >= 1"),
        ({"DEFAULT_COMPENSATION_RETRY": {"attempts": 2}}, "sagas.E002", "attempts"),
        ({"BREAKERS": {"payments": {"threshold": 2}}}, "sagas.E003", "Unknown circuit breaker setting(s) threshold"),
        ({"BREAKER": {"recovery_timeout": -1}}, "sagas.E003", "recovery_timeout must be a positive number"),
    ],
)
def test_unusable_sagas_settings_are_errors(settings, sagas_setting: dict, error_id: str, words: str) -> None:
    settings.SAGAS = {**settings.SAGAS, **sagas_setting}
    errors = check_sagas_settings(None)
    assert [e.id for e in errors] == [error_id]
    assert words in errors[0].msg


def test_the_project_settings_pass() -> None:
    assert check_sagas_settings(None) == []
    assert check_worker_pool(None) == []


@pytest.mark.parametrize(
    ("setting", "value", "warning"),
    [
        ("CELERY_TASK_ACKS_LATE", False, "sagas.W001"),
        ("CELERY_WORKER_PREFETCH_MULTIPLIER", 4, "sagas.W002"),
        ("CELERY_BROKER_TRANSPORT_OPTIONS", {"visibility_timeout": 60}, "sagas.W003"),
        ("CELERY_ACCEPT_CONTENT", ["json", "pickle"], "sagas.W004"),
        ("CELERY_TASK_SERIALIZER", "pickle", "sagas.W004"),
        ("CELERY_TASK_REJECT_ON_WORKER_LOST", False, "sagas.W005"),
        ("CELERY_TASK_TIME_LIMIT", None, "sagas.W006"),
    ],
)
def test_unsafe_delivery_settings_are_warned_about(settings, setting: str, value: object, warning: str) -> None:
    from sagas.checks import check_delivery_settings

    assert check_delivery_settings(None) == []
    setattr(settings, setting, value)
    assert [w.id for w in check_delivery_settings(None)] == [warning]


def test_the_visibility_warning_names_the_timeout_needed(settings) -> None:
    from sagas.checks import check_delivery_settings, longest_backoff, longest_hard_limit

    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 100}
    (warning,) = check_delivery_settings(None)
    needed = longest_hard_limit() + longest_backoff()
    assert needed >= float(settings.CELERY_TASK_TIME_LIMIT)
    assert f"at least {needed:g}" in warning.hint
