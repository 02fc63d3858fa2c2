"""What the throughput benchmark compares: our saga (default and eager mode), a bare Celery chain (with
and without a PostgreSQL row per task) and a DBOS workflow, each behind the same small interface: submit one
run, and tell which of the runs in flight reached a terminal state, and when, from where that system stores it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from bench.noop import counting

RESULT_KEY = "celery-task-meta-"  # the Redis result backend's key prefix
CELERY_READY = {"SUCCESS", "FAILURE", "REVOKED"}
DBOS_TERMINAL = ["SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]

Finished = dict[str, tuple[bool, float]]  # run key -> (succeeded, finished at, epoch seconds)


class Variant(Protocol):
    name: str  # "saga3"
    system: str  # the worker group that runs it, also the prefix of its counter files
    label: str  # what the table calls it
    steps: int

    def submit(self, index: int) -> str: ...

    def finished(self, keys: Sequence[str]) -> Finished: ...

    def poll_pid(self) -> int | None:
        """The PostgreSQL backend that answers this harness's reads of finished runs, if any: its CPU is the
        harness's, not the system's, and is left out of the system's PostgreSQL CPU."""
        ...


@dataclass
class SagaVariant:
    """Our saga of ``steps`` no-op steps (``eager``: the one declared with ``eager = True``, on the same
    workers); terminal state and time from ``SagaRun``."""

    steps: int
    database_url: str
    eager: bool = False
    system: str = "ours"
    name: str = field(init=False)
    label: str = field(init=False)

    def __post_init__(self) -> None:
        from bench.noop.sagas import BY_STEPS, EAGER_BY_STEPS

        self.name = f"{'eager' if self.eager else 'saga'}{self.steps}"
        self.label = f"our saga, {self.steps} steps{', eager' if self.eager else ''}"
        self.saga = (EAGER_BY_STEPS if self.eager else BY_STEPS)[self.steps]
        # Finished runs are read on a connection of their own (as for DBOS), so its backend's CPU can be told
        # apart from the framework's.
        self._conn = psycopg.connect(self.database_url, autocommit=True)

    def submit(self, index: int) -> str:
        with counting.counting(f"{self.name} start"):
            run = self.saga.start({"index": index})
        return str(run.pk)

    def finished(self, keys: Sequence[str]) -> Finished:
        from sagas.states import RunStatus

        terminal = [RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.CANCELLED, RunStatus.FAILED]
        rows = self._conn.execute(
            "SELECT id, status, finished_at, updated_at FROM sagas_sagarun WHERE id = ANY(%s) AND status = ANY(%s)",
            ([uuid.UUID(key) for key in keys], [str(status) for status in terminal]),
        ).fetchall()
        return {
            str(pk): (status == RunStatus.COMPLETED, (finished_at or updated_at).timestamp())
            for pk, status, finished_at, updated_at in rows
        }

    def poll_pid(self) -> int | None:
        return int(self._conn.info.backend_pid)

    def close(self) -> None:
        self._conn.close()


@dataclass
class ChainVariant:
    """``chain(task.si(run, 0), ..., task.si(run, steps - 1))``; terminal state and time from the last task's
    result key in Redis (``date_done``), read with MGET, never by waiting on ``AsyncResult.get()``."""

    steps: int
    queue: str
    redis: Any  # a redis.Redis on the broker's db, for reading result keys
    own_commands: Any  # collections.Counter of the commands this process sends for reading
    write_row: bool = False
    system: str = "chain"
    name: str = field(init=False)
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"chain{'pg' if self.write_row else ''}{self.steps}"
        self.label = f"Celery chain{' + PG row' if self.write_row else ''}, {self.steps} tasks"

    def submit(self, index: int) -> str:
        from celery import chain

        from bench.noop.tasks import noop, noop_row

        task = noop_row if self.write_row else noop
        run = f"{self.name}-{index}-{uuid.uuid4().hex[:8]}"
        canvas = chain(*(task.si(run, step).set(queue=self.queue) for step in range(self.steps)))
        return str(canvas.apply_async().id)  # the id of the last task

    def poll_pid(self) -> int | None:
        return None  # it reads Redis

    def finished(self, keys: Sequence[str]) -> Finished:
        if not keys:
            return {}
        self.own_commands["mget"] += 1
        done: Finished = {}
        for key, raw in zip(keys, self.redis.mget([RESULT_KEY + key for key in keys]), strict=True):
            if raw is None:
                continue
            meta = json.loads(raw)
            if meta.get("status") in CELERY_READY:
                done[key] = (meta["status"] == "SUCCESS", _timestamp(meta["date_done"]))
        return done


@dataclass
class DbosVariant:
    """A DBOS workflow of ``steps`` no-op steps, enqueued with DBOSClient; terminal state and time from
    ``dbos.workflow_status``."""

    steps: int
    client: Any  # dbos.DBOSClient
    queue: str
    database_url: str
    system: str = "dbos"
    name: str = field(init=False)
    label: str = field(init=False)

    def __post_init__(self) -> None:
        import psycopg

        self.name = f"dbos{self.steps}"
        self.label = f"DBOS workflow, {self.steps} steps"
        self._conn = psycopg.connect(self.database_url, autocommit=True)

    def submit(self, index: int) -> str:
        from bench.dbos_worker import WORKFLOW

        with counting.counting(f"{self.name} start"):
            handle = self.client.enqueue({"workflow_name": WORKFLOW, "queue_name": self.queue}, self.steps)
        return str(handle.get_workflow_id())

    def finished(self, keys: Sequence[str]) -> Finished:
        rows = self._conn.execute(
            "SELECT workflow_uuid, status, updated_at FROM dbos.workflow_status "
            "WHERE workflow_uuid = ANY(%s) AND status = ANY(%s)",
            (list(keys), DBOS_TERMINAL),
        ).fetchall()
        return {key: (status == "SUCCESS", updated_at / 1000) for key, status, updated_at in rows}

    def poll_pid(self) -> int | None:
        return int(self._conn.info.backend_pid)

    def close(self) -> None:
        self._conn.close()


def count_sqlalchemy() -> None:
    """Count the SQL of this process's SQLAlchemy engines (the DBOS client's) into ``counting.COUNTER``,
    which counts only inside ``counting.counting(...)``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def before_cursor_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counting.COUNTER.add("statements")
        counting.COUNTER.add("sql " + counting.shape(statement))

    def begin(conn: Any) -> None:
        counting.COUNTER.add("transactions")

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    event.listen(Engine, "begin", begin)


def _timestamp(value: str) -> float:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
