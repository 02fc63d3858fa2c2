"""The health report: how sagas fared over a window, who waits for a person, what is stuck, what to alert on."""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Case, Count, F, IntegerField, Value, When
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from sagas import breakers, recovery
from sagas.conf import sagas_settings
from sagas.models import SagaRun, SagaStepRun
from sagas.selectors import awaiting_person, circuit_call, humanize_seconds, stuck, waiting_on_circuit
from sagas.states import ACTIVE_RUN_STATES, CIRCUIT_REFUSAL, RunStatus, StepStatus

logger = logging.getLogger(__name__)

MAX_WINDOW_HOURS = 24 * 366  # the widest window a report covers: a year
FINISHED = (RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.FAILED, RunStatus.CANCELLED)
# Over a window longer than this, runs are counted per day rather than per hour: a year is 366 bars, not 8,784.
DAILY_AFTER_HOURS = 24 * 14
# The upper edges (seconds) of the duration histogram's bins, about evenly spaced on a log scale; a last bin
# takes the runs that took a day or more.
DURATION_EDGES: tuple[float, ...] = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 6 * 3600, 24 * 3600)


@dataclass
class HealthReport:
    window_hours: float
    since: datetime
    started: int
    completed: int
    compensated: int
    failed: int
    cancelled: int
    finished: int
    success_rate: float | None  # completed / finished
    compensation_rate: float | None  # compensated / finished
    failure_rate: float | None  # failed / finished (a person must act)
    p50_seconds: float | None  # start to end, finished runs
    p95_seconds: float | None
    awaiting_person: int  # failed runs, whenever they started
    stuck: int  # no progress for the lease
    oldest_stuck_seconds: float | None
    failures_by_step: list[dict[str, Any]] = field(default_factory=list)
    failures_by_class: dict[str, int] = field(default_factory=dict)
    breakers: list[dict[str, Any]] = field(default_factory=list)
    # Steps whose action or compensation waits for an open circuit breaker, longest wait first.
    circuit_waits: list[dict[str, Any]] = field(default_factory=list)
    reaper_last_run: datetime | None = None  # the periodic reaper's last pass (None: never, or Redis unreadable)
    reaper_seconds_ago: float | None = None
    alerts: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat()
        data["reaper_last_run"] = self.reaper_last_run.isoformat() if self.reaper_last_run else None
        return data


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(fraction * 100) - 1], 3)


def health_report(*, window_hours: float | None = None, now: datetime | None = None) -> HealthReport:
    """Figures for the runs started in the last ``window_hours`` (default SAGAS["HEALTH_WINDOW_HOURS"])."""
    now = now or timezone.now()
    hours = float(window_hours if window_hours is not None else sagas_settings.HEALTH_WINDOW_HOURS)
    since = now - timedelta(hours=hours)
    in_window = SagaRun.objects.filter(created_at__gte=since)
    by_status = dict(in_window.values_list("status").annotate(n=Count("pk")))
    finished = sum(by_status.get(status, 0) for status in FINISHED)
    spans = in_window.filter(status__in=FINISHED, finished_at__isnull=False).values_list("created_at", "finished_at")
    durations = sorted((end - start).total_seconds() for start, end in spans if end is not None)
    stuck_runs = stuck(now=now)
    oldest = stuck_runs.order_by("updated_at").values_list("updated_at", flat=True).first()
    report = HealthReport(
        window_hours=hours,
        since=since,
        started=sum(by_status.values()),
        completed=by_status.get(RunStatus.COMPLETED, 0),
        compensated=by_status.get(RunStatus.COMPENSATED, 0),
        failed=by_status.get(RunStatus.FAILED, 0),
        cancelled=by_status.get(RunStatus.CANCELLED, 0),
        finished=finished,
        success_rate=_rate(by_status.get(RunStatus.COMPLETED, 0), finished),
        compensation_rate=_rate(by_status.get(RunStatus.COMPENSATED, 0), finished),
        failure_rate=_rate(by_status.get(RunStatus.FAILED, 0), finished),
        p50_seconds=_percentile(durations, 0.50),
        p95_seconds=_percentile(durations, 0.95),
        awaiting_person=awaiting_person().count(),
        stuck=stuck_runs.count(),
        oldest_stuck_seconds=round((now - oldest).total_seconds(), 1) if oldest else None,
    )
    _failures(report, since)
    report.breakers = _breakers()
    report.circuit_waits = _circuit_waits(now)
    reaper_known = _reaper(report, now)
    report.alerts = _alerts(report, now)
    if reaper_known:
        report.alerts += _reaper_alerts(report)
    return report


def _failures(report: HealthReport, since: datetime) -> None:
    """Steps that failed (or whose compensation did) by saga and step, and every failed attempt by class."""
    failed_steps = (
        SagaStepRun.objects.filter(
            run__created_at__gte=since, status__in=[StepStatus.FAILED, StepStatus.COMPENSATION_FAILED]
        )
        .values_list("run__saga_name", "name", "status")
        .annotate(n=Count("pk"))
        .order_by("-n", "run__saga_name", "name")
    )
    report.failures_by_step = [
        {"saga": saga, "step": step, "status": status, "count": n} for saga, step, status, n in failed_steps
    ]
    classes: Counter[str] = Counter()
    attempts = SagaStepRun.objects.filter(run__created_at__gte=since).exclude(failures=[])
    for failures in attempts.values_list("failures", flat=True).iterator():
        # A call the breaker refused was not an attempt (see circuit_waits).
        classes.update(f.get("class", "unknown") for f in failures if f.get("kind") != CIRCUIT_REFUSAL)
    report.failures_by_class = dict(classes.most_common())


def _circuit_waits(now: datetime, limit: int = 100) -> list[dict[str, Any]]:
    waits = []
    for step in waiting_on_circuit().select_related("run").order_by("circuit_waiting_since")[:limit]:
        since = step.circuit_waiting_since
        assert since is not None  # the selector's filter
        waits.append(
            {
                "run": str(step.run_id),
                "saga": step.run.saga_name,
                "step": step.name,
                "call": circuit_call(step.status),
                "since": since.isoformat(),
                "seconds": round((now - since).total_seconds(), 1),
                "refusals": step.circuit_refusals,
            }
        )
    return waits


def _breakers() -> list[dict[str, Any]]:
    try:
        return breakers.statuses()
    except Exception as exc:  # the report must render even while Redis is down
        return [{"service": "?", "state": f"unknown ({exc.__class__.__name__}: {exc})"}]


def _reaper(report: HealthReport, now: datetime) -> bool:
    """Fill in when the periodic reaper last ran; False when Redis, where that is kept, could not be read."""
    try:
        report.reaper_last_run = recovery.last_reaped()
    except (redis.RedisError, ImproperlyConfigured):
        logger.exception("health: could not read when the reaper last ran")
        return False
    if report.reaper_last_run is not None:
        report.reaper_seconds_ago = round((now - report.reaper_last_run).total_seconds(), 1)
    return True


def _reaper_alerts(report: HealthReport) -> list[str]:
    """The reaper is late when it missed three passes; one that never ran matters once a run could be stuck."""
    late_after = recovery.reaper_late_after()
    every = f"it should run every {humanize_seconds(float(sagas_settings.REAPER_INTERVAL))}"
    hint = "is celery beat running, with django_celery_beat's DatabaseScheduler?"
    if report.reaper_seconds_ago is None:
        if SagaRun.objects.filter(status__in=ACTIVE_RUN_STATES).exists():
            return [f"The reaper has never run ({every}): runs a crash leaves stuck are not re-driven; {hint}"]
        return []
    if report.reaper_seconds_ago > late_after:
        return [
            f"The reaper last ran {humanize_seconds(report.reaper_seconds_ago)} ago ({every}): runs a crash "
            f"leaves stuck are not re-driven; {hint}"
        ]
    return []


def _alerts(report: HealthReport, now: datetime) -> list[str]:
    alerts = []
    failure_limit = float(sagas_settings.ALERT_FAILURE_RATE)
    compensation_limit = float(sagas_settings.ALERT_COMPENSATION_RATE)
    stuck_limit = float(sagas_settings.ALERT_STUCK_SECONDS)
    if report.failure_rate is not None and report.failure_rate > failure_limit:
        alerts.append(
            f"Failure rate {report.failure_rate:.1%} is above {failure_limit:.0%}: {report.failed} of "
            f"{report.finished} runs are waiting for a person."
        )
    if report.compensation_rate is not None and report.compensation_rate > compensation_limit:
        alerts.append(
            f"Compensation rate {report.compensation_rate:.1%} is above {compensation_limit:.0%}: "
            f"{report.compensated} of {report.finished} runs were undone."
        )
    long_stuck = stuck(now=now).filter(updated_at__lt=now - timedelta(seconds=stuck_limit)).count()
    if long_stuck:
        oldest = humanize_seconds(report.oldest_stuck_seconds or 0)
        alerts.append(
            f"{long_stuck} run(s) made no progress for more than {humanize_seconds(stuck_limit)} (oldest: {oldest})."
        )
    alerts += [
        f"Circuit breaker of {b['service']} is {b['state']}." for b in report.breakers if b.get("state") != "closed"
    ]
    return alerts


@dataclass(frozen=True)
class Period:
    """The runs started in one hour (or day) of the window, by how they stand now."""

    start: datetime  # in the current time zone
    started: int
    completed: int
    compensated: int
    failed: int
    cancelled: int

    @property
    def going(self) -> int:
        """Still pending, executing or compensating."""
        return self.started - self.completed - self.compensated - self.failed - self.cancelled


@dataclass(frozen=True)
class Activity:
    """The window's runs per period: every period of the window, those without runs too."""

    period: timedelta  # an hour, or a day over a window longer than DAILY_AFTER_HOURS
    periods: list[Period]


def activity(*, since: datetime, now: datetime) -> Activity:
    """The runs started since ``since`` (the report's runs), per hour or day, by status: one grouped query."""
    daily = now - since > timedelta(hours=DAILY_AFTER_HOURS)
    truncate = TruncDay if daily else TruncHour
    rows = (
        SagaRun.objects.filter(created_at__gte=since)
        .annotate(period=truncate("created_at"))
        .values_list("period", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts: dict[datetime, Counter[str]] = {}
    for start, status, n in rows:
        counts.setdefault(start, Counter())[status] += n
    periods = []
    for start in _period_starts(since, now, daily=daily):
        found = counts.get(start, Counter())
        periods.append(
            Period(
                start=start,
                started=sum(found.values()),
                completed=found[RunStatus.COMPLETED],
                compensated=found[RunStatus.COMPENSATED],
                failed=found[RunStatus.FAILED],
                cancelled=found[RunStatus.CANCELLED],
            )
        )
    return Activity(period=timedelta(days=1) if daily else timedelta(hours=1), periods=periods)


def _period_starts(since: datetime, now: datetime, *, daily: bool) -> list[datetime]:
    """The start of every hour (or day) from the one holding ``since`` to the one holding ``now``, in the current
    time zone, as the database truncates: stepping an hour at a time keeps a day of 23 or 25 hours right."""

    def truncate(moment: datetime) -> datetime:
        local = timezone.localtime(moment).replace(minute=0, second=0, microsecond=0)
        return local.replace(hour=0) if daily else local

    starts: list[datetime] = []
    moment = since
    while True:
        start = truncate(min(moment, now))
        if not starts or starts[-1] != start:
            starts.append(start)
        if moment >= now:
            return starts
        moment += timedelta(hours=1)


@dataclass(frozen=True)
class DurationBin:
    """How many of the window's finished runs took from ``low`` (included) to ``high`` seconds."""

    low: float
    high: float | None  # None: no upper bound
    runs: int


def durations(*, since: datetime) -> list[DurationBin]:
    """The durations of the runs started since ``since`` that finished (those behind the report's p50 and p95),
    in the bins of DURATION_EDGES: one grouped query."""
    took = Case(
        *(
            When(finished_at__lt=F("created_at") + timedelta(seconds=edge), then=Value(index))
            for index, edge in enumerate(DURATION_EDGES)
        ),
        default=Value(len(DURATION_EDGES)),
        output_field=IntegerField(),
    )
    finished = SagaRun.objects.filter(created_at__gte=since, status__in=FINISHED, finished_at__isnull=False)
    counts = dict(finished.annotate(bin=took).values_list("bin").annotate(n=Count("pk")).order_by())
    lows = (0.0, *DURATION_EDGES)
    highs = (*DURATION_EDGES, None)
    return [
        DurationBin(low=low, high=high, runs=counts.get(i, 0))
        for i, (low, high) in enumerate(zip(lows, highs, strict=True))
    ]
