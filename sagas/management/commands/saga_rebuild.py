"""`manage.py saga_rebuild <run_id>`: a run's state folded from its event log, compared with its rows."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas import eventlog
from sagas.management import cli
from sagas.masking import masked


class Command(BaseCommand):
    help = (
        "Rebuild a saga run from its events alone (from its latest snapshot) and compare the result with the "
        "stored run and step rows. Prints the rebuilt status of the run and of each step, and every difference. "
        "Exit codes: 0 the rows agree with the log; 1 they differ (or the log cannot be folded); 2 malformed or "
        "unknown run id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", help="the saga run's id (a UUID)")
        parser.add_argument("--json", action="store_true", help="print the rebuilt state and the differences as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        run = cli.get_run(options["run_id"])
        try:
            state = eventlog.rebuild(run.pk)
        except eventlog.UnfoldableLog as exc:
            raise CommandError(f"Saga run {run.pk}: {exc}", returncode=cli.EXIT_FOUND) from exc
        differences = state.differences(run)
        if options["json"]:
            rebuilt = masked(state.to_json())
            data = {
                "run": str(run.pk),
                "snapshot_seq": state.snapshot_seq,
                "events_folded": state.folded,
                "state": rebuilt,
                "differences": differences,
            }
            self.stdout.write(cli.dumps(data))
        else:
            source = (
                f"snapshot #{state.snapshot_seq} + {state.folded} event(s)"
                if state.snapshot_seq
                else (f"{state.folded} event(s)")
            )
            self.stdout.write(f"Saga run {run.pk} ({run.saga_name} v{run.version}) rebuilt from {source}:")
            self.stdout.write(f"  run: {state.status}, lock version {state.lock_version}")
            for name, step in sorted(state.steps.items(), key=lambda item: item[1].index):
                self.stdout.write(f"  {name}: {step.status}, {step.attempts} attempt(s)")
            self.stdout.write("")
            self.stdout.write(
                "The stored rows agree with the event log."
                if not differences
                else "The stored rows differ from the event log:\n" + "\n".join(f"  {d}" for d in differences)
            )
        if differences:
            raise CommandError(
                f"Saga run {run.pk}: {len(differences)} difference(s) between its rows and its event log.",
                returncode=cli.EXIT_FOUND,
            )
