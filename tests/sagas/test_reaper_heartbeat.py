"""When the periodic reaper last ran: recorded by each pass of the ``sagas.reap`` task, shown on the health page,
in ``saga_health`` and as a metric, and alerted on when it stops running (database and Redis, no worker)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from sagas import leases, recovery, tasks
from sagas.health import health_report
from sagas.states import RunStatus
from tests.factories import SagaRunFactory
from tests.metrics import scrape

pytestmark = pytest.mark.django_db

GAUGE = "sagas_reaper_last_run_timestamp_seconds"


@pytest.fixture(autouse=True)
def no_reaper_pass_yet() -> Iterator[None]:
    key = recovery._last_run_key()
    leases.client().delete(key)
    yield
    leases.client().delete(key)


def ran_seconds_ago(seconds: float) -> None:
    leases.client().set(recovery._last_run_key(), f"{time.time() - seconds:.3f}")


def test_each_pass_of_the_periodic_task_records_when_it_ran() -> None:
    assert recovery.last_reaped() is None
    before = time.time()
    assert tasks.reap() == 0  # nothing stuck: the pass still counts
    last = recovery.last_reaped()
    assert last is not None
    # Stored in milliseconds, rounded: it may be up to half a millisecond past the clock read after it.
    assert before - 1 <= last.timestamp() <= time.time() + 0.001


def test_a_reaper_that_never_ran_is_alerted_on_once_a_run_could_be_stuck() -> None:
    SagaRunFactory(status=RunStatus.COMPLETED)
    assert health_report().alerts == []  # nothing active: nothing for it to do yet
    SagaRunFactory(status=RunStatus.EXECUTING)
    report = health_report()
    assert report.reaper_last_run is None
    (alert,) = report.alerts
    assert alert.startswith("The reaper has never run")
    assert "celery beat" in alert


def test_a_reaper_that_missed_three_intervals_is_alerted_on(settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "REAPER_INTERVAL": 15}
    ran_seconds_ago(40)  # two intervals late: not yet
    assert health_report().alerts == []
    ran_seconds_ago(50)
    report = health_report()
    assert report.reaper_seconds_ago is not None
    assert report.reaper_seconds_ago >= 50
    (alert,) = report.alerts
    assert alert.startswith("The reaper last ran")


def reaper_figure(admin_client: Client) -> str:
    content = admin_client.get(reverse("admin:sagas_health")).content.decode()
    return content.split('<div id="reaper">')[1].split("</div>")[0]


def test_the_health_page_and_saga_health_show_when_it_last_ran(admin_client: Client, capsys) -> None:
    assert "<b>never</b>" in reaper_figure(admin_client)
    call_command("saga_health")
    assert "Reaper last ran: never" in capsys.readouterr().out

    ran_seconds_ago(5)
    assert re.search(r"<b><span title=\"[^\"]+\">\d+\.\d s ago</span></b>", reaper_figure(admin_client))
    call_command("saga_health")
    assert re.search(r"Reaper last ran: \S+ ago", capsys.readouterr().out)
    call_command("saga_health", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["reaper_last_run"] is not None
    assert data["reaper_seconds_ago"] >= 5


def test_the_last_pass_is_a_gauge_read_at_each_scrape(client: Client) -> None:
    assert GAUGE not in scrape(client).text  # absent until the reaper first runs
    tasks.reap()
    value = scrape(client).value(GAUGE)
    assert time.time() - 60 < value <= time.time()
