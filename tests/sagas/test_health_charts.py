"""What the health page's charts count: the window's runs per hour (or day) by status, and their durations."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from sagas.health import DURATION_EDGES, activity, durations, health_report
from sagas.models import SagaRun
from sagas.states import RunStatus
from tests.factories import SagaRunFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 14, 30, tzinfo=timezone.get_fixed_timezone(0))


def planted(status: str, created: datetime, took: timedelta | None = None) -> SagaRun:
    run = SagaRunFactory(status=status)
    finished = created + took if took is not None else None
    SagaRun.objects.filter(pk=run.pk).update(created_at=created, finished_at=finished)
    return run


def test_runs_are_counted_per_hour_of_the_window_by_status_in_one_query() -> None:
    planted(RunStatus.COMPLETED, NOW - timedelta(minutes=10), timedelta(seconds=3))
    planted(RunStatus.COMPLETED, NOW - timedelta(minutes=20), timedelta(seconds=4))
    planted(RunStatus.EXECUTING, NOW - timedelta(minutes=25))
    planted(RunStatus.FAILED, NOW - timedelta(hours=2), timedelta(minutes=3))
    planted(RunStatus.COMPENSATED, NOW - timedelta(hours=2, minutes=5), timedelta(seconds=40))
    planted(RunStatus.COMPLETED, NOW - timedelta(hours=7))  # before the window

    with CaptureQueriesContext(connection) as captured:
        counted = activity(since=NOW - timedelta(hours=6), now=NOW)
    assert len(captured) == 1
    assert counted.period == timedelta(hours=1)
    assert [p.start.hour for p in counted.periods] == [8, 9, 10, 11, 12, 13, 14]  # every hour, empty ones too
    last, two_ago = counted.periods[-1], counted.periods[-3]
    assert (last.started, last.completed, last.going) == (3, 2, 1)
    assert (two_ago.started, two_ago.failed, two_ago.compensated, two_ago.completed) == (2, 1, 1, 0)
    assert sum(p.started for p in counted.periods) == health_report(window_hours=6, now=NOW).started


def test_hours_follow_the_current_time_zone_even_a_half_hour_one() -> None:
    planted(RunStatus.COMPLETED, NOW - timedelta(minutes=10))  # 19:50 in Kolkata (UTC+5:30)
    with timezone.override("Asia/Kolkata"):
        counted = activity(since=NOW - timedelta(hours=2), now=NOW)
    busy = [p for p in counted.periods if p.started]
    assert [(p.start.hour, p.start.minute, p.started) for p in busy] == [(19, 0, 1)]
    assert counted.periods[-1].start.hour == 20  # 14:30 UTC is 20:00 there


def test_a_long_window_is_counted_per_day() -> None:
    planted(RunStatus.COMPLETED, NOW - timedelta(days=3))
    planted(RunStatus.COMPLETED, NOW - timedelta(days=3, hours=1))
    counted = activity(since=NOW - timedelta(days=30), now=NOW)
    assert counted.period == timedelta(days=1)
    assert len(counted.periods) == 31
    assert [(p.start.day, p.started) for p in counted.periods if p.started] == [(29, 2)]


def test_durations_of_finished_runs_fall_in_log_scale_bins_in_one_query() -> None:
    for took in (0.2, 1.5, 1.9, 45, 3 * 86400):
        planted(RunStatus.COMPLETED, NOW - timedelta(hours=1), timedelta(seconds=took))
    planted(RunStatus.EXECUTING, NOW - timedelta(hours=1))  # not finished: no duration
    planted(RunStatus.COMPLETED, NOW - timedelta(days=2), timedelta(seconds=1.5))  # before the window

    with CaptureQueriesContext(connection) as captured:
        bins = durations(since=NOW - timedelta(hours=24))
    assert len(captured) == 1
    assert len(bins) == len(DURATION_EDGES) + 1
    found = {(b.low, b.high): b.runs for b in bins if b.runs}
    assert found == {(0.0, 1): 1, (1, 2): 2, (30, 60): 1, (86400, None): 1}


def test_the_health_page_shows_both_charts_with_a_table_beside_each(admin_client) -> None:
    planted(RunStatus.COMPLETED, timezone.now() - timedelta(minutes=5), timedelta(seconds=3))
    planted(RunStatus.FAILED, timezone.now() - timedelta(minutes=6), timedelta(seconds=90))
    content = admin_client.get(reverse("admin:sagas_health")).content.decode()
    assert 'id="activity-chart"' in content
    assert 'id="durations-chart"' in content
    assert "Runs started per hour, by outcome" in content
    assert '<g class="bucket" data-label="2s-5s" data-runs="1">' in content
    assert '<g class="bucket" data-label="1m-2m" data-runs="1">' in content
    assert "<summary>As a table</summary>" in content
    assert admin_client.get(reverse("admin:sagas_health"), {"hours": "720"}).context["activity_unit"] == "day"
