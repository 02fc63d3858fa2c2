"""Structured logs: the framework's records come from per-module loggers under ``sagas`` and carry the saga, run,
step, attempt and Celery task as fields, which the example project's JSON format writes out."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import shared_task

from sagas import logs, services
from sagas.outcomes import Outcome
from sagas.states import RunStatus
from tests.factories import SagaRunFactory

ROOT = Path(__file__).resolve().parent.parent.parent


@shared_task(name="tests.logs.fields_in_a_task")
def fields_in_a_task(run_id: str) -> dict:
    return logs.fields(run_id=run_id, step="charge")


def test_fields_leave_out_what_the_record_does_not_concern() -> None:
    assert logs.fields() == {}
    assert logs.fields(run_id="r-1", step="", attempt=None, actor=None, service="payments") == {
        "run_id": "r-1",
        "service": "payments",
    }


@pytest.mark.django_db
def test_a_run_gives_its_saga_and_id() -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING)
    assert logs.fields(run, step="charge_payment", attempt=2) == {
        "saga": run.saga_name,
        "run_id": str(run.pk),
        "step": "charge_payment",
        "attempt": 2,
    }


def test_inside_a_celery_task_the_task_id_comes_along() -> None:
    # Pure logic (which task is current): run in process, no worker needed.
    assert fields_in_a_task.apply(args=["r-2"], task_id="task-7").get() == {
        "run_id": "r-2",
        "step": "charge",
        "task_id": "task-7",
    }


@pytest.mark.django_db
def test_a_dropped_message_is_logged_by_its_module_with_the_run_and_step(caplog) -> None:
    missing = uuid.uuid4()
    with caplog.at_level(logging.WARNING, logger="sagas"):
        claim = services.step_claim(run_id=missing, step="create_order", task_id="t-1")
    assert claim.outcome is Outcome.STOP
    (record,) = [r for r in caplog.records if "does not exist" in r.getMessage()]
    assert record.name == "sagas.services.steps"
    assert (record.run_id, record.step) == (str(missing), "create_order")


def test_the_example_projects_json_format_writes_the_fields() -> None:
    code = (
        "import django, logging; django.setup(); from sagas import logs; "
        "logging.getLogger('sagas.services.steps').warning('step failed', "
        "extra=logs.fields(run_id='r-3', step='charge', attempt=2))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sagaproject.settings",
        "DJANGO_DEBUG": "1",
        "SAGAS_LOG_FORMAT": "json",
    }
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("{")]
    record = json.loads(line)
    assert record["message"] == "step failed"
    assert (record["level"], record["logger"]) == ("WARNING", "sagas.services.steps")
    assert (record["run_id"], record["step"], record["attempt"]) == ("r-3", "charge", 2)


def test_an_unknown_log_format_is_refused() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "sagaproject.settings", "SAGAS_LOG_FORMAT": "xml"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "SAGAS_LOG_FORMAT must be 'plain' or 'json'" in done.stderr
