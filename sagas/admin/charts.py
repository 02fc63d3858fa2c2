"""The health page's charts, drawn on the server as SVG: runs started per period by outcome, and run durations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from sagas.admin.common import RUN_COLOURS
from sagas.health import Activity, DurationBin, Period

WIDTH, LEFT, RIGHT = 760, 44, 12
TOP, PLOT_H, BOTTOM = 30, 160, 34  # the legend above the plot, the period labels below
HEIGHT = TOP + PLOT_H + BOTTOM
PLOT_W = WIDTH - LEFT - RIGHT
MAX_LABELS = 8  # period labels under the activity chart, at most

# The stacked segments of a period's bar, bottom first: what the runs started in it have become.
SERIES: tuple[tuple[str, str, str], ...] = (
    ("completed", "completed", RUN_COLOURS["completed"]),
    ("compensated", "compensated", RUN_COLOURS["compensated"]),
    ("failed", "failed", RUN_COLOURS["failed"]),
    ("cancelled", "cancelled", RUN_COLOURS["cancelled"]),
    ("going", "in progress", RUN_COLOURS["executing"]),
)
DURATION_FILL = "#93c5fd"


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at least ``value``: the top of a count axis."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(int(step * magnitude) for step in (1, 2, 5, 10) if step * magnitude >= value)


def ticks(top: int) -> list[int]:
    """The counts the axis marks: 0, the top, and its half when that is a whole number."""
    return [0, top // 2, top] if top % 2 == 0 and top > 1 else [0, top]


def period_label(period: Period, length: timedelta) -> str:
    """A period as a person reads it: "2026-12-02 14:00-15:00", or "2026-12-02" for a day."""
    if length >= timedelta(days=1):
        return f"{period.start:%Y-%m-%d}"
    return f"{period.start:%Y-%m-%d %H:%M}-{period.start + length:%H:%M}"


def _tick_label(period: Period, length: timedelta, first: bool) -> str:
    if length >= timedelta(days=1):
        return f"{period.start:%m-%d}"
    if first or (period.start.hour == 0 and period.start.minute == 0):
        return f"{period.start:%m-%d %H:%M}"
    return f"{period.start:%H:%M}"


def span(seconds: float) -> str:
    """1s, 30s, 2m, 6h, 1d: a bucket edge."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def duration_label(bucket: DurationBin) -> str:
    """A bin as a person reads it: "<1s", "1s-2s", "≥1d"."""
    if bucket.high is None:
        return f"≥{span(bucket.low)}"
    if bucket.low == 0:
        return f"<{span(bucket.high)}"
    return f"{span(bucket.low)}-{span(bucket.high)}"


def _svg_open(name: str, title: str, description: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="saga-chart" id="{name}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{name}-title {name}-desc">',
        f'<title id="{name}-title">{escape(title)}</title><desc id="{name}-desc">{escape(description)}</desc>',
    ]


def _y_axis(top: int) -> list[str]:
    parts = []
    for count in ticks(top):
        y = _y(count, top)
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#4b5563">{count}</text>'
        )
    return parts


def _y(count: float, top: int) -> float:
    return TOP + PLOT_H - count / top * PLOT_H


def _empty(text: str) -> str:
    return (
        f'<text x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H / 2}" font-size="12" text-anchor="middle" '
        f'fill="#6b7280">{escape(text)}</text>'
    )


def activity_svg(activity: Activity) -> SafeString:
    """Stacked bars: one per period, as tall as the runs started in it, split by what they have become."""
    periods, length = activity.periods, activity.period
    unit = "day" if length >= timedelta(days=1) else "hour"
    totals = {key: sum(getattr(p, key) for p in periods) for key, _, _ in SERIES}
    started = sum(p.started for p in periods)
    description = f"{started} run(s) started in the window: " + ", ".join(
        f"{totals[key]} {label}" for key, label, _ in SERIES
    )
    parts = _svg_open("activity-chart", f"Runs started per {unit}, by outcome", description)
    x = LEFT
    for _, label, fill in SERIES:  # the legend
        parts.append(
            f'<rect x="{x}" y="6" width="10" height="10" fill="{fill}" stroke="#6b7280" stroke-width="0.5"/>'
            f'<text x="{x + 14}" y="15" font-size="11" fill="#111827">{escape(label)}</text>'
        )
        x += 24 + 7 * len(label)
    top = nice_ceiling(max((p.started for p in periods), default=0))
    parts += _y_axis(top)
    slot = PLOT_W / max(1, len(periods))
    width = slot * 0.8 if slot >= 4 else slot
    every = max(1, math.ceil(len(periods) / MAX_LABELS))
    for index, period in enumerate(periods):
        left = LEFT + index * slot + (slot - width) / 2
        when = period_label(period, length)
        summary = f"{when}: {period.started} started" + "".join(
            f", {getattr(period, key)} {label}" for key, label, _ in SERIES if getattr(period, key)
        )
        parts.append(
            f'<g class="period" data-start="{period.start.isoformat()}" data-started="{period.started}">'
            f"<title>{escape(summary)}</title>"
        )
        base = 0
        for key, label, fill in SERIES:
            count = getattr(period, key)
            if not count:
                continue
            y, height = _y(base + count, top), count / top * PLOT_H
            parts.append(
                f'<rect class="segment" data-series="{key}" data-runs="{count}" x="{left:.1f}" y="{y:.1f}" '
                f'width="{width:.1f}" height="{height:.1f}" fill="{fill}" stroke="#6b7280" stroke-width="0.5">'
                f"<title>{escape(f'{when}: {count} {label}')}</title></rect>"
            )
            base += count
        parts.append("</g>")
        if index % every == 0:
            parts.append(
                f'<text x="{left:.1f}" y="{TOP + PLOT_H + 14}" font-size="10" fill="#4b5563">'
                f"{escape(_tick_label(period, length, first=index == 0))}</text>"
            )
    if not started:
        parts.append(_empty("No run started in this window."))
    parts.append("</svg>")
    # Safe: every text interpolated above went through escape(); the rest are numbers and our own constants.
    return mark_safe("".join(parts))


def durations_svg(bins: Sequence[DurationBin]) -> SafeString:
    """A histogram of the window's finished runs by duration, in bins about evenly spaced on a log scale."""
    finished = sum(b.runs for b in bins)
    description = f"{finished} finished run(s) by duration: " + (
        ", ".join(f"{b.runs} took {duration_label(b)}" for b in bins if b.runs) or "none"
    )
    parts = _svg_open("durations-chart", "Finished runs by duration (log scale)", description)
    parts.append('<text x="0" y="15" font-size="11" fill="#111827">runs, by time from start to end</text>')
    top = nice_ceiling(max((b.runs for b in bins), default=0))
    parts += _y_axis(top)
    slot = PLOT_W / max(1, len(bins))
    width = slot * 0.8
    for index, bucket in enumerate(bins):
        left = LEFT + index * slot + (slot - width) / 2
        label = duration_label(bucket)
        parts.append(f'<g class="bucket" data-label="{escape(label)}" data-runs="{bucket.runs}">')
        if bucket.runs:
            y, height = _y(bucket.runs, top), bucket.runs / top * PLOT_H
            parts.append(
                f'<rect x="{left:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{DURATION_FILL}" '
                f'stroke="#3b82f6" stroke-width="0.5"><title>{escape(f"{label}: {bucket.runs} run(s)")}</title></rect>'
            )
        parts.append(
            f'<text x="{left + width / 2:.1f}" y="{TOP + PLOT_H + 14}" font-size="10" text-anchor="middle" '
            f'fill="#4b5563">{escape(label)}</text></g>'
        )
    if not finished:
        parts.append(_empty("No run finished in this window."))
    parts.append("</svg>")
    # Safe: every text interpolated above went through escape(); the rest are numbers and our own constants.
    return mark_safe("".join(parts))
