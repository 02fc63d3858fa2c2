"""The reaper: finds runs that stopped moving and re-drives each from its database state.

It runs every SAGAS["REAPER_INTERVAL"] seconds as the periodic task ``sagas.reap`` on django-celery-beat's
database scheduler, and as ``manage.py saga_recover``. With nothing stuck it costs three indexed queries (runs,
planned without PostgreSQL's JIT; unpublished and unsettled outbox messages).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from sagas import backlog, leases, outbox, schedules
from sagas.conf import sagas_settings
from sagas.models import SagaRun
from sagas.selectors import stale
from sagas.services.redrive import Redrive, run_redrive
from sagas.states import RunStatus

logger = logging.getLogger(__name__)

REAPER_TASK = "sagas.reap"
REAPER_SCHEDULE_NAME = "sagas: re-drive stuck runs"


def _last_run_key() -> str:
    return f"{sagas_settings.KEY_PREFIX}:reaper:last-run"


def mark_reaped() -> None:
    """Record that the periodic reaper just finished a pass (the health page and a metric show it)."""
    leases.client().set(_last_run_key(), f"{time.time():.3f}")


def last_reaped() -> datetime | None:
    """When the periodic reaper last finished a pass, or None if it never did (per Redis, which keeps the time)."""
    raw = leases.client().get(_last_run_key())
    return datetime.fromtimestamp(float(raw), UTC) if raw else None


def reaper_late_after() -> float:
    """Seconds without a pass after which the reaper counts as not running: three missed intervals."""
    return 3 * float(sagas_settings.REAPER_INTERVAL)


def stuck_run_ids(now: datetime | None = None, behind: float = 0.0, forgotten_at: datetime | None = None) -> list[str]:
    """Runs with no progress for the lease (plus ``behind``, the seconds the queue is behind), or past their
    deadline, and not parked: one indexed query. With ``forgotten_at`` (when Redis last lost its data), also a
    run idle for the lease that has not moved since then, whatever the queue and its re-drive backoff: its
    messages went with the data."""
    now = now or timezone.now()
    overdue = Q(status__in=[RunStatus.PENDING, RunStatus.EXECUTING], deadline__lt=now)
    # Not waiting out a re-drive's backoff: none, it is over, or the run moved since the re-drive.
    due = Q(redrive_after__isnull=True) | Q(redrive_after__lte=now) | Q(lock_version__gt=F("redrive_seq"))
    # A run whose message waits behind the queue is not lost: it counts as stuck only once the queue's delay too
    # has passed (sagas.backlog).
    idle = stale(now - timedelta(seconds=behind))
    stuck = (idle & due) | overdue
    if forgotten_at is not None:
        stuck |= stale(now) & Q(updated_at__lt=forgotten_at)
    found = SagaRun.objects.filter(stuck, parked_reason="").order_by("updated_at")
    with _without_jit():
        return [str(pk) for pk in found.values_list("pk", flat=True)[: sagas_settings.REAPER_BATCH]]


@contextlib.contextmanager
def _without_jit() -> Iterator[None]:
    """PostgreSQL's JIT compiler off for the queries inside: the planner's cost estimate of the stuck-run query
    (its subqueries, over a table of any size) passes ``jit_above_cost`` with room to spare, and compiling it took
    ~850 ms of a database core on every tick, for a query that then ran in ~60 ms (measured with EXPLAIN ANALYZE
    on 10,000 runs). ``SET LOCAL`` ends with the transaction, so the caller's session keeps its own setting."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        yield


def reap(*, dry_run: bool = False, actor: str = "reaper") -> list[Redrive]:
    """Re-drive every stuck run (or, with ``dry_run``, say what would be done); the runs acted on. Also
    relays the outbox messages a crash left unpublished, and those whose delivery the broker lost."""
    behind = backlog.queue_delay()
    # A Redis that lost its data is marked at once, so that few runs begun since look begun before the loss (whose
    # steps' attempt counts are gone: sagas.services.doubt), and the runs it held messages of move on at once.
    forgotten_at = datetime.fromtimestamp(leases.memory_since(), UTC)
    if not dry_run:
        outbox.relay_stuck()
        outbox.redeliver_lost(behind, forgotten_at)
    done = []
    for run_id in stuck_run_ids(behind=behind, forgotten_at=forgotten_at):
        outcome = run_redrive(run_id=run_id, actor=actor, dry_run=dry_run, forgotten_at=forgotten_at)
        if outcome.action:
            done.append(outcome)
    if done:
        logger.warning("reaper %s %d stuck run(s)", "would re-drive" if dry_run else "re-drove", len(done))
    return done


def ensure_reaper_schedule() -> None:
    """Install (or update) the reaper's periodic task on django-celery-beat's database schedule."""
    schedules.schedule_every(
        REAPER_SCHEDULE_NAME,
        task=REAPER_TASK,
        seconds=int(sagas_settings.REAPER_INTERVAL),
        description="Re-drives saga runs that a lost message, a killed worker or a lost errback left stuck "
        "(sagas.recovery). Installed by the sagas app; its interval is SAGAS['REAPER_INTERVAL'].",
    )
