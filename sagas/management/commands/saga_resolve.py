"""`manage.py saga_resolve <run_id> --step NAME --reason ...`: record a compensation done by hand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import sagas
from sagas.management import cli


class Command(BaseCommand):
    help = (
        "Resolve a failed compensation by hand (sagas.resolve): say that step --step of a failed run was undone "
        "outside the saga; the run ends compensated once no failed compensation is left. Recorded with --actor "
        "(default cli:<OS user>) and --reason. Prints the run's new status. Exit codes: 0 done; 2 malformed or "
        "unknown run id, unknown step, or no reason; 3 not allowed in the run's or step's state."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_operator_arguments(parser)
        parser.add_argument("--step", required=True, metavar="NAME", help="the step whose compensation was done")

    def handle(self, *args: Any, **options: Any) -> None:
        reason, actor = cli.operator_options(options)
        run_id = str(cli.parse_run_id(options["run_id"]))
        with cli.operator_errors(run_id):
            run = sagas.resolve(run_id, step=options["step"], reason=reason, actor=actor)
        self.stdout.write(cli.operator_result(run, actor=actor, as_json=options["json"]))
