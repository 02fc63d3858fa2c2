"""`manage.py saga_resolve <run_id> --step NAME --reason ... [--output JSON]`: record a step done by hand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import sagas
from sagas.management import cli


class Command(BaseCommand):
    help = (
        "Resolve by hand what a failed run gave up on (sagas.resolve): a failed compensation (say that step --step "
        "was undone outside the saga; the run ends compensated once none is left), or a step that failed after the "
        "pivot (say it was done, with --output as its output; the run goes on forward). Recorded with --actor "
        "(default cli:<OS user>) and --reason. Prints the run's new status. Exit codes: 0 done; 2 malformed or "
        "unknown run id, unknown step, bad --output, or no reason; 3 not allowed in the run's or step's state."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_operator_arguments(parser)
        parser.add_argument("--step", required=True, metavar="NAME", help="the step that was done by hand")
        parser.add_argument(
            "--output",
            default=None,
            metavar="JSON",
            help="for a step that failed after the pivot: what it should have returned, as JSON",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reason, actor = cli.operator_options(options)
        step = cli.text_option(options["step"], option="--step")
        run_id = str(cli.parse_run_id(options["run_id"]))
        output = cli.json_option(options, "output")
        with cli.operator_errors(run_id):
            run = sagas.resolve(run_id, step=step, reason=reason, actor=actor, output=output)
        self.stdout.write(cli.operator_result(run, actor=actor, as_json=options["json"]))
