"""`manage.py saga_cancel <run_id> --reason ...`: stop a run and undo what it completed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import sagas
from sagas.management import cli


class Command(BaseCommand):
    help = (
        "Cancel a saga run (sagas.cancel): a pending run ends cancelled; an executing run starts no further "
        "step and compensates what completed. Recorded with --actor (default cli:<OS user>) and --reason. "
        "Prints the run's new status. Exit codes: 0 done; 2 malformed or unknown run id, or no reason; 3 not "
        "allowed in the run's state."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_operator_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        reason, actor = cli.operator_options(options)
        run_id = str(cli.parse_run_id(options["run_id"]))
        with cli.operator_errors(run_id):
            run = sagas.cancel(run_id, reason=reason, actor=actor)
        self.stdout.write(cli.operator_result(run, actor=actor, as_json=options["json"]))
