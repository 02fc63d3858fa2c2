"""`manage.py saga_purge`: delete finished saga runs older than an age, in short batches, optionally archived."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.conf import sagas_settings
from sagas.management import cli
from sagas.retention import parse_age
from sagas.services.purge import DEFAULT_STATUSES, PurgeReport, purge_runs
from sagas.states import FINISHED_RUN_STATES


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return number


class Command(BaseCommand):
    help = (
        "Delete saga runs that finished longer than --older-than ago (e.g. 30d, 12h, 90m, 3600s; at least 1h), with "
        "their steps, events, snapshots, outbox messages and receipts, --batch-size top-level runs per "
        "transaction. A run goes with its child runs, and only if all are finished, old enough and have every "
        f"outbox message relayed. --status (repeatable; default {', '.join(sorted(DEFAULT_STATUSES))}) picks the "
        "statuses; failed runs, which wait for a person, only when named. --archive FILE appends each purged run's "
        "events as JSON lines before they are deleted. --dry-run only counts. Exit codes: 0 ok; 2 bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 90m or 3600s")
        parser.add_argument(
            "--status", action="append", default=[], metavar="STATUS", help="only runs in this status (repeatable)"
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument(
            "--batch-size", type=_positive_int, metavar="N", help="top-level runs per transaction (PURGE_BATCH)"
        )
        parser.add_argument("--archive", metavar="FILE", help="append each purged run's events as JSON lines")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = options["status"] or sorted(DEFAULT_STATUSES)
        unfinished = sorted(set(statuses) - FINISHED_RUN_STATES)
        if unfinished:
            raise CommandError(
                f"--status {', '.join(unfinished)}: only finished runs are purged; choose from "
                f"{', '.join(sorted(FINISHED_RUN_STATES))}.",
                returncode=cli.EXIT_BAD_INPUT,
            )
        try:
            report = purge_runs(
                older_than=parse_age(options["older_than"]),
                statuses=statuses,
                batch_size=options["batch_size"] or int(sagas_settings.PURGE_BATCH),
                dry_run=options["dry_run"],
                archive=options["archive"],
            )
        except ValueError as exc:
            raise CommandError(str(exc), returncode=cli.EXIT_BAD_INPUT) from exc
        except OSError as exc:  # the archive file cannot be opened or written: nothing of that batch was deleted
            raise CommandError(f"--archive {options['archive']}: {exc}", returncode=cli.EXIT_BAD_INPUT) from exc
        self.stdout.write(cli.dumps(report.as_json()) if options["json"] else _text(report, options["archive"]))


def _text(report: PurgeReport, archive: str | None) -> str:
    verb = "Would purge" if report.dry_run else "Purged"
    rows = ", ".join(f"{table} {count}" for table, count in report.rows.items())
    lines = [
        f"{verb} {report.runs} run(s) {', '.join(report.statuses)} that finished before {cli.when(report.cutoff)} "
        f"UTC: {rows}.",
        f"{report.batches} batch(es) in {report.seconds:.2f}s, the longest {report.longest_batch_seconds:.2f}s.",
    ]
    if report.kept:
        lines.append(
            f"Kept {report.kept} old enough run(s) with their family: a run in it is unfinished, younger, in "
            "another status, or has an outbox message not relayed yet."
        )
    if archive and report.runs:
        lines.append(f"Their events are archived in {archive}.")
    return "\n".join(lines)
