"""Purging 100,000 finished runs while sagas run: how long it takes, and how long a running saga waits.

    python -m bench.purge [--runs 100000] [--batch-size 500] [--no-worker]

Creates (and drops) its own PostgreSQL database and inserts ``--runs`` completed runs that finished 60 to 30 days
ago, each with 3 steps, 9 events and one relayed outbox message with its receipt, in one ``INSERT ... SELECT``
per table. Then it purges every run older than 30 days (``sagas.services.purge.purge_runs``, as
``manage.py saga_purge --older-than 30d`` does) while two probes run, and measures them for a few seconds before
the purge too (the baseline):

- writes: a thread repeats a step's write on a live run with the framework's statements (lock the run row,
  update a step, insert an event, move the run's lock_version), one transaction each, and records each time;
- sagas: a real Celery worker (prefork, 2 processes) runs ``bench.noop3`` sagas that this process starts one
  after another; each run's time from ``start()`` to ``completed`` is recorded (``--no-worker``: left out).

Prints the plan of the purge's batch query (EXPLAIN ANALYZE, BUFFERS, on the full table), the figures, and as
its last line:

    purge: runs=<n> seconds=<x> batches=<n> longest_batch_s=<x> probe_max_s=<x> probe_p99_s=<x>

where probe is the write probe during the purge. Exit status 1 if that probe's longest write took more than a
second, or a run old enough was left.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bench.chaos.processes import Process, create_database, drop_database
from sagaproject import commands

ROOT = Path(__file__).resolve().parent.parent
SAGA = "bench.noop3"
EVENTS = [
    ("SagaStarted", ""), ("SagaExecuting", ""), ("StepStarted", "step1"), ("StepSucceeded", "step1"),
    ("StepStarted", "step2"), ("StepSucceeded", "step2"), ("StepStarted", "step3"), ("StepSucceeded", "step3"),
    ("SagaCompleted", ""),
]  # fmt: skip
BLOCKING_LIMIT = 1.0  # seconds: the bound on how long the purge may hold up a running saga


def seed(runs: int) -> float:
    """Insert ``runs`` completed runs with their rows; the seconds it took."""
    from django.db import connection

    from sagas.models import SagaDefinition

    definition = SagaDefinition.objects.get(name=SAGA)
    types = "ARRAY[" + ", ".join(f"'{kind}'" for kind, _ in EVENTS) + "]"
    steps = "ARRAY[" + ", ".join(f"'{step}'" for _, step in EVENTS) + "]"
    statements = [
        # Finished a second apart, from 60 days ago: distinct finish times, as real runs have.
        (
            "INSERT INTO sagas_sagarun (id, definition_id, saga_name, version, status, payload, search_text, "
            "correlation_id, created_at, started_at, finished_at, updated_at, parked_reason, lock_version, "
            "parent_step) "
            "SELECT gen_random_uuid(), %s, %s, %s, 'completed', '{\"order\": 1}', '', 'seed-' || g, "
            "t - interval '2 seconds', t - interval '1 second', t, t, '', 9, '' "
            "FROM generate_series(1, %s) g, LATERAL (SELECT now() - interval '60 days' + g * interval '1 second') x(t)",
            [definition.pk, SAGA, definition.version, runs],
        ),
        (
            "INSERT INTO sagas_sagasteprun (run_id, name, index, status, attempts, compensation_attempts, output, "
            "failures, task_id, compensation_task_id, started_at, finished_at, circuit_refusals) "
            "SELECT r.id, 'step' || i, i - 1, 'succeeded', 1, 0, '{\"ok\": true}', '[]', r.id || ':step' || i || ':1', "
            "'', r.started_at, r.finished_at, 0 FROM sagas_sagarun r, generate_series(1, 3) i",
            [],
        ),
        (
            "INSERT INTO sagas_sagaevent (run_id, seq, type, step, data, actor, correlation_id, created_at) "
            f"SELECT r.id, i, ({types})[i], ({steps})[i], '{{}}', '', r.correlation_id, r.finished_at "
            f"FROM sagas_sagarun r, generate_series(1, {len(EVENTS)}) i",
            [],
        ),
        (
            "INSERT INTO sagas_sagaoutbox (id, run_id, event_id, topic, message, created_at, published_at, attempts) "
            "SELECT gen_random_uuid(), e.run_id, e.id, %s, '{}', e.created_at, e.created_at, 0 "
            "FROM sagas_sagaevent e WHERE e.type = 'SagaCompleted'",
            [f"{SAGA}.completed"],
        ),
        (
            "INSERT INTO sagas_sagareceipt (receiver, message_id, received_at, duplicates) "
            "SELECT 'bench.ledger', o.id, o.published_at, 0 FROM sagas_sagaoutbox o",
            [],
        ),
    ]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def explain_batch_query(batch_size: int) -> str:
    """The plan of the purge's batch query (its first batch) on the seeded table."""
    from django.db import transaction
    from django.utils import timezone

    from sagas.models import SagaRun
    from sagas.services.purge import DEFAULT_STATUSES

    runs = SagaRun.objects.filter(
        parent__isnull=True, status__in=sorted(DEFAULT_STATUSES), finished_at__lt=timezone.now() - timedelta(days=30)
    ).order_by("finished_at", "id")
    with transaction.atomic():
        plan = runs.select_for_update(skip_locked=True).values_list("id", "finished_at")[:batch_size]
        text = plan.explain(analyze=True, buffers=True)
        transaction.set_rollback(True)
    return text


class Probe:
    """Runs ``once`` in a thread, again and again, recording how long each call took, until stopped."""

    def __init__(self, name: str, once: Callable[[], None]) -> None:
        self.name, self.once = name, once
        self.times: list[float] = []
        self.mark = 0  # the index where the current window began
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def window(self) -> list[float]:
        """The times since the last call, and start a new window."""
        taken, self.mark = self.times[self.mark :], len(self.times)
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)

    def _loop(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                begin = time.perf_counter()
                self.once()
                self.times.append(time.perf_counter() - begin)
                time.sleep(0.002)
        except BaseException as exc:  # reported by the main thread
            self.failure = exc
        finally:
            connection.close()


def write_probe() -> Callable[[], None]:
    """A live run's step write, in the framework's statements and order (services/_statement.write)."""
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from sagas.models import SagaDefinition, SagaEvent, SagaRun, SagaStepRun
    from sagas.states import EventType, RunStatus

    definition = SagaDefinition.objects.get(name=SAGA)
    run = SagaRun.objects.create(
        definition=definition, saga_name=SAGA, version=definition.version, status=RunStatus.EXECUTING,
        correlation_id="probe", started_at=timezone.now(),
    )  # fmt: skip
    step = SagaStepRun.objects.create(run=run, name="step1", index=0, status="running")

    def once() -> None:
        with transaction.atomic():
            seq = SagaRun.objects.select_for_update().values_list("lock_version", flat=True).get(pk=run.pk) + 1
            SagaRun.objects.filter(pk=run.pk).update(lock_version=seq, updated_at=timezone.now())
            SagaStepRun.objects.filter(pk=step.pk).update(attempts=F("attempts") + 1, task_id=f"probe:{seq}")
            SagaEvent.objects.create(
                run_id=run.pk, seq=seq, type=EventType.STEP_ATTEMPT_FAILED, step="step1", data={"attempt": seq},
                correlation_id="probe",
            )  # fmt: skip

    return once


def saga_probe() -> Callable[[], None]:
    """Start a bench.noop3 saga and wait until the worker has completed it."""
    from sagas.models import SagaRun
    from sagas.registry import get_saga

    saga = get_saga(SAGA)

    def once() -> None:
        run = saga.start({})
        deadline = time.monotonic() + 120
        while SagaRun.objects.filter(pk=run.pk).values_list("status", flat=True).get() != "completed":
            if time.monotonic() > deadline:
                raise RuntimeError(f"saga run {run.pk} did not complete within 120 s: is the worker up?")
            time.sleep(0.005)

    return once


def figures(times: list[float]) -> dict[str, float]:
    if not times:
        return {"count": 0, "p50_s": 0.0, "p99_s": 0.0, "max_s": 0.0}
    ordered = sorted(times)
    return {
        "count": len(ordered),
        "p50_s": round(statistics.median(ordered), 4),
        "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
        "max_s": round(ordered[-1], 4),
    }


def measure(args: argparse.Namespace, worker: bool) -> int:
    from django.db import connection
    from django.utils import timezone

    from sagas.models import SagaRun
    from sagas.services.purge import purge_runs

    print(f"seeding {args.runs} completed runs (3 steps, 9 events, 1 outbox message and its receipt each)...")
    print(f"seeded in {seed(args.runs):.1f}s")
    print("the batch query's plan (first batch, EXPLAIN ANALYZE, BUFFERS):")
    print("  " + explain_batch_query(args.batch_size).replace("\n", "\n  "))
    probes = [Probe("writes", write_probe())]
    if worker:
        started = saga_probe()
        started()  # the first run waits for the worker to boot: not a figure
        probes.append(Probe("sagas", started))
    for probe in probes:
        probe.start()
    time.sleep(args.baseline)
    baseline = {probe.name: figures(probe.window()) for probe in probes}
    report = purge_runs(older_than=timedelta(days=30), batch_size=args.batch_size)
    during = {probe.name: figures(probe.window()) for probe in probes}
    for probe in probes:
        probe.stop()
        if probe.failure is not None:
            raise RuntimeError(f"the {probe.name} probe failed") from probe.failure
    left = SagaRun.objects.filter(finished_at__lt=timezone.now() - timedelta(days=30)).count()
    connection.close()

    print(
        f"purged {report.runs} runs in {report.seconds:.2f}s ({report.runs / max(report.seconds, 1e-9):.0f} runs/s), "
        f"{report.batches} batches of {args.batch_size}, the longest {report.longest_batch_seconds:.3f}s; "
        f"left behind: {left}"
    )
    print("rows deleted: " + ", ".join(f"{table} {count}" for table, count in report.rows.items()))
    for name in during:
        base, busy = baseline[name], during[name]
        print(
            f"{name:6} probe: baseline ({args.baseline:.0f}s) n={base['count']} p50={base['p50_s']}s "
            f"p99={base['p99_s']}s max={base['max_s']}s | during the purge n={busy['count']} p50={busy['p50_s']}s "
            f"p99={busy['p99_s']}s max={busy['max_s']}s"
        )
    writes = during["writes"]
    line = (
        f"purge: runs={report.runs} seconds={report.seconds:.2f} batches={report.batches} "
        f"longest_batch_s={report.longest_batch_seconds:.3f} probe_max_s={writes['max_s']} "
        f"probe_p99_s={writes['p99_s']}"
    )
    if "sagas" in during:
        line += f" saga_max_s={during['sagas']['max_s']} saga_p99_s={during['sagas']['p99_s']}"
    print(line)
    return 0 if writes["max_s"] <= BLOCKING_LIMIT and not left and report.runs == args.runs else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of probes before the purge")
    parser.add_argument("--no-worker", dest="worker", action="store_false", help="leave out the saga probe")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    name = f"sagas_purge_{uuid.uuid4().hex[:6]}"
    queue = f"bench-purge-{uuid.uuid4().hex[:8]}"
    create_database(f"{args.postgres}/postgres", name)
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": f"{args.postgres}/{name}",
        "CELERY_BROKER_URL": args.redis,
        "REDIS_URL": args.redis,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-not-a-secret",
    }
    os.environ.update(env)
    worker = None
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        if args.worker:
            log_dir = ROOT / "bench" / "results" / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            argv_ = commands.celery_worker(queue=queue, hostname=f"{queue}@%h", concurrency=2, loglevel="WARNING")
            worker = Process(queue, argv_, {**os.environ, **env, "PYTHONUNBUFFERED": "1"}, log_dir)
        return measure(args, worker is not None)
    finally:
        if worker is not None:
            worker.stop()
        from django.db import connections

        from sagaproject.celery import app

        connections.close_all()
        if not args.keep_database:
            drop_database(f"{args.postgres}/postgres", name)
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)


if __name__ == "__main__":
    raise SystemExit(main())
