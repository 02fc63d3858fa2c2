"""Retention: deleting finished runs, with every row that belongs to them, in short batches (docs/retention.md)."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from django.core.serializers.json import DjangoJSONEncoder
from django.db import router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from sagas.masking import masked
from sagas.models import SagaEvent, SagaOutbox, SagaReceipt, SagaRun, SagaSnapshot, SagaStepRun
from sagas.states import FINISHED_RUN_STATES, TERMINAL_RUN_STATES

logger = logging.getLogger(__name__)

# A failed run waits for a person: it is purged only when asked for by name (statuses=[..., "failed"]).
DEFAULT_STATUSES = TERMINAL_RUN_STATES
# Younger runs may still have messages in flight: a receiver's delivery of a published outbox message, a child's
# settle message to its parent. Their tasks read the rows, which must still be there.
MIN_AGE = timedelta(hours=1)
# A batch is one transaction holding its runs' row locks, and its ids go into every statement of the batch.
MAX_BATCH_SIZE = 10_000
TABLES = ("runs", "steps", "events", "snapshots", "outbox", "receipts")

Archive = str | os.PathLike[str] | TextIO
# An archive file the purge creates: its owner's alone (the umask can only take bits away), since even masked, the
# events hold the runs' payloads and outputs.
ARCHIVE_MODE = 0o600
# What an archived event line says of its run (key: column).
ARCHIVED_RUN_FIELDS = {
    "id": "id",
    "saga": "saga_name",
    "version": "version",
    "status": "status",
    "parent": "parent_id",
    "correlation_id": "correlation_id",
    "created_at": "created_at",
    "started_at": "started_at",
    "finished_at": "finished_at",
}


@dataclass
class PurgeReport:
    """What a purge deleted (or, in a dry run, would delete): rows per table, runs, batches and their time."""

    cutoff: datetime
    statuses: tuple[str, ...]
    dry_run: bool
    runs: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    # Top-level runs old enough but kept: a run of their family is unfinished, too young, in another status, held by
    # another transaction, or has a message not relayed yet.
    kept: int = 0
    batches: int = 0
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff,
            "statuses": list(self.statuses),
            "runs": self.runs,
            "rows": dict(self.rows),
            "kept": self.kept,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "longest_batch_seconds": round(self.longest_batch_seconds, 3),
        }


@dataclass
class _Families:
    """A batch's runs by family: a top-level run with its child runs (a parent cannot go before its children, and
    a completed child may still be undone while its parent is not finished, so a family goes whole or not at all)."""

    root_of: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    depth: dict[uuid.UUID, int] = field(default_factory=dict)
    blocked: set[uuid.UUID] = field(default_factory=set)  # roots kept

    def block(self, run_id: uuid.UUID) -> None:
        self.blocked.add(self.root_of[run_id])

    def purged(self) -> list[list[uuid.UUID]]:
        """The runs to delete by depth, deepest first: a child's row goes before its parent's."""
        levels: dict[int, list[uuid.UUID]] = {}
        for run, root in self.root_of.items():
            if root not in self.blocked:
                levels.setdefault(self.depth[run], []).append(run)
        return [levels[depth] for depth in sorted(levels, reverse=True)]


def purge_runs(
    *,
    older_than: timedelta,
    statuses: Collection[str] = DEFAULT_STATUSES,
    batch_size: int = 200,
    dry_run: bool = False,
    archive: Archive | None = None,
    archive_unmasked: bool = False,
    now: datetime | None = None,
) -> PurgeReport:
    """Delete the runs in ``statuses`` that finished more than ``older_than`` ago, with their steps, events,
    snapshots, outbox messages and those messages' receipts, ``batch_size`` top-level runs per transaction.

    A run goes with its child runs, and only when every one of them is in ``statuses``, finished before the cutoff
    and has no outbox message still unrelayed. Rows another transaction holds locked are skipped (PostgreSQL's
    ``SKIP LOCKED``): the next purge takes them. ``archive`` (a path or an open text file) gets each purged run's
    events as JSON lines, flushed and fsynced before the batch's delete commits, with the values under
    ``SAGAS["MASKED_KEYS"]`` masked as every other reader of a run shows them, unless ``archive_unmasked`` (the file
    then holds secrets in clear: a legal hold, say). A path is created with mode 0o600, or appended to when it is
    already a file of the current user that no one else may read or write (else ValueError, before anything is
    deleted). ``dry_run`` deletes nothing and counts what would go. Call it outside a transaction: each batch
    commits on its own.
    """
    chosen = tuple(sorted(statuses))
    _check(
        older_than=older_than,
        statuses=chosen,
        batch_size=batch_size,
        dry_run=dry_run,
        archive=archive,
        archive_unmasked=archive_unmasked,
    )
    report = PurgeReport(cutoff=_cutoff(now or timezone.now(), older_than), statuses=chosen, dry_run=dry_run)
    started = time.monotonic()
    after: tuple[datetime, uuid.UUID] | None = None
    with _archive_stream(archive) as stream:
        while True:
            begin = time.monotonic()
            after = _batch(report, after=after, batch_size=batch_size, stream=stream, unmasked=archive_unmasked)
            if after is None:
                break
            report.batches += 1
            report.longest_batch_seconds = max(report.longest_batch_seconds, time.monotonic() - begin)
    report.seconds = time.monotonic() - started
    logger.info(
        "saga purge%s: %d runs finished before %s (%s), %d batches, %.1fs; %d kept",
        " (dry run)" if dry_run else "",
        report.runs,
        report.cutoff.isoformat(),
        ", ".join(chosen),
        report.batches,
        report.seconds,
        report.kept,
    )
    return report


def _check(
    *,
    older_than: timedelta,
    statuses: tuple[str, ...],
    batch_size: int,
    dry_run: bool,
    archive: Archive | None,
    archive_unmasked: bool,
) -> None:
    unfinished = sorted(set(statuses) - FINISHED_RUN_STATES)
    if unfinished:
        raise ValueError(
            f"Only finished runs are purged ({', '.join(sorted(FINISHED_RUN_STATES))}), never "
            f"{', '.join(unfinished)}: a run in that state is still moving or may be moved on."
        )
    if not statuses:
        raise ValueError("No statuses to purge: name at least one of " + ", ".join(sorted(FINISHED_RUN_STATES)) + ".")
    if older_than < MIN_AGE:
        raise ValueError(
            f"Runs are purged only once finished for at least {MIN_AGE} (asked: {older_than}): younger ones may "
            "still have messages in flight that read their rows."
        )
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"The batch size must be from 1 to {MAX_BATCH_SIZE}, not {batch_size}.")
    if dry_run and archive is not None:
        raise ValueError("A dry run deletes nothing, so it archives nothing: leave out the archive, or the dry run.")
    if archive_unmasked and archive is None:
        raise ValueError("archive_unmasked says how to write an archive, and none was given: pass the archive too.")
    if isinstance(archive, str | os.PathLike) and "\x00" in os.fspath(archive):
        raise ValueError(f"The archive's file name may not contain NUL characters (\\x00): {os.fspath(archive)!r}.")


def _cutoff(now: datetime, older_than: timedelta) -> datetime:
    """``now - older_than``, or ValueError when that is before the calendar begins (datetime.min, the year 1)."""
    try:
        return now - older_than
    except OverflowError:
        raise ValueError(
            f"Runs finished more than {older_than.days} days ago would have finished before the year 1: nothing is "
            "that old. Ask for a shorter age."
        ) from None


def _batch(
    report: PurgeReport,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    batch_size: int,
    stream: TextIO | None,
    unmasked: bool,
) -> tuple[datetime, uuid.UUID] | None:
    """One batch in its own transaction; the (finished_at, id) of its last top-level run, or None when none is
    left. The next batch starts after it, so families kept are not read again and deleted rows not walked over."""
    with transaction.atomic(using=router.db_for_write(SagaRun)):
        roots = _roots(report, after=after, batch_size=batch_size)
        if not roots:
            return None
        families = _families(report, [run_id for _, run_id in roots])
        levels = families.purged()
        purged = [run_id for level in levels for run_id in level]
        report.kept += len(families.blocked)
        if purged:
            if stream is not None:
                _write_archive(stream, purged, unmasked=unmasked)
            _delete(report, levels)
    return roots[-1]


def _roots(
    report: PurgeReport, *, after: tuple[datetime, uuid.UUID] | None, batch_size: int
) -> list[tuple[datetime, uuid.UUID]]:
    """The next top-level runs old enough, in the order of the index sagas_run_finished, locked. ``FOR UPDATE``
    re-evaluates the status and finish time on the row it locks, so a run moved on since is left out; ``SKIP
    LOCKED`` passes over a run someone is changing right now (a person retrying a failed run)."""
    runs = SagaRun.objects.filter(
        parent__isnull=True, status__in=report.statuses, finished_at__lt=report.cutoff
    ).order_by("finished_at", "id")
    if after is not None:
        runs = runs.filter(finished_at__gte=after[0]).exclude(finished_at=after[0], id__lte=after[1])
    if not report.dry_run:
        runs = runs.select_for_update(skip_locked=True)
    # finished_at__lt: never None here.
    return [(finished, run_id) for run_id, finished in runs.values_list("id", "finished_at")[:batch_size] if finished]


def _families(report: PurgeReport, roots: list[uuid.UUID]) -> _Families:
    """The roots' families, with those that must stay marked: a member not in the statuses, too young, held by
    another transaction, or with an outbox message not relayed yet (its receivers would never get it)."""
    families = _Families(root_of={root: root for root in roots}, depth=dict.fromkeys(roots, 0))
    children: list[uuid.UUID] = []
    frontier = roots
    while frontier:
        found = SagaRun.objects.filter(parent_id__in=frontier).values_list("id", "parent_id", "status", "finished_at")
        frontier = []
        for run_id, parent_id, status, finished_at in found:
            families.root_of[run_id] = families.root_of[parent_id]
            families.depth[run_id] = families.depth[parent_id] + 1
            if status not in report.statuses or finished_at is None or finished_at >= report.cutoff:
                families.block(run_id)
            children.append(run_id)
            frontier.append(run_id)
    if children and not report.dry_run:
        # The children as the roots were locked: status re-checked on the locked row, a row held elsewhere skipped.
        locked = set(
            SagaRun.objects.filter(pk__in=children, status__in=report.statuses, finished_at__lt=report.cutoff)
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
        )
        for run_id in set(children) - locked:
            families.block(run_id)
    unrelayed = SagaOutbox.objects.filter(run_id__in=list(families.root_of), published_at__isnull=True)
    for run_id in unrelayed.values_list("run_id", flat=True).distinct():
        families.block(run_id)
    return families


def _owned(runs: list[uuid.UUID]) -> dict[str, QuerySet[Any]]:
    """Every row that belongs to ``runs``, by table, in an order the foreign keys allow deleting them in."""
    outbox = SagaOutbox.objects.filter(run_id__in=runs)
    return {
        "receipts": SagaReceipt.objects.filter(message_id__in=outbox.values("id")),
        "outbox": outbox,
        "snapshots": SagaSnapshot.objects.filter(run_id__in=runs),
        "steps": SagaStepRun.objects.filter(run_id__in=runs),
        "events": SagaEvent.objects.filter(run_id__in=runs),
    }


def _delete(report: PurgeReport, levels: list[list[uuid.UUID]]) -> None:
    runs = [run_id for level in levels for run_id in level]
    report.runs += len(runs)
    report.rows["runs"] += len(runs)
    for table, rows in _owned(runs).items():
        # One DELETE ... WHERE each: QuerySet.delete() would load every row to cascade in Python, and every
        # table it would cascade to is deleted here anyway.
        report.rows[table] += rows.count() if report.dry_run else rows._raw_delete(rows.db)
    if not report.dry_run:
        for level in levels:  # deepest first: a parent's row goes after its children's (SagaRun.parent PROTECTs)
            SagaRun.objects.filter(pk__in=level)._raw_delete(router.db_for_write(SagaRun))


def _write_archive(stream: TextIO, runs: list[uuid.UUID], *, unmasked: bool) -> None:
    """Each run's events as JSON lines, with the run's identity on every line, secrets masked unless ``unmasked``;
    on disk before the delete commits."""
    rows = SagaRun.objects.filter(pk__in=runs).values(*ARCHIVED_RUN_FIELDS.values())
    identity = {row["id"]: {key: row[column] for key, column in ARCHIVED_RUN_FIELDS.items()} for row in rows}
    events = (
        SagaEvent.objects.filter(run_id__in=runs)
        .order_by("run_id", "seq")
        .values_list("id", "run_id", "seq", "type", "step", "data", "actor", "causation_id", "created_at")
    )
    seq_of: dict[int, int] = {}  # event id -> seq, within the current run: causation stays inside a run
    current = None
    for event_id, run_id, seq, kind, step, data, actor, causation_id, created_at in events.iterator(chunk_size=2000):
        if run_id != current:
            current, seq_of = run_id, {}
        seq_of[event_id] = seq
        line = {
            "run": identity[run_id],
            "seq": seq,
            "type": kind,
            "step": step,
            "data": data if unmasked else masked(data),
            "actor": actor,
            "caused_by": seq_of.get(causation_id) if causation_id is not None else None,
            "created_at": created_at,
        }
        stream.write(json.dumps(line, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")) + "\n")
    stream.flush()
    try:
        fileno = stream.fileno()
    except (OSError, io.UnsupportedOperation):  # an in-memory stream: nothing to sync
        return
    try:
        os.fsync(fileno)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: a pipe or a device (/dev/stdout), which keeps nothing to sync
            raise


@contextmanager
def _archive_stream(archive: Archive | None) -> Iterator[TextIO | None]:
    """The archive as an open text stream: a path is opened for appending (and closed after), a stream used as is."""
    if isinstance(archive, str | os.PathLike):
        with os.fdopen(_open_archive(archive), "a", encoding="utf-8") as stream:
            yield stream
    else:
        yield archive


def _open_archive(path: str | os.PathLike[str]) -> int:
    """A descriptor appending to the file at ``path``: created with ARCHIVE_MODE, or an existing regular file of the
    current user that no one else may read or write (a pipe or a device, such as /dev/stdout, is taken as it is).

    The mode is set by the call that creates the file (``O_CREAT | O_EXCL``, which does not follow a symbolic link),
    never by a chmod after it: there is no moment when others may open it. An existing file is opened without
    ``O_CREAT``, so a file removed in between is an error rather than a new file with another mode."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, ARCHIVE_MODE)
    except FileExistsError:
        pass
    fd = os.open(path, flags)
    try:
        found = os.fstat(fd)
        if stat.S_ISREG(found.st_mode):
            if found.st_uid != os.geteuid():
                raise ValueError(
                    f"The archive {os.fspath(path)!r} belongs to another user (uid {found.st_uid}), who could read "
                    "what the purge writes: name a new file, which is created readable by you only."
                )
            if found.st_mode & 0o077:
                raise ValueError(
                    f"The archive {os.fspath(path)!r} may be read or written by others (mode "
                    f"{stat.S_IMODE(found.st_mode):#o}): run `chmod 600` on it to append to it, or name a new file, "
                    "which is created readable by you only."
                )
    except BaseException:
        os.close(fd)
        raise
    return fd
