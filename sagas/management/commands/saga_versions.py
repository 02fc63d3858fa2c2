"""`manage.py saga_versions`: every saga version the code declares or the database has runs of."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from sagas.management import cli
from sagas.selectors import SagaVersion, saga_versions


class Command(BaseCommand):
    help = (
        "List each saga's versions: declared by this code (and which one new runs start under) or only found in "
        "the database, with their runs and unfinished runs. A version with unfinished runs must stay declared "
        "until they finish (docs/versions.md). Exit codes: 0 fine; 1 some unfinished runs belong to a version "
        "the code no longer declares."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            versions = saga_versions()
        except DatabaseError as exc:
            raise CommandError(f"Could not read the saga runs ({exc}); has `manage.py migrate` run?") from exc
        if options["json"]:
            rows = [{**asdict(found), "orphaned": found.orphaned} for found in versions]
            self.stdout.write(cli.dumps(rows))
        else:
            self.stdout.write(_table(versions) if versions else "No saga is declared and no run is stored.")
        orphaned = [found for found in versions if found.orphaned]
        if orphaned:
            named = ", ".join(f"{found.saga} v{found.version} ({found.unfinished})" for found in orphaned)
            raise CommandError(
                f"Unfinished runs of versions the code no longer declares: {named}. Keep those classes until they "
                "finish (docs/versions.md).",
                returncode=cli.EXIT_FOUND,
            )


def _table(versions: list[SagaVersion]) -> str:
    rows = [
        [
            found.saga,
            str(found.version),
            ("yes, new runs" if found.latest else "yes") if found.declared else "NO",
            str(found.runs),
            str(found.unfinished),
        ]
        for found in versions
    ]
    return cli.table(["saga", "version", "declared", "runs", "unfinished"], rows)
