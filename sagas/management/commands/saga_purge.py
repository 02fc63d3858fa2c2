"""`manage.py saga_purge`: delete finished saga runs older than an age, in short batches, optionally archived."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.conf import sagas_settings
from sagas.management import cli
from sagas.retention import parse_age
from sagas.services.purge import DEFAULT_STATUSES, MAX_BATCH_SIZE, PurgeReport, purge_runs
from sagas.states import FINISHED_RUN_STATES


class Command(BaseCommand):
    help = (
        "Delete saga runs that finished longer than --older-than ago (e.g. 30d, 12h, 90m, 3600s; at least 1h), with "
        "their steps, events, snapshots, outbox messages and receipts, --batch-size top-level runs per "
        "transaction. A run goes with its child runs, and only if all are finished, old enough and have every "
        f"outbox message relayed. --status (repeatable; default {', '.join(sorted(DEFAULT_STATUSES))}) picks the "
        "statuses; failed runs, which wait for a person, only when named. --archive FILE appends each purged run's "
        "events as JSON lines before they are deleted, secrets masked (SAGAS['MASKED_KEYS']), to a new file it "
        "creates readable by you only (mode 600) or to such a file of yours. --dry-run only counts. Exit codes: "
        "0 ok; 2 bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 30d, 12h, 90m or 3600s")
        parser.add_argument(
            "--status", action="append", default=[], metavar="STATUS", help="only runs in this status (repeatable)"
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument(
            "--batch-size",
            metavar="N",
            help=f"top-level runs per transaction, 1 to {MAX_BATCH_SIZE} (default SAGAS['PURGE_BATCH'])",
        )
        parser.add_argument(
            "--archive",
            metavar="FILE",
            help="append each purged run's events as JSON lines, secrets masked; a new FILE is created with mode 600, "
            "an existing one must be yours and have no permission for others",
        )
        parser.add_argument(
            "--archive-unmasked",
            action="store_true",
            help="write the --archive FILE with secrets in clear (the values under SAGAS['MASKED_KEYS']: card "
            "numbers, passwords, tokens): the file then holds secrets in clear. Only for a copy that must keep "
            "everything, such as a legal hold; needs --archive FILE",
        )
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["archive_unmasked"] and not options["archive"]:
            raise CommandError(
                "--archive-unmasked says how to write the archive, and there is none: add --archive FILE.",
                returncode=cli.EXIT_BAD_INPUT,
            )
        statuses = options["status"] or sorted(DEFAULT_STATUSES)
        unfinished = sorted(set(statuses) - FINISHED_RUN_STATES)
        if unfinished:
            raise CommandError(
                f"--status {', '.join(unfinished)}: only finished runs are purged; choose from "
                f"{', '.join(sorted(FINISHED_RUN_STATES))}.",
                returncode=cli.EXIT_BAD_INPUT,
            )
        batch_size = (
            int(sagas_settings.PURGE_BATCH)
            if options["batch_size"] is None
            else cli.whole_number(options["batch_size"], option="--batch-size", high=MAX_BATCH_SIZE)
        )
        try:
            report = purge_runs(
                older_than=parse_age(options["older_than"]),
                statuses=statuses,
                batch_size=batch_size,
                dry_run=options["dry_run"],
                archive=options["archive"],
                archive_unmasked=options["archive_unmasked"],
            )
        except ValueError as exc:
            raise CommandError(str(exc), returncode=cli.EXIT_BAD_INPUT) from exc
        except OSError as exc:  # the archive file cannot be opened or written: nothing of that batch was deleted
            raise CommandError(f"--archive {options['archive']}: {exc}", returncode=cli.EXIT_BAD_INPUT) from exc
        self.stdout.write(cli.dumps(report.as_json()) if options["json"] else _text(report, options))


def _text(report: PurgeReport, options: dict[str, Any]) -> str:
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
    if options["archive"] and report.runs:
        lines.append(f"Their events are archived in {options['archive']}.")
        if options["archive_unmasked"]:
            lines.append("The archive holds their secrets in clear (--archive-unmasked): keep it from other eyes.")
    return "\n".join(lines)
