"""The health page's charts: pure functions from counts to SVG, read back as XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from sagas.admin.charts import activity_svg, duration_label, durations_svg, nice_ceiling, period_label, ticks
from sagas.health import DURATION_EDGES, Activity, DurationBin, Period

SVG = "{http://www.w3.org/2000/svg}"
HOUR = timedelta(hours=1)


def period(hour: int, started: int = 0, **outcomes: int) -> Period:
    counts = {"completed": 0, "compensated": 0, "failed": 0, "cancelled": 0, **outcomes}
    return Period(start=datetime(2026, 12, 2, hour, tzinfo=UTC), started=started, **counts)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed, or this raises


def titles(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}title")]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (11, 20), (51, 100), (101, 200)])
def test_the_count_axis_ends_at_a_round_number_above_the_highest_count(value: int, top: int) -> None:
    assert nice_ceiling(value) == top


def test_the_axis_marks_only_whole_counts() -> None:
    assert ticks(1) == [0, 1]
    assert ticks(10) == [0, 5, 10]
    assert ticks(5) == [0, 5]


def test_each_period_is_a_bar_split_by_outcome_with_its_counts_in_titles() -> None:
    chart = parse(
        activity_svg(
            Activity(
                period=HOUR,
                periods=[period(13), period(14, started=5, completed=2, compensated=1, failed=1), period(15, 1)],
            )
        )
    )
    assert chart.get("role") == "img"
    assert chart.get("aria-labelledby") == "activity-chart-title activity-chart-desc"
    assert chart.findtext(f"{SVG}title") == "Runs started per hour, by outcome"
    assert chart.findtext(f"{SVG}desc") == (
        "6 run(s) started in the window: 2 completed, 1 compensated, 1 failed, 0 cancelled, 2 in progress"
    )
    bars = chart.findall(f"{SVG}g[@class='period']")
    assert [bar.get("data-started") for bar in bars] == ["0", "5", "1"]
    busy = bars[1]
    assert busy.findtext(f"{SVG}title") == (
        "2026-12-02 14:00-15:00: 5 started, 2 completed, 1 compensated, 1 failed, 1 in progress"
    )
    segments = {s.get("data-series"): s for s in busy.findall(f"{SVG}rect")}
    assert {name: s.get("data-runs") for name, s in segments.items()} == {
        "completed": "2",
        "compensated": "1",
        "failed": "1",
        "going": "1",
    }
    assert segments["failed"].findtext(f"{SVG}title") == "2026-12-02 14:00-15:00: 1 failed"
    # Stacked bottom up, and the tallest bar reaches the top of the axis (5 runs, axis up to 5).
    assert float(segments["completed"].get("y", 0)) > float(segments["going"].get("y", 0))
    heights = sum(float(s.get("height", 0)) for s in segments.values())
    assert heights == pytest.approx(160, abs=0.5)
    assert not bars[0].findall(f"{SVG}rect")  # an hour without runs draws nothing
    assert {"completed", "compensated", "failed", "cancelled", "in progress"} <= {
        t.text for t in chart.findall(f"{SVG}text")
    }  # the legend


def test_a_window_without_runs_says_so() -> None:
    chart = parse(activity_svg(Activity(period=HOUR, periods=[period(9), period(10)])))
    assert "No run started in this window." in [t.text for t in chart.findall(f"{SVG}text")]


def test_days_are_labelled_as_days() -> None:
    day = Period(start=datetime(2026, 12, 2, tzinfo=UTC), started=3, completed=3, compensated=0, failed=0, cancelled=0)
    assert period_label(day, timedelta(days=1)) == "2026-12-02"
    chart = parse(activity_svg(Activity(period=timedelta(days=1), periods=[day])))
    assert chart.findtext(f"{SVG}title") == "Runs started per day, by outcome"
    assert "2026-12-02: 3 started, 3 completed" in titles(chart)


def test_durations_are_a_histogram_of_log_scale_bins() -> None:
    lows, highs = (0.0, *DURATION_EDGES), (*DURATION_EDGES, None)
    runs = {1.0: 4, 60.0: 1, 86400.0: 2}
    bins = [DurationBin(low, high, runs.get(low, 0)) for low, high in zip(lows, highs, strict=True)]
    chart = parse(durations_svg(bins))
    assert chart.findtext(f"{SVG}desc") == "7 finished run(s) by duration: 4 took 1s-2s, 1 took 1m-2m, 2 took ≥1d"
    groups = chart.findall(f"{SVG}g[@class='bucket']")
    assert [g.get("data-label") for g in groups][:3] == ["<1s", "1s-2s", "2s-5s"]
    assert [g.get("data-label") for g in groups][-3:] == ["1h-6h", "6h-1d", "≥1d"]
    drawn = {g.get("data-label"): g.find(f"{SVG}rect") for g in groups}
    assert [label for label, rect in drawn.items() if rect is not None] == ["1s-2s", "1m-2m", "≥1d"]
    assert "1s-2s: 4 run(s)" in titles(chart)


def test_no_finished_run_is_said_rather_than_drawn() -> None:
    chart = parse(durations_svg([DurationBin(0, 1, 0), DurationBin(1, None, 0)]))
    assert "No run finished in this window." in [t.text for t in chart.findall(f"{SVG}text")]
    assert chart.findtext(f"{SVG}desc") == "0 finished run(s) by duration: none"


@pytest.mark.parametrize(
    ("low", "high", "label"), [(0, 1, "<1s"), (30, 60, "30s-1m"), (1800, 3600, "30m-1h"), (86400, None, "≥1d")]
)
def test_bins_are_labelled_in_the_units_a_person_reads(low: float, high: float | None, label: str) -> None:
    assert duration_label(DurationBin(low, high, 0)) == label
