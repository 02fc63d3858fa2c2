"""`manage.py saga_signal <run_id> <name> [--data JSON] [--reason ...]`: deliver the signal a Wait step waits for."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import sagas
from sagas.management import cli


class Command(BaseCommand):
    help = (
        "Signal a saga run (sagas.signal): its Wait step <name> takes --data (a JSON object, default {}) as its "
        "output and the run goes on. The same signal again does nothing. Recorded with --actor (default "
        "cli:<OS user>) and an optional --reason. Prints the run's new status. Exit codes: 0 done; 2 malformed or "
        "unknown run id, or --data that is not a JSON object; 3 the run is not waiting for that signal."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", help="the saga run's id (a UUID)")
        parser.add_argument("name", help="the name of the Wait step the signal is for")
        parser.add_argument("--data", default=None, metavar="JSON", help="the signal's data: a JSON object")
        parser.add_argument("--reason", default="", metavar="TEXT", help="why, for the run's audit trail (optional)")
        parser.add_argument(
            "--actor", default=None, metavar="NAME", help="who is acting (default: cli:<your OS user name>)"
        )
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = cli.text_option(options["actor"] or cli.default_actor(), option="--actor")
        reason = cli.text_option(options["reason"] or "", option="--reason")
        name = cli.text_option(options["name"], option="signal name")
        run_id = str(cli.parse_run_id(options["run_id"]))
        data = cli.json_option(options, "data")
        with cli.operator_errors(run_id):
            run = sagas.signal(run_id, name, data, actor=actor, reason=reason)
        self.stdout.write(cli.operator_result(run, actor=actor, as_json=options["json"]))
