"""`manage.py saga_diagnose <run_id>`: why a run is where it is, and what to do about it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sagas.diagnose import diagnose
from sagas.management import cli


class Command(BaseCommand):
    help = (
        "Diagnose a saga run: each probable cause (a stable code such as compensation_exhausted, "
        "lease_expired, breaker_open, no_worker) with what is wrong and the recommended action. For an active "
        "run it asks the workers over the broker whether any consumes the saga queue, unless --no-workers. A "
        "finding that blames a task names it, the worker process that ran it, and its Flower page when "
        "SAGAS['FLOWER_URL'] is set. "
        "Exit codes: 0 no problem found; 1 something was found; 2 malformed or unknown run id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", help="the saga run's id (a UUID)")
        parser.add_argument("--no-workers", action="store_true", help="do not ask the workers over the broker")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        run = cli.get_run(options["run_id"])
        findings = diagnose(run, check_workers=not options["no_workers"])
        if options["json"]:
            data = {"run": str(run.pk), "status": run.status, "findings": [f.as_json() for f in findings]}
            self.stdout.write(cli.dumps(data))
        elif not findings:
            self.stdout.write(f"Saga run {run.pk} ({run.status}): No problem found.")
        else:
            self.stdout.write(f"Saga run {run.pk} ({run.status}):")
            for finding in findings:
                self.stdout.write(f"\n[{finding.cause}] {finding.summary}\n  → {finding.action}")
                if finding.task_id:
                    ran = f" (ran in {finding.worker})" if finding.worker else ""
                    link = f": {finding.flower}" if finding.flower else ""
                    self.stdout.write(f"  task {finding.task_id}{ran}{link}")
        if findings:
            raise CommandError(
                f"{len(findings)} finding(s) for saga run {run.pk}: {', '.join(f.cause for f in findings)}.",
                returncode=cli.EXIT_FOUND,
            )
