"""System checks: pools that cannot enforce time limits, and SAGAS settings that cannot work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from sagas.checks import check_broker_transport, check_sagas_settings, check_worker_pool

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


def test_a_redis_broker_whose_transport_cannot_import_is_an_error_of_manage_py_check() -> None:
    """As in a new venv with `celery` but not `celery[redis]`: kombu's Redis transport imports `packaging`, which only
    that extra installs. Here `packaging` is hidden from the checking process; the check names the extra."""
    hide = "import sys; sys.modules['packaging'] = None; from django.core.management import execute_from_command_line"
    result = subprocess.run(
        [sys.executable, "-c", f"{hide}; execute_from_command_line(['manage.py', 'check'])"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sagas.E007" in result.stderr
    assert "The Celery broker's transport (redis://) cannot be loaded" in result.stderr
    assert 'pip install "celery[redis]"' in result.stderr


@pytest.mark.parametrize(
    ("broker_url", "problem"),
    [
        ("redis://127.0.0.1:6379/14", None),
        ("amqp://guest:guest@127.0.0.1:5672//", None),
        ("nosuch://127.0.0.1", "names no transport kombu knows"),
    ],
)
def test_the_broker_transport_check_loads_the_transport_without_connecting(
    settings, broker_url: str, problem: str | None
) -> None:
    settings.CELERY_BROKER_URL = broker_url
    found = [m for m in check_broker_transport(None) if m.id == "sagas.E007"]
    assert [problem in m.msg for m in found] == ([True] if problem else [])


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


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def test_a_rabbitmq_broker_with_confirms_and_short_limits_passes(settings) -> None:
    from sagas.checks import check_delivery_settings

    settings.CELERY_BROKER_URL = RABBITMQ_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    assert check_delivery_settings(None) == []


def test_a_rabbitmq_broker_without_publisher_confirms_is_warned_about(settings) -> None:
    from sagas.checks import check_delivery_settings

    settings.CELERY_BROKER_URL = RABBITMQ_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    (warning,) = check_delivery_settings(None)
    assert warning.id == "sagas.W009"
    assert "'confirm_publish': True" in warning.hint


def test_limits_longer_than_rabbitmqs_consumer_timeout_are_warned_about(settings) -> None:
    from sagas.checks import check_delivery_settings

    settings.CELERY_BROKER_URL = RABBITMQ_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    settings.CELERY_TASK_TIME_LIMIT = 3600
    (warning,) = check_delivery_settings(None)
    assert warning.id == "sagas.W010"
    assert "consumer_timeout in rabbitmq.conf above" in warning.hint


def test_quorum_queues_on_a_direct_exchange_are_warned_about(settings) -> None:
    from sagas.checks import check_delivery_settings

    settings.CELERY_BROKER_URL = RABBITMQ_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    settings.CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    assert [w.id for w in check_delivery_settings(None)] == ["sagas.W011"]
    settings.CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    assert check_delivery_settings(None) == []


@pytest.fixture
def celery_configured_without_django_settings(settings):
    """A project whose Celery app is configured in code (``app.conf.update``), with no CELERY_* Django setting."""
    from celery import Celery, current_app

    previous = current_app._get_current_object()
    for name in [n for n in dir(settings._wrapped) if n.startswith("CELERY_")] + ["REDIS_URL"]:
        delattr(settings, name)
    settings.SAGAS = {**settings.SAGAS, "REDIS_URL": None}
    app = Celery("configured-in-code", set_as_current=True)
    app.conf.update(
        broker_url="redis://127.0.0.1:6379/14",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=300,
        broker_transport_options={"visibility_timeout": 3600},
        beat_scheduler="django_celery_beat.schedulers:DatabaseScheduler",
    )
    yield app
    previous.set_current()


def test_checks_and_the_redis_url_read_the_celery_apps_own_configuration(
    celery_configured_without_django_settings,
) -> None:
    from sagas.breakers import redis_url
    from sagas.checks import check_beat_scheduler, check_delivery_settings

    app = celery_configured_without_django_settings
    assert redis_url() == "redis://127.0.0.1:6379/14"  # the app's broker: no AttributeError without CELERY_*
    assert check_delivery_settings(None) == []
    assert check_beat_scheduler(None) == []
    assert check_sagas_settings(None) == []  # Redis found through the app
    app.conf.task_acks_late = False
    assert [w.id for w in check_delivery_settings(None)] == ["sagas.W001"]


def test_a_missing_required_app_is_an_error_before_migrate_crashes(settings) -> None:
    from sagas.checks import check_required_apps

    assert check_required_apps(None) == []
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "django_celery_beat"]
    (error,) = check_required_apps(None)
    assert error.id == "sagas.E005"
    assert "django_celery_beat" in error.msg
    assert "'django_celery_beat'" in error.hint


def test_a_beat_that_does_not_read_the_database_schedule_is_warned_about(settings) -> None:
    from sagas.checks import check_beat_scheduler

    assert check_beat_scheduler(None) == []
    settings.CELERY_BEAT_SCHEDULER = "celery.beat:PersistentScheduler"
    (warning,) = check_beat_scheduler(None)
    assert warning.id == "sagas.W007"
    assert "reaper" in warning.msg
