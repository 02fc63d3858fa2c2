"""The worker-kill soak: PlaceOrder runs with random failures while worker processes are SIGKILLed and restarted.

    python -m bench.chaos [--runs 1000] [--minutes 5] [--workers 2] [--kill-every 3] [--seed 7]

Creates (and drops) its own PostgreSQL database, starts worker processes and celery beat (whose reaper
re-drives what the kills leave stuck), starts the runs over the first part of the soak while a killer thread
SIGKILLs a random pool process or a whole worker (then starts a new one), then waits for every run to settle
and prints: runs by final status, lost runs (never settled: must be 0), doubled effects (must be 0) and
p50/p99 time from start to a settled state. The last line is JSON. Exit status 0 only if nothing was lost or
doubled. `make test` runs a two-minute version (tests/faults/test_chaos.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.processes import ROOT, Process, create_database, drop_database
from bench.chaos.workload import Workload, effect_problems, ledger, seed
from sagaproject import commands
from sagas.states import FINISHED_RUN_STATES


@dataclass
class Config:
    runs: int = 1000
    seconds: float = 300.0
    workers: int = 2  # worker instances, each with `concurrency` pool processes
    concurrency: int = 2
    kill_every: float = 3.0  # seconds between kills
    seed: int = 7
    lease: int = 5  # SAGAS["LEASE_SECONDS"] for the soak
    task_time_limit: int = 20  # hard limit of steps without their own timeout: when a lost attempt is known lost
    drain_timeout: float = 180.0  # after the soak, how long to wait for the last runs to settle
    log_dir: Path = field(default_factory=lambda: ROOT / ".chaos")


@dataclass
class Report:
    runs: int
    by_status: dict[str, int]
    lost: int
    doubled: int
    problems: list[str]
    kills: dict[str, int]
    p50_seconds: float | None
    p99_seconds: float | None
    soak_seconds: float

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0


class Chaos:
    """One soak against a migrated database (``database_url``) and a Redis broker (``broker_url``)."""

    def __init__(self, config: Config, *, database_url: str, broker_url: str, queue: str, settings_module: str) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.queue = queue  # this process publishes to it too: its Celery app's default queue
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url,
            "TEST_DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker_url,
            "TEST_BROKER_URL": broker_url,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "CELERY_TASK_TIME_LIMIT": str(config.task_time_limit),
            "CELERY_TASK_SOFT_TIME_LIMIT": str(config.task_time_limit - 2),
            "SAGAS_LEASE_SECONDS": str(config.lease),
            "SAGAS_REAPER_INTERVAL": "2",
            "PYTHONUNBUFFERED": "1",
        }
        self.workers: list[Process] = []
        self.beat: Process | None = None
        self.kills: Counter[str] = Counter()
        self.stop_killing = threading.Event()
        self.serial = 0

    # --- processes ---

    def start_worker(self) -> Process:
        self.serial += 1
        name = f"worker-{self.serial}"
        argv = commands.celery_worker(
            queue=self.queue,
            hostname=f"{name}-{self.queue}@%h",
            concurrency=self.config.concurrency,
            loglevel="WARNING",
        )
        worker = Process(name, argv, self.env, self.config.log_dir)
        self.workers.append(worker)
        return worker

    def start_beat(self) -> None:
        argv = commands.celery_beat(schedule_file=str(self.config.log_dir / "beat-schedule"), loglevel="WARNING")
        self.beat = Process("beat", argv, self.env, self.config.log_dir)

    def killer(self) -> None:
        """SIGKILL a random pool process, or a whole worker (then start a new one), every kill_every seconds."""
        while not self.stop_killing.wait(self.config.kill_every):
            alive = [w for w in self.workers if w.popen.poll() is None]
            if not alive:
                continue
            target = self.rng.choice(alive)
            children = target.children()
            if children and self.rng.random() < 0.7:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.rng.choice(children), signal.SIGKILL)
                self.kills["pool process"] += 1
            else:
                target.kill()
                self.workers.remove(target)
                self.start_worker()
                self.kills["whole worker"] += 1

    # --- the soak ---

    def run(self) -> Report:
        from sagas.recovery import ensure_reaper_schedule

        ensure_reaper_schedule()
        workload = Workload(seed(self.queue), self.rng)
        ledger_before = ledger()
        for _ in range(self.config.workers):
            self.start_worker()
        self.start_beat()
        time.sleep(3)  # let the workers connect before the first kill
        killer = threading.Thread(target=self.killer, daemon=True)
        started = time.monotonic()
        killer.start()
        run_ids = []
        spread = self.config.seconds * 0.7  # runs start during the first 70% of the soak
        try:
            for number in range(self.config.runs):
                saga, payload = workload.next(number)
                run_ids.append(saga.start(payload, idempotency_key=f"{self.queue}-{number}").pk)
                due = started + spread * (number + 1) / self.config.runs
                time.sleep(max(0.0, due - time.monotonic()))
            time.sleep(max(0.0, started + self.config.seconds - time.monotonic()))
        finally:
            self.stop_killing.set()
            killer.join()
        soak = time.monotonic() - started
        self.wait_settled(run_ids)
        report = self.report(run_ids, ledger_before, soak)
        return report

    def wait_settled(self, run_ids: list[Any]) -> None:
        from sagas.models import SagaRun

        deadline = time.monotonic() + self.config.drain_timeout
        while time.monotonic() < deadline:
            if not SagaRun.objects.filter(pk__in=run_ids).exclude(status__in=FINISHED_RUN_STATES).exists():
                return
            time.sleep(1)

    def report(self, run_ids: list[Any], ledger_before: dict[str, Any], soak: float) -> Report:
        from sagas.models import SagaRun

        runs = list(SagaRun.objects.filter(pk__in=run_ids))
        by_status = Counter(run.status for run in runs)
        durations = sorted(
            (run.finished_at - run.created_at).total_seconds()
            for run in runs
            if run.finished_at and run.status in FINISHED_RUN_STATES
        )
        problems = effect_problems(runs, ledger_before)
        return Report(
            runs=len(runs),
            by_status=dict(sorted(by_status.items())),
            lost=sum(count for status, count in by_status.items() if status not in FINISHED_RUN_STATES),
            doubled=len(problems),
            problems=problems[:20],
            kills=dict(self.kills),
            p50_seconds=round(statistics.median(durations), 2) if durations else None,
            p99_seconds=round(durations[min(len(durations) - 1, int(len(durations) * 0.99))], 2) if durations else None,
            soak_seconds=round(soak, 1),
        )

    def close(self) -> None:
        self.stop_killing.set()
        for process in [*self.workers, *([self.beat] if self.beat else [])]:
            process.stop()


def _print(report: Report) -> None:
    print(f"runs: {report.runs} in a {report.soak_seconds:.0f} s soak; kills: {report.kills}")
    for status, count in report.by_status.items():
        print(f"  {status:<12} {count}")
    print(f"lost runs:       {report.lost}")
    print(f"doubled effects: {report.doubled}")
    for problem in report.problems:
        print(f"  {problem}")
    print(f"time to settled: p50 {report.p50_seconds} s, p99 {report.p99_seconds} s")
    print(json.dumps({k: v for k, v in asdict(report).items() if k != "problems"}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default=os.environ.get("CHAOS_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    config = Config(
        runs=args.runs, seconds=args.minutes * 60, workers=args.workers, kill_every=args.kill_every, seed=args.seed
    )
    name = f"sagas_chaos_{uuid.uuid4().hex[:6]}"
    database_url = f"{args.postgres}/{name}"
    create_database(f"{args.postgres}/postgres", name)
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="sagaproject.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=args.redis,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        SAGAS_LEASE_SECONDS=str(config.lease),
        SAGAS_REAPER_INTERVAL="2",
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    chaos = Chaos(
        config, database_url=database_url, broker_url=args.redis, queue=queue, settings_module="sagaproject.settings"
    )
    try:
        report = chaos.run()
    finally:
        chaos.close()
        from django.db import connections

        connections.close_all()
        if not args.keep_database:
            drop_database(f"{args.postgres}/postgres", name)
    _print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
