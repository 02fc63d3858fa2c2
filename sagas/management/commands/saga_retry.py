"""`manage.py saga_retry <run_id> --reason ...`: re-run what a failed run gave up on, or re-drive a stuck run."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import sagas
from sagas.management import cli


class Command(BaseCommand):
    help = (
        "Retry a saga run (sagas.retry): a failed run re-runs, with a fresh budget, its failed compensations or "
        "its step that failed after the pivot (then goes on forward); a stuck or parked run is re-driven. "
        "Recorded with --actor (default cli:<OS user>) and --reason. Prints the run's new status. Exit codes: "
        "0 done; 2 malformed or unknown run id, or no reason; 3 not allowed in the run's state."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_operator_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        reason, actor = cli.operator_options(options)
        run_id = str(cli.parse_run_id(options["run_id"]))
        with cli.operator_errors(run_id):
            run = sagas.retry(run_id, reason=reason, actor=actor)
        self.stdout.write(cli.operator_result(run, actor=actor, as_json=options["json"]))
