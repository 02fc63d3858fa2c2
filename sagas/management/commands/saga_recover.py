"""`manage.py saga_recover`: re-drive saga runs that stopped moving, as the periodic reaper does."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sagas import recovery


class Command(BaseCommand):
    help = (
        "Find saga runs with no progress for SAGAS['LEASE_SECONDS'] (or past their deadline) and re-drive each "
        "from its database state. --dry-run only says what it would do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        done = recovery.reap(dry_run=options["dry_run"], actor="saga_recover")
        if options["json"]:
            self.stdout.write(json.dumps([{"run": d.run_id, "action": d.action} for d in done], indent=2))
            return
        if not done:
            self.stdout.write("Nothing stuck.")
            return
        verb = "would" if options["dry_run"] else "did"
        for outcome in done:
            self.stdout.write(f"{outcome.run_id}: {verb} {outcome.action}")
