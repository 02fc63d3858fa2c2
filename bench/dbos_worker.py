"""A DBOS Transact worker for the throughput benchmark: ``python -m bench.dbos_worker`` (started by it).

Runs the ``bench_noop`` workflow (``steps`` no-op steps) from one queue, in threads, as DBOS does, and
counts the SQL it sends (SQLAlchemy events) into a JSON file, like the Celery workers' counters.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

APP_NAME = "sagas-bench"
WORKFLOW = "bench_noop"


@DBOS.step()
def noop_step(index: int) -> None:
    return None


@DBOS.workflow(name=WORKFLOW)
def bench_noop(steps: int) -> None:
    for index in range(steps):
        noop_step(index)


def count_sql(counts: Counter[str], lock: threading.Lock) -> None:
    """Count statements (by verb) and transactions of every SQLAlchemy engine in this process."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    from bench.noop.counting import shape

    def before_cursor_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with lock:
            counts["statements"] += 1
            counts["sql " + shape(statement)] += 1

    def begin(conn: Any) -> None:
        with lock:
            counts["transactions"] += 1

    def connect(dbapi_connection: Any, record: Any) -> None:
        with lock:
            counts["connections"] += 1

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    event.listen(Engine, "begin", begin)
    event.listen(Pool, "connect", connect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--executor-id", required=True)
    parser.add_argument("--polling-interval", type=float, default=0.05)
    parser.add_argument("--counts-file", type=Path)
    args = parser.parse_args(argv)
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    if args.counts_file:
        count_sql(counts, lock)
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": args.database_url,
        "executor_id": args.executor_id,
        "application_version": "bench",
        "log_level": "WARNING",
        "run_migrations": False,  # the benchmark migrated the system database before starting its workers
    }
    DBOS(config=config)
    DBOS.launch()
    DBOS.register_queue(args.queue, polling_interval_sec=args.polling_interval)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    written: dict[str, int] = {}
    while not stop.wait(0.1):
        if args.counts_file:
            with lock:
                current = dict(counts)
            if current != written:
                from bench.noop.counting import write

                write(args.counts_file, {"dbos workers (workflows, queue polling)": current})
                written = current
    DBOS.destroy()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
