"""Rebuilding a long run from its event log, with and without snapshots.

    python -m bench.rebuild [--attempts 500] [--snapshot-every 100] [--repeat 5]

Creates (and drops) its own PostgreSQL database, writes one run whose step fails ``attempts - 1`` times before
it succeeds (two events per attempt, so about ``2 * attempts`` events) through the real services, in this
process, then times ``sagas.rebuild`` (latest snapshot + the events after it) against a fold of the whole log,
and checks both against the stored rows. Prints the figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from typing import Any

from bench.chaos.processes import create_database, drop_database


def measure(attempts: int, repeat: int) -> dict[str, Any]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    import sagas
    from sagas import eventlog, runner
    from sagas.models import SagaEvent, SagaRun

    def flaky(ctx: sagas.StepContext) -> dict[str, int]:
        if ctx.attempt < attempts:
            raise sagas.TransientError(f"attempt {ctx.attempt} fails")
        return {"attempts": ctx.attempt}

    class LongRun(sagas.Saga):
        name = "bench.long_run"
        steps = [sagas.Step(flaky, retry=sagas.RetryPolicy(max_attempts=attempts, backoff=0, jitter=False))]

    started = time.perf_counter()
    run = LongRun.start({})
    for attempt in range(1, attempts + 1):
        runner.execute_step(run_id=str(run.pk), step="flaky", task_id=f"{run.pk}:flaky:{attempt}")
    write_seconds = time.perf_counter() - started
    run = SagaRun.objects.get(pk=run.pk)

    def timed(rebuild: Any) -> tuple[float, int, Any]:
        times, queries = [], 0
        for _ in range(repeat):
            reset_queries()  # the capture counts by position in a log capped at 9,000 queries
            with CaptureQueriesContext(connection) as captured:
                begin = time.perf_counter()
                state = rebuild()
                times.append(time.perf_counter() - begin)
            queries = len(captured)  # known once the context has exited
        return statistics.median(times), queries, state

    with_snapshot, snapshot_queries, state = timed(lambda: sagas.rebuild(run.pk))
    whole_log, whole_queries, full = timed(
        lambda: eventlog.fold(run.pk, SagaEvent.objects.filter(run_id=run.pk).order_by("seq"))
    )
    problems = state.differences(run) + full.differences(run)
    return {
        "events": run.lock_version,
        "write_seconds": round(write_seconds, 2),
        "snapshot_seq": state.snapshot_seq,
        "events_folded_with_snapshot": state.folded,
        "rebuild_with_snapshot_ms": round(with_snapshot * 1000, 2),
        "rebuild_with_snapshot_queries": snapshot_queries,
        "fold_whole_log_ms": round(whole_log * 1000, 2),
        "fold_whole_log_queries": whole_queries,
        "speedup": round(whole_log / with_snapshot, 1),
        "rows_match": not problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=500)
    parser.add_argument("--snapshot-every", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("CHAOS_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    args = parser.parse_args(argv)
    name = f"sagas_rebuild_{uuid.uuid4().hex[:6]}"
    queue = f"bench-rebuild-{uuid.uuid4().hex[:8]}"
    create_database(f"{args.postgres}/postgres", name)
    # Nothing consumes the queue: the start publishes its step there, and it is dropped at the end.
    os.environ.update(
        DJANGO_SETTINGS_MODULE="sagaproject.settings",
        DATABASE_URL=f"{args.postgres}/{name}",
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    settings.SAGAS = {**settings.SAGAS, "SNAPSHOT_EVERY": args.snapshot_every}
    call_command("migrate", interactive=False, verbosity=0)
    try:
        report = measure(args.attempts, args.repeat)
    finally:
        from django.db import connections

        from sagaproject.celery import app

        connections.close_all()
        drop_database(f"{args.postgres}/postgres", name)
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)
    print(f"run with {report['events']} events (written in {report['write_seconds']} s)")
    print(
        f"rebuild from snapshot #{report['snapshot_seq']} + {report['events_folded_with_snapshot']} events: "
        f"{report['rebuild_with_snapshot_ms']} ms, {report['rebuild_with_snapshot_queries']} queries"
    )
    print(
        f"fold of the whole log:   {report['fold_whole_log_ms']} ms, {report['fold_whole_log_queries']} queries "
        f"({report['speedup']}x slower)"
    )
    print(f"rebuilt state equals the stored rows: {report['rows_match']}")
    print(json.dumps(report, sort_keys=True))
    return 0 if report["rows_match"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
