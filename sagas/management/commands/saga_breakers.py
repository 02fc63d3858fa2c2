"""`manage.py saga_breakers`: list the circuit breakers of every service, or reset some."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas import breakers
from sagas.management import cli


class Command(BaseCommand):
    help = (
        "List the circuit breaker of every service that saga steps call (state, failures in the window, "
        "probes, when it may close), or reset breakers with --reset SERVICE ... / --reset-all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset", nargs="+", metavar="SERVICE", default=[], help="close these breakers")
        parser.add_argument("--reset-all", action="store_true", help="close every breaker")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        named = [cli.text_option(service, option="--reset") for service in options["reset"]]
        if breakers.redis_url() is None:
            raise CommandError("No Redis configured for circuit breakers: set SAGAS['REDIS_URL'] or REDIS_URL.")
        services = breakers.known_services()
        to_reset = services if options["reset_all"] else named
        for service in to_reset:
            breaker = breakers.for_service(service)
            if breaker is None:
                raise CommandError(f"The breaker of service {service!r} is disabled (SAGAS['BREAKERS']).")
            breaker.reset()
            self.stderr.write(f"reset the breaker of {service}")
        rows = breakers.statuses()
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        self.stdout.write(_table(rows))


def _when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["service", "state", "failures", "probes", "opened at (UTC)", "closes in", "times opened"]
    lines = [
        [
            row["service"],
            row["state"],
            f"{row['failures_in_window']}/{row['failure_threshold']} in {row['window']:g}s",
            f"{row['probes']}/{row['half_open_max_calls']}",
            _when(row["opened_at"]),
            f"{row['recovery_in']:.1f}s" if row["recovery_in"] is not None else "-",
            str(row["times_opened"]),
        ]
        for row in rows
    ]
    if not lines:
        return "No services: no saga step names a service (Step(service=...))."
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *lines]
    )
