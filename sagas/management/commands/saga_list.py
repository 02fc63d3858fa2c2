"""`manage.py saga_list`: saga runs, newest first, with the step a person should look at."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone

from sagas import selectors
from sagas.management import cli
from sagas.models import SagaRun
from sagas.states import RunStatus, StepStatus

HEADER = ["id", "saga", "status", "age", "duration", "step", "attempts"]
# For a step being undone, the attempts that matter are its compensation's.
COMPENSATION_STATES = (StepStatus.COMPENSATING, StepStatus.COMPENSATION_FAILED)
# Runs one listing reads, with their steps, into memory; the REST API pages through more.
MAX_LIMIT = 10_000


class Command(BaseCommand):
    help = (
        "List saga runs, newest first: id, saga, status, age, duration, the step to look at (the one whose "
        "compensation failed, that failed, or that is under way) and its attempts (compensation attempts for a "
        "step being undone). Filter with --status (repeatable), --saga, --awaiting-person, --stuck, --since. "
        "Exit codes: 0 ok; 2 bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status", action="append", choices=RunStatus.values, default=[], help="only runs in this status"
        )
        parser.add_argument("--saga", metavar="NAME", help="only runs of this saga")
        parser.add_argument("--awaiting-person", action="store_true", help="only failed runs a person must act on")
        parser.add_argument("--stuck", action="store_true", help="only active runs with no progress for the lease")
        parser.add_argument("--since", type=float, metavar="HOURS", help="only runs created in the last HOURS")
        parser.add_argument("--limit", default=50, metavar="N", help=f"at most N runs (50; up to {MAX_LIMIT})")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        limit = cli.whole_number(options["limit"], option="--limit", high=MAX_LIMIT)
        if options["saga"] is not None:
            cli.text_option(options["saga"], option="--saga")
        since = _since(options["since"])
        runs = list(_runs(**{**options, "since": since}).prefetch_related("steps")[:limit])
        now = timezone.now()
        if options["json"]:
            self.stdout.write(cli.dumps([_as_json(run, now) for run in runs]))
        elif not runs:
            self.stdout.write("No saga runs match.")
        else:
            self.stdout.write(cli.table(HEADER, [_cells(run, now) for run in runs]))


def _since(hours: float | None) -> datetime | None:
    """When the window of ``--since HOURS`` begins, or exit 2 when it is not a window."""
    if hours is None:
        return None
    if not (math.isfinite(hours) and hours > 0):
        raise CommandError(f"--since must be a number of hours above 0, not {hours}.", returncode=cli.EXIT_BAD_INPUT)
    try:
        return timezone.now() - timedelta(hours=hours)
    except OverflowError:  # past timedelta.max, or before the year 1
        raise CommandError(
            f"--since {hours:g} hours reaches back before the year 1: ask for fewer hours, or leave --since out for "
            "runs of any age.",
            returncode=cli.EXIT_BAD_INPUT,
        ) from None


def _runs(
    *,
    status: list[str],
    saga: str | None,
    awaiting_person: bool,
    stuck: bool,
    since: datetime | None,
    **_: Any,
) -> QuerySet[SagaRun]:
    runs: QuerySet[SagaRun] = SagaRun.objects.order_by("-created_at")
    if status:
        runs = runs.filter(status__in=status)
    if saga:
        runs = runs.filter(saga_name=saga)
    if awaiting_person:
        runs = selectors.awaiting_person(runs)
    if stuck:
        runs = selectors.stuck(runs)
    if since is not None:
        runs = runs.filter(created_at__gte=since)
    return runs


def _as_json(run: SagaRun, now: datetime) -> dict[str, Any]:
    step = selectors.current_step(run.steps.all())
    return {
        "id": str(run.pk),
        "saga": run.saga_name,
        "version": run.version,
        "status": run.status,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "age_seconds": round((now - run.created_at).total_seconds(), 3),
        "duration_seconds": round(selectors.run_duration(run, now).total_seconds(), 3),
        "step": step.name if step else None,
        "step_status": step.status if step else None,
        "attempts": step.attempts if step else None,
        "compensation_attempts": step.compensation_attempts if step else None,
    }


def _cells(run: SagaRun, now: datetime) -> list[str]:
    step = selectors.current_step(run.steps.all())
    attempts = "-"
    if step is not None:
        attempts = str(step.compensation_attempts if step.status in COMPENSATION_STATES else step.attempts)
    return [
        str(run.pk),
        f"{run.saga_name} v{run.version}",
        run.status,
        cli.ago(run.created_at, now),
        selectors.humanize_seconds(selectors.run_duration(run, now).total_seconds()),
        f"{step.name} ({step.status})" if step else "-",
        attempts,
    ]
