"""`manage.py saga_health`: how sagas fared over a window, and the alerts a monitor acts on."""

from __future__ import annotations

import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.health import MAX_WINDOW_HOURS, HealthReport, health_report
from sagas.management import cli
from sagas.selectors import humanize_seconds


class Command(BaseCommand):
    help = (
        "Report on the saga runs started in the last --hours (default SAGAS['HEALTH_WINDOW_HOURS']): counts, "
        "success/compensation/failure rates, p50/p95 duration, runs awaiting a person, stuck runs, failures "
        "by step and by class, circuit breakers, then alerts. Exit codes: 0 healthy; 1 there are alerts; "
        "2 bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hours", type=float, metavar="H", help="the window, in hours")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["hours"]
        if hours is not None and not (math.isfinite(hours) and 0 < hours <= MAX_WINDOW_HOURS):
            raise CommandError(
                f"--hours must be above 0 and at most {MAX_WINDOW_HOURS}, not {hours}.", returncode=cli.EXIT_BAD_INPUT
            )
        report = health_report(window_hours=options["hours"])
        self.stdout.write(cli.dumps(report.as_json()) if options["json"] else _text(report))
        if report.alerts:
            raise CommandError(f"{len(report.alerts)} alert(s).", returncode=cli.EXIT_FOUND)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else humanize_seconds(value)


def _text(report: HealthReport) -> str:
    lines = [
        f"Saga runs started in the last {report.window_hours:g}h (since {cli.when(report.since)} UTC):",
        f"  started {report.started}, finished {report.finished}: completed {report.completed}, "
        f"compensated {report.compensated}, failed {report.failed}, cancelled {report.cancelled}",
        f"  success {_rate(report.success_rate)}, compensation {_rate(report.compensation_rate)}, "
        f"failure {_rate(report.failure_rate)}",
        f"  duration p50 {_seconds(report.p50_seconds)}, p95 {_seconds(report.p95_seconds)}",
        f"Awaiting a person: {report.awaiting_person}",
        f"Stuck (no progress for the lease): {report.stuck}"
        + (f", oldest {_seconds(report.oldest_stuck_seconds)}" if report.oldest_stuck_seconds is not None else ""),
        "Reaper last ran: "
        + (f"{_seconds(report.reaper_seconds_ago)} ago" if report.reaper_seconds_ago is not None else "never"),
        "",
        "Failures by step:",
    ]
    rows = [[f["saga"], f["step"], f["status"], str(f["count"])] for f in report.failures_by_step]
    lines.append(_indent(cli.table(["saga", "step", "status", "count"], rows)) if rows else "  none")
    lines += ["", "Failed attempts by class:"]
    rows = [[name, str(count)] for name, count in report.failures_by_class.items()]
    lines.append(_indent(cli.table(["class", "count"], rows)) if rows else "  none")
    lines += ["", "Circuit breakers:"]
    rows = [[str(b.get("service")), str(b.get("state"))] for b in report.breakers]
    lines.append(_indent(cli.table(["service", "state"], rows)) if rows else "  none")
    lines += ["", "Alerts:"]
    lines += [f"  ALERT {alert}" for alert in report.alerts] or ["  none"]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
