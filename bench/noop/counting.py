"""Counts what a process sends to PostgreSQL, by Celery task: SQL statements (by verb), transactions,
health checks and new connections. Counts are kept in memory and written to a JSON file per process (in a
worker, by a thread, at most every 0.1 s), so counting adds no Redis command and no SQL of its own.

A transaction is what PostgreSQL sees as one: a statement in autocommit mode, or an explicit transaction
(``atomic``) that ran at least one statement, counted when it commits or rolls back. A plain SELECT in
autocommit mode is counted apart, as a read: PostgreSQL gives it no transaction id and writes no commit record
for it, so ``transactions`` counts the ones that write (what a step's durability costs). Django's connection
health check (``SELECT 1`` before the first query of a task, when ``CONN_HEALTH_CHECKS`` is on) bypasses
``execute_wrapper``, so it is counted separately here and included in the statements.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

OUTSIDE = "(outside tasks)"


class SqlCounter:
    def __init__(self) -> None:
        self.label = OUTSIDE
        self.enabled = True
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._in_transaction: set[int] = set()  # connections inside an explicit transaction that ran SQL

    def add(self, key: str, amount: int = 1) -> None:
        if self.enabled:
            self.counts[self.label][key] += amount

    def statement(self, connection: Any, sql: str) -> None:
        self.add("statements")
        self.add("sql " + shape(sql))
        if connection.get_autocommit():
            self.add("reads" if read_only(sql) else "transactions")
        else:
            self._in_transaction.add(id(connection))

    def transaction_ended(self, connection: Any) -> None:
        if id(connection) in self._in_transaction:
            self._in_transaction.discard(id(connection))
            self.add("transactions")

    def execute_wrapper(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.statement(context["connection"], sql)
        return execute(sql, params, many, context)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {label: dict(counts) for label, counts in self.counts.items()}


LOCKING = re.compile(r"\bFOR\s+(?:UPDATE|NO\s+KEY\s+UPDATE|SHARE|KEY\s+SHARE)\b", re.IGNORECASE)


def read_only(sql: str) -> bool:
    """A plain SELECT: it writes nothing and locks no row."""
    return sql.lstrip(" (").upper().startswith("SELECT") and not LOCKING.search(sql)


TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+((?:"?\w+"?\.)?"?\w+"?)', re.IGNORECASE)


def shape(sql: str) -> str:
    """A statement's verb and first table, e.g. ``UPDATE sagas_sagasteprun``: what it costs, without values."""
    words = sql.lstrip(" (").split(None, 2)
    if not words:
        return "?"
    first = words[0].upper()
    if first in {"RELEASE", "ROLLBACK"} and len(words) > 1 and words[1].upper() in {"SAVEPOINT", "TO"}:
        return f"{first} SAVEPOINT"
    table = TABLE.search(sql)
    return f"{first} {table.group(1).replace(chr(34), '')}" if table and first != "SAVEPOINT" else first


def _counted_setup(configure: Callable[..., bool], what: str) -> Callable[..., bool]:
    def counted(self: Any, connection: Any) -> bool:
        sent = configure(self, connection)  # True when it sent a statement (in autocommit)
        if sent:
            COUNTER.add("statements")
            COUNTER.add(f"sql SET {what} (new connection)")
            # A SET in autocommit writes nothing: no transaction id, no commit record, like a plain SELECT.
            COUNTER.add("reads")
        return sent

    return counted


COUNTER = SqlCounter()
HEALTH_CHECK = "sql SELECT 1 (health check)"
_installed = False


def install() -> SqlCounter:
    """Count every statement of every Django connection in this process (idempotent)."""
    global _installed
    if _installed:
        return COUNTER
    _installed = True
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.signals import connection_created

    commit, rollback = BaseDatabaseWrapper.commit, BaseDatabaseWrapper.rollback

    def counted_commit(self: BaseDatabaseWrapper) -> None:
        COUNTER.transaction_ended(self)
        commit(self)

    def counted_rollback(self: BaseDatabaseWrapper) -> None:
        COUNTER.transaction_ended(self)
        rollback(self)

    BaseDatabaseWrapper.commit = counted_commit  # type: ignore[method-assign]
    BaseDatabaseWrapper.rollback = counted_rollback  # type: ignore[method-assign]
    for backend in {type(connections[alias]) for alias in connections}:
        # Each backend has its own is_usable (PostgreSQL's sends SELECT 1), and PostgreSQL's sets the time
        # zone (and role) of a new connection: both go around execute_wrapper, so they are counted here.
        def counted_is_usable(self: BaseDatabaseWrapper, _is_usable: Callable[..., Any] = backend.is_usable) -> bool:
            COUNTER.add("statements")
            COUNTER.add(HEALTH_CHECK)
            COUNTER.add("reads")  # a plain SELECT 1 in autocommit
            return bool(_is_usable(self))

        backend.is_usable = counted_is_usable  # type: ignore[method-assign]
        for setup in ("_configure_timezone", "_configure_role"):
            if hasattr(backend, setup):
                setattr(backend, setup, _counted_setup(getattr(backend, setup), setup.removeprefix("_configure_")))

    def watch(connection: BaseDatabaseWrapper) -> None:
        if COUNTER.execute_wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(COUNTER.execute_wrapper)

    def created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        COUNTER.add("connections")
        watch(connection)

    connection_created.connect(created, weak=False)
    for alias in connections:
        watch(connections[alias])
    return COUNTER


@contextmanager
def counting(label: str) -> Iterator[None]:
    """Count what the block sends under ``label`` (the benchmark's own process: a saga's start)."""
    COUNTER.label, COUNTER.enabled = label, True
    try:
        yield
    finally:
        COUNTER.label, COUNTER.enabled = OUTSIDE, False


def write(path: Path, counts: dict[str, dict[str, int]]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(counts))
    os.replace(temporary, path)


def read_all(directory: Path, prefix: str) -> dict[str, dict[str, int]]:
    """The counts of every process whose file starts with ``prefix``, added up by label."""
    total: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for path in directory.glob(f"{prefix}-*.json"):
        try:
            counts = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced while being read: the next reading has it
        for label, values in counts.items():
            total[label].update(values)
    return {label: dict(values) for label, values in total.items()}


# Seconds between two writes of a pool process's counts: the harness reads them half a second after a window's
# last run. Written after every task, the file cost 13 % of a pool process, charged to whichever system it ran.
WRITE_EVERY = 0.1


def install_in_worker(directory: str, name: str) -> None:
    """In a Celery worker: count in each pool process, by task name; a thread writes the counts every
    ``WRITE_EVERY`` seconds when they changed."""
    from celery.signals import task_postrun, task_prerun, worker_process_init

    changed = threading.Event()

    def keep_writing(path: Path) -> None:
        while True:
            changed.wait()
            changed.clear()
            for _ in range(3):  # a label added while copying: copy again
                try:
                    snapshot = COUNTER.snapshot()
                except RuntimeError:
                    continue
                write(path, snapshot)
                break
            time.sleep(WRITE_EVERY)

    def process_init(**kwargs: Any) -> None:
        install()
        COUNTER.enabled = True
        path = Path(directory) / f"{name}-{os.getpid()}.json"
        threading.Thread(target=keep_writing, args=(path,), name="bench-counts", daemon=True).start()

    def prerun(sender: Any = None, **kwargs: Any) -> None:
        COUNTER.label = getattr(sender, "name", None) or "?"

    def postrun(sender: Any = None, **kwargs: Any) -> None:
        COUNTER.add("tasks")
        COUNTER.label = OUTSIDE
        changed.set()

    worker_process_init.connect(process_init, weak=False)
    task_prerun.connect(prerun, weak=False)
    task_postrun.connect(postrun, weak=False)
