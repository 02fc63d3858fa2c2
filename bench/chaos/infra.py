"""The infrastructure soak: PlaceOrder and BookTrip runs while a seeded scheduler kills workers, restarts PostgreSQL and
Redis, terminates the workers' backends and slows, stalls or cuts their connections; then the history checker.

    python -m bench.chaos --infra [--runs 10000] [--minutes 30] [--seed 19] [--fault-every 5] [--workers 2]

Everything it hurts is its own: a PostgreSQL cluster and a redis-server on free loopback ports (temporary
directories, removed at the end), worker processes and celery beat, which reach both servers through a
fault-injecting proxy (bench/chaos/proxy.py); the soak itself starts runs and checks them over direct
connections. The seed and the fault schedule are printed first: the same seed gives the same payloads and the
same faults at the same offsets. The last line is
``chaos: runs=<n> lost=<n> doubled=<n> misordered=<n> unsettled=<n> faults=<kind:count,...> p99_settle_s=<x>``;
the exit status is 0 only when the four counts are 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos import faults as fault_kinds
from bench.chaos.faults import Fault, FaultLog, Inflicted
from bench.chaos.processes import INHERITED_PREFIXES, ROOT, Process, clean_environment
from bench.chaos.proxy import FaultProxy
from bench.chaos.servers import PrivatePostgres, PrivateRedis
from sagaproject import commands

DATABASE = "sagas_chaos"
QUEUE = "chaos-infra"


@dataclass
class Config:
    runs: int = 10_000
    seconds: float = 1800.0
    seed: int = 19
    workers: int = 2  # worker instances, each with `concurrency` pool processes
    concurrency: int = 2
    fault_every: float = 5.0  # mean seconds between faults
    kinds: tuple[str, ...] = fault_kinds.KINDS  # the kinds of fault inflicted (all, unless isolating one)
    trips: float = 0.4  # share of BookTrip runs
    planned: float = 0.15  # share of runs that plan failures of their own steps
    lease: int = 5  # SAGAS["LEASE_SECONDS"]
    task_time_limit: int = 20
    redeliver_after: int = 30  # SAGAS["OUTBOX_REDELIVER_AFTER"]: a lost delivery is sent again this soon
    drain_timeout: float = 600.0  # after the soak, how long the last runs (and receivers) may take to settle
    log_dir: Path = field(default_factory=lambda: ROOT / ".chaos" / "infra")


class InfraSoak:
    """One soak: its servers, proxy and processes, the runs it started and the faults it inflicted."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.targets = random.Random(f"targets:{config.seed}")  # which worker a kill hits
        self.schedule = fault_kinds.schedule(config.seed, config.seconds, config.fault_every, config.kinds)
        self.log = FaultLog()
        self.lock = threading.Lock()  # the worker list, shared by the fault thread and the supervisor
        self.workers: list[Process] = []
        self.beat: Process | None = None
        self.crashes: Counter[str] = Counter()  # processes that died without being killed
        self.serial = 0
        self.stop = threading.Event()
        self.faults: threading.Thread | None = None
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.pg: PrivatePostgres | None = None
        self.redis: PrivateRedis | None = None
        self.proxy: FaultProxy | None = None
        try:
            self.pg = PrivatePostgres()
            self.redis = PrivateRedis()
            self.proxy = FaultProxy()
            self.pg_port = self.proxy.add("pg", self.pg.port)
            self.redis_port = self.proxy.add("redis", self.redis.port)
        except BaseException:
            self.close()
            raise
        self.env = {
            **clean_environment(),
            "DJANGO_SETTINGS_MODULE": "sagaproject.settings",
            "DJANGO_SECRET_KEY": f"chaos-{uuid.uuid4().hex}",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg_port}/{DATABASE}",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CELERY_TASK_DEFAULT_QUEUE": QUEUE,
            "CELERY_TASK_TIME_LIMIT": str(config.task_time_limit),
            "CELERY_TASK_SOFT_TIME_LIMIT": str(config.task_time_limit - 2),
            "SAGAS_LEASE_SECONDS": str(config.lease),
            "SAGAS_REAPER_INTERVAL": "2",
            # A delivery the broker lost is published again this long after the last publish.
            "SAGAS_OUTBOX_REDELIVER_AFTER": str(config.redeliver_after),
            "PYTHONUNBUFFERED": "1",
        }

    def direct_environment(self) -> dict[str, str]:
        """This process's: the same settings, straight to the servers."""
        assert self.pg is not None
        assert self.redis is not None
        return {
            **self.env,
            "DATABASE_URL": self.pg.url(DATABASE),
            "REDIS_URL": self.redis.url(0),
            "CELERY_BROKER_URL": self.redis.url(0),
        }

    # --- processes ---

    def start_worker(self) -> Process:
        self.serial += 1
        name = f"worker-{self.serial}"
        argv = commands.celery_worker(queue=QUEUE, hostname=f"{name}@%h", concurrency=self.config.concurrency,
                                      loglevel="WARNING")  # fmt: skip
        argv[2] = "bench.chaos.worker"  # `python -m celery ...` as `python -m bench.chaos.worker ...`: planned failures
        worker = Process(name, argv, self.env, self.config.log_dir)
        self.workers.append(worker)
        return worker

    def start_beat(self) -> None:
        argv = commands.celery_beat(schedule_file=str(self.config.log_dir / "beat-schedule"), loglevel="WARNING")
        self.beat = Process(f"beat-{self.serial}", argv, self.env, self.config.log_dir)

    def supervise(self) -> None:
        """A worker or beat that died by itself (not killed by a fault) is counted and started again."""
        with self.lock:
            for worker in [w for w in self.workers if not w.alive()]:
                self.crashes[f"{worker.name} exited {worker.popen.returncode}"] += 1
                worker.kill()
                self.workers.remove(worker)
                self.start_worker()
            if self.beat is not None and not self.beat.alive():
                self.crashes[f"beat exited {self.beat.popen.returncode}"] += 1
                self.beat.kill()
                self.serial += 1
                self.start_beat()

    # --- faults ---

    def inflict_schedule(self, started: float) -> None:
        from django.utils import timezone

        for fault in self.schedule:
            if self.stop.wait(max(0.0, started + fault.at - time.monotonic())):
                return
            begun = timezone.now()
            detail, error = "", ""
            try:
                detail = self.inflict(fault)
            except Exception as exc:  # a fault that could not be inflicted is logged and not counted
                error = f"could not inflict: {exc!r}"
            self.log.add(Inflicted(fault, begun, timezone.now(), detail, error))
            print(f"  {fault.at:7.1f}s {fault} {detail}{error}".rstrip(), flush=True)

    def inflict(self, fault: Fault) -> str:
        assert self.pg is not None
        assert self.proxy is not None
        assert self.redis is not None
        kind = fault.kind
        if kind in ("kill_pool", "kill_worker"):
            return self.kill(whole=kind == "kill_worker")
        if kind.startswith("pg_restart_"):
            self.pg.restart(kind.removeprefix("pg_restart_"))
            return ""
        if kind == "pg_terminate":
            return f"({self.pg.terminate(self.proxy.client_ports('pg'))} backends)"
        if kind in ("redis_restart", "redis_wipe"):
            self.redis.restart(keep_data=kind == "redis_restart")
            return ""
        route, what = kind.split("_", 1)
        route = "pg" if route == "pg" else "redis"
        if what == "latency":
            self.proxy.latency(route, fault.delay, fault.seconds)
        elif what == "stall":
            self.proxy.stall(route, fault.seconds)
        else:
            return f"({self.proxy.cut(route)} connections)"
        return ""

    def kill(self, *, whole: bool) -> str:
        with self.lock:
            alive = [w for w in self.workers if w.alive()]
            if not alive:
                raise RuntimeError("no worker alive")
            if not whole:
                # A worker started by the last whole-worker kill may not have forked its pool yet.
                pools = [(worker, children) for worker in alive if (children := worker.children())]
                if not pools:
                    raise RuntimeError("no worker has a pool process")
                target, children = self.targets.choice(pools)
                pid = self.targets.choice(children)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return f"({target.name} pid {pid})"
            target = self.targets.choice(alive)
            target.kill()
            self.workers.remove(target)
            replacement = self.start_worker()
            return f"({target.name}; {replacement.name} started)"

    # --- the soak ---

    def run(self) -> int:
        from django.db import connections

        from bench.chaos import history
        from bench.chaos.workload import Workload, ledger, seed
        from sagas.recovery import ensure_reaper_schedule

        config = self.config
        ensure_reaper_schedule()
        shop = seed(QUEUE, scale=-(-config.runs // 1000))  # as much to sell per 1,000 runs as the worker-kill soak
        ledger_before = ledger()
        workload = Workload(shop, random.Random(f"runs:{config.seed}"), trips=config.trips, planned=config.planned)
        for _ in range(config.workers):
            self.start_worker()
        self.start_beat()
        time.sleep(5)  # let the workers connect before the first fault
        started = time.monotonic()
        faults = self.faults = threading.Thread(
            target=self.inflict_schedule, args=(started,), name="faults", daemon=True
        )
        faults.start()
        run_ids: list[uuid.UUID] = []
        spread = config.seconds * 0.9  # runs start during the first 90% of the soak
        try:
            for number in range(config.runs):
                saga, payload = workload.next(number)
                run_ids.append(start_run(saga, payload, f"{QUEUE}-{number}"))
                self.supervise()
                due = started + spread * (number + 1) / config.runs
                time.sleep(max(0.0, due - time.monotonic()))
            while not self.stop.wait(max(0.0, min(1.0, started + config.seconds - time.monotonic()))):
                if time.monotonic() >= started + config.seconds:
                    break
                self.supervise()
        finally:
            self.stop.set()
            faults.join()
            assert self.proxy is not None
            self.proxy.calm()
        soak = time.monotonic() - started
        print(f"soak: {soak:.0f} s; draining (at most {config.drain_timeout:.0f} s)", flush=True)
        drained = self.drain(run_ids)
        connections.close_all()
        checking = time.monotonic()
        verdict = history.check(run_ids, shop, ledger_before)
        counts = self.log.counts()
        print(f"runs by status: {verdict.by_status}; drained in {drained:.0f} s, checked in "
              f"{time.monotonic() - checking:.0f} s")  # fmt: skip
        failed_faults = [entry for entry in self.log.entries if entry.error]
        if failed_faults:
            first_failed = failed_faults[0]
            print(f"faults not inflicted: {len(failed_faults)} (first: {first_failed.fault}: {first_failed.error})")
        if self.crashes:
            print(f"processes that died by themselves (started again): {dict(self.crashes)}")
        for category in history.CATEGORIES:
            print(f"{category}: {verdict.count(category)}")
        # The first violation of each category, with its run's timeline, then a few more by name.
        firsts = {v.category: v for v in reversed(verdict.violations)}
        for category in history.CATEGORIES:
            if category in firsts:
                first = firsts[category]
                print(f"first {category} violation: run {first.run_id}: {first.message}")
                if first.run_id is not None:
                    print(history.timeline(first.run_id, self.log))
        for violation in verdict.violations[:20]:
            print(f"  {violation.category}: run {violation.run_id}: {violation.message}")
        print(
            f"chaos: runs={verdict.runs} lost={verdict.count('lost')} doubled={verdict.count('doubled')} "
            f"misordered={verdict.count('misordered')} unsettled={verdict.count('unsettled')} "
            f"faults={fault_kinds.summary(counts)} p99_settle_s={verdict.p99():.2f}",
            flush=True,
        )
        return 0 if verdict.ok else 1

    def drain(self, run_ids: list[uuid.UUID]) -> float:
        """Wait until every run has finished and every outbox message has reached its receivers; seconds taken."""
        from django.db import Error, connections

        from sagas.models import SagaOutbox, SagaReceipt, SagaRun
        from sagas.states import FINISHED_RUN_STATES

        begun = time.monotonic()
        while time.monotonic() - begun < self.config.drain_timeout:
            self.supervise()
            try:
                unfinished = SagaRun.objects.filter(pk__in=run_ids).exclude(status__in=FINISHED_RUN_STATES).exists()
                messages = SagaOutbox.objects.filter(run__in=run_ids)
                unreceived = messages.filter(published_at__isnull=True).exists() or (
                    SagaReceipt.objects.filter(message_id__in=messages.values("id")).count() < _receipts_due(messages)
                )
            except Error:  # the soak's own connection, hurt before the faults stopped: read again
                connections.close_all()
                unfinished = unreceived = True
            if not unfinished and not unreceived:
                break
            time.sleep(1)
        return time.monotonic() - begun

    def close(self) -> None:
        self.stop.set()
        if self.faults is not None:
            self.faults.join(timeout=60)  # a fault under way (a restart, a new worker) ends before the clean-up
        for process in [*self.workers, *([self.beat] if self.beat else [])]:
            process.stop()
        if self.proxy is not None:
            self.proxy.close()
        if self.redis is not None:
            self.redis.close()
        if self.pg is not None:
            self.pg.close()


def _terminate(*_: Any) -> None:
    """The first SIGTERM unwinds; a second one (a process group signalled twice) must not cut the clean-up short,
    or the fault thread outlives it and leaves a worker or a server behind."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(143)


def _receipts_due(messages: Any) -> int:
    """The receipts ``messages`` owe: one per receiver each was published to, summed by the database (read into
    Python, tens of thousands of messages every second took much of a core from the workers)."""
    from django.db.models import F, Func, IntegerField, Sum

    receivers = Func(F("receivers"), function="jsonb_array_length", output_field=IntegerField())
    due = messages.filter(published_at__isnull=False).aggregate(due=Sum(receivers))["due"]
    return int(due or 0)


def start_run(saga: Any, payload: dict[str, Any], key: str, patience: float = 120.0) -> uuid.UUID:
    """Start a run, again with the same idempotency key while PostgreSQL or Redis is away (a start that did commit
    returns its run): the soak's own connections suffer restarts too."""
    import kombu.exceptions
    import redis
    from django.db import Error, connections

    deadline = time.monotonic() + patience
    while True:
        try:
            return uuid.UUID(str(saga.start(payload, idempotency_key=key).pk))
        except (Error, redis.RedisError, kombu.exceptions.OperationalError, OSError):
            if time.monotonic() > deadline:
                raise
            connections.close_all()
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None, help="a random one, printed, when not given")
    parser.add_argument("--fault-every", type=float, default=5.0, help="mean seconds between faults")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", default=",".join(fault_kinds.KINDS), help="the kinds of fault, comma-separated")
    parser.add_argument("--drain", type=float, default=600.0, help="seconds the last runs may take to settle")
    parser.add_argument("--log-dir", type=Path, default=ROOT / ".chaos" / "infra")
    args = parser.parse_args(argv)
    kinds = tuple(kind for kind in args.kinds.split(",") if kind)
    unknown = sorted(set(kinds) - set(fault_kinds.KINDS))
    if unknown or not kinds:
        named = ", ".join(unknown) or "(none given)"
        parser.error(f"--kinds: unknown {named}; the kinds are {', '.join(fault_kinds.KINDS)}")
    seed_value = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    config = Config(runs=args.runs, seconds=args.minutes * 60, seed=seed_value, workers=args.workers,
                    fault_every=args.fault_every, kinds=kinds, drain_timeout=args.drain,
                    log_dir=args.log_dir)  # fmt: skip
    shutil.rmtree(config.log_dir, ignore_errors=True)
    # SIGTERM unwinds as Ctrl-C does, so the servers and processes below are stopped and removed; and Ctrl-C does
    # even where SIGINT came ignored (a job started in the background by a non-interactive shell).
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    replay = (f"python -m bench.chaos --infra --seed {config.seed} --runs {config.runs} --minutes {args.minutes:g} "
              f"--fault-every {config.fault_every:g} --workers {config.workers}"
              + ("" if kinds == fault_kinds.KINDS else f" --kinds {args.kinds}"))  # fmt: skip
    print(f"chaos-infra: seed={config.seed} (replay: {replay}); logs in {config.log_dir}", flush=True)
    soak = InfraSoak(config)
    try:
        print(f"faults scheduled: {fault_kinds.summary(Counter(f.kind for f in soak.schedule))}", flush=True)
        for name in [name for name in os.environ if name.startswith(INHERITED_PREFIXES)]:
            del os.environ[name]
        os.environ.update(soak.direct_environment())
        import django
        from django.core.management import call_command

        from bench.chaos.processes import create_database

        assert soak.pg is not None
        create_database(soak.pg.admin_url, DATABASE)
        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        return soak.run()
    finally:
        from django.db import connections

        with contextlib.suppress(Exception):
            connections.close_all()
        soak.close()


if __name__ == "__main__":
    sys.exit(main())
