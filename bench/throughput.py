"""Throughput and latency of our sagas against bare Celery chains and DBOS Transact, in one run.

    python -m bench [--runs 200] [--rounds 3] [--warmup 30] [--steps 3,5] [--inflight 16] [--only saga3,chain3]
                    [--no-dbos]

Creates (and drops) its own PostgreSQL database, uses its own queues on one Redis db, and starts the workers
it measures: one Celery worker (prefork, 2 processes, the project's Celery settings) for our sagas, in the
default mode (saga3, saga5) and declared ``eager = True`` (eager3, eager5), one for the bare chains (the same,
but with the Redis result backend), and two DBOS worker processes when ``import dbos`` works and ``--no-dbos``
is not given. Every variant runs ``--warmup`` runs first; then each round runs ``--runs`` runs of every variant
in turn (A B C A B C ...), keeping ``--inflight`` runs in flight, followed by ``--solo`` runs one at a time.
Completion is read from where each system stores it (our SagaRun rows, the chain's result key in Redis, DBOS's
workflow_status rows), never by waiting on a result. Prints a table of medians [min-max] over the rounds and
the ratios, writes everything to bench/results/, then prints issue 13's targets with PASS or MISS and, as its
last line (one line, wrapped here):

    ratios: ours/chain3=<x> ours/chainpg3=<y> ours/dbos3=<z> eager/dbos3=<w> sql_per_step=<n>
            tx_per_step=<t> pg_cpu/chainpg3=<p> worker_cpu/chainpg3=<q> rss_growth=<pct>

ours/X is saga3's runs/s over X's and eager/dbos3 eager3's over dbos3's (medians over the rounds);
sql_per_step and tx_per_step are saga3's statements and transactions per step sent by the workers (the
starts, sent by this process, left out); pg_cpu/chainpg3 and worker_cpu/chainpg3 are saga3's PostgreSQL and
worker CPU per run over chainpg3's; rss_growth is our worker's RSS growth from after the warm-up to the end,
in percent. Ratios and counts have 2 decimals, the percent 1; a figure not measured (a variant left out by
``--only`` or ``--steps``, DBOS skipped) is ``skipped``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import probes, report
from bench.chaos.processes import Process, create_database, drop_database
from bench.noop import counting
from bench.variants import ChainVariant, DbosVariant, SagaVariant, Variant, count_sqlalchemy
from sagaproject import commands

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
Record = tuple[float, float, bool]  # a run: submitted at, finished at (epoch seconds), succeeded
PEERS_HINT = "pip install -r bench/requirements-peers.txt (make bench installs it)"


@dataclass
class Config:
    runs: int = 200  # measured runs per variant per round
    rounds: int = 3
    warmup: int = 30  # runs per variant before the first round, not measured
    steps: tuple[int, ...] = (3, 5)
    inflight: int = 16  # runs kept in flight during a measured window
    solo: int = 10  # runs one at a time after each window: latency without queueing
    concurrency: int = 2  # pool processes per Celery worker; DBOS gets as many worker processes
    only: tuple[str, ...] = ()  # variant names to run (saga3, eager3, chain3, chainpg3, dbos3, ...); empty: all
    dbos: bool = True  # False: DBOS is neither started nor measured, even when installed
    poll: float = 0.01  # seconds between two reads of the runs in flight
    settle: float = 0.5  # seconds after the last run of a window before the counters are read
    idle_probe: float = 1.0  # seconds of Redis traffic measured before each window, with every worker idle
    dbos_polling: float = 0.05  # DBOS queue polling interval (its default is 1 s)
    window_timeout: float = 0.0  # seconds; 0: 60 + 0.5 s per run

    def timeout(self, runs: int) -> float:
        return self.window_timeout or 60.0 + 0.5 * runs


@dataclass
class Window:
    """What one variant did in one measured window."""

    variant: str
    round: int
    runs: int
    completed: int
    failed: int
    lost: int
    seconds: float
    runs_per_s: float
    steps_per_s: float
    latency_ms: dict[str, float]
    solo_ms: list[float]
    sql: dict[str, dict[str, int]]  # label (task name, or "<variant> start") -> counts
    redis: dict[str, float]  # command -> calls, after removing our own reads and the idle rate
    redis_raw_total: int
    rss_peak: int
    harness_cpu_s: float  # CPU time of this process (submitting and polling) during the window
    cpu_ms_per_run: dict[str, float] = field(default_factory=dict)  # workers, postgres, redis: CPU per run
    per_step: dict[str, float] = field(default_factory=dict)


class Bench:
    def __init__(
        self, config: Config, *, database_url: str, redis_url: str, queues: dict[str, str], log_dir: Path
    ) -> None:
        import redis

        self.config = config
        self.database_url = database_url
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.counts_dir = Path(tempfile.mkdtemp(prefix="sagas-bench-counts-"))
        self.redis = redis.Redis.from_url(redis_url)
        self.own: Counter[str] = Counter()  # Redis commands this process sends to read results
        self.queues = queues  # system -> its queue
        self.chosen: list[Variant] = []
        self.workers: dict[str, list[Process]] = {"ours": [], "chain": [], "dbos": []}
        self.dbos_client: Any = None
        self.dbos_skipped = ""
        self.sampler = probes.RssSampler(
            {system: functools.partial(self.worker_pids, system) for system in self.workers}
        )

    def worker_pids(self, system: str) -> list[int]:
        return [worker.popen.pid for worker in self.workers[system]]

    # --- processes ---

    def env(self, system: str, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.redis_url,
            "REDIS_URL": self.redis_url,
            "CELERY_TASK_DEFAULT_QUEUE": self.queues[system],
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-not-a-secret",
            "BENCH_COUNTS_DIR": str(self.counts_dir),
            "BENCH_COUNTS_NAME": system,
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def start_workers(self, systems: set[str]) -> None:
        for system in [s for s in ("ours", "chain") if s in systems]:
            extra = {"CELERY_RESULT_BACKEND": self.redis_url} if system == "chain" else {}
            argv = commands.celery_worker(
                queue=self.queues[system],
                hostname=f"{self.queues[system]}@%h",
                concurrency=self.config.concurrency,
                loglevel="WARNING",
            )
            self.workers[system].append(Process(system, argv, self.env(system, **extra), self.log_dir))
        if not self.config.dbos:
            self.dbos_skipped = "skipped: --no-dbos"
        elif "dbos" in systems:
            self.start_dbos()
        else:
            self.dbos_skipped = "skipped: not in --only"

    def start_dbos(self) -> None:
        if importlib.util.find_spec("dbos") is None:
            self.dbos_skipped = f"skipped: {PEERS_HINT}"
            return
        from dbos import DBOSClient, run_dbos_database_migrations

        from bench.dbos_worker import APP_NAME

        url = self.database_url.replace("postgres://", "postgresql://", 1)
        run_dbos_database_migrations(url)
        for number in range(1, self.config.concurrency + 1):
            argv = [
                sys.executable, "-m", "bench.dbos_worker", "--database-url", url, "--queue", self.queues["dbos"],
                "--executor-id", f"bench-{number}", "--polling-interval", str(self.config.dbos_polling),
                "--counts-file", str(self.counts_dir / f"dbos-{number}.json"),
            ]  # fmt: skip
            self.workers["dbos"].append(Process(f"dbos-{number}", argv, self.env("dbos"), self.log_dir))
        count_sqlalchemy()
        self.dbos_client = DBOSClient(system_database_url=url, application_name=APP_NAME)

    def close(self) -> None:
        self.sampler.stop()
        for processes in self.workers.values():
            for process in processes:
                process.stop()
        for variant in self.chosen:
            if isinstance(variant, DbosVariant | SagaVariant):
                variant.close()
        if self.dbos_client is not None:
            self.dbos_client.destroy()
        shutil.rmtree(self.counts_dir, ignore_errors=True)

    # --- variants ---

    def variants(self) -> list[Variant]:
        chosen: list[Variant] = []
        for steps in self.config.steps:
            chosen += [
                SagaVariant(steps, self.database_url),
                SagaVariant(steps, self.database_url, eager=True),
                ChainVariant(steps, self.queues["chain"], self.redis, self.own),
                ChainVariant(steps, self.queues["chain"], self.redis, self.own, write_row=True),
            ]
            if self.dbos_client is not None:
                chosen.append(DbosVariant(steps, self.dbos_client, self.queues["dbos"], self.database_url))
        self.chosen = [v for v in chosen if not self.config.only or v.name in self.config.only]
        return self.chosen

    # --- measuring ---

    def drive(self, variant: Variant, runs: int, inflight: int, timeout: float) -> tuple[list[Record], int]:
        """Run ``runs`` runs keeping up to ``inflight`` in flight; (submitted at, finished at, succeeded) of
        every run that finished, and how many did not within ``timeout`` seconds."""
        submitted: dict[str, float] = {}
        waiting: list[str] = []
        done: list[Record] = []
        started = 0
        deadline = time.monotonic() + timeout
        while (started < runs or waiting) and time.monotonic() < deadline:
            while started < runs and len(waiting) < inflight:
                at = time.time()
                key = variant.submit(started)
                submitted[key] = at
                waiting.append(key)
                started += 1
            time.sleep(self.config.poll)
            finished = variant.finished(waiting)
            if finished:
                done += [(submitted[key], at, ok) for key, (ok, at) in finished.items()]
                waiting = [key for key in waiting if key not in finished]
        return done, runs - len(done)

    def redis_snapshot(self) -> dict[str, int]:
        commands_ = probes.redis_commands(self.redis)
        commands_.pop("info", None)  # ours: the reading itself
        return commands_

    def idle_rate(self) -> dict[str, float]:
        """Redis commands per second with every measured worker idle: their polling, heartbeats, and anyone
        else's traffic on the same server."""
        before, own = self.redis_snapshot(), Counter(self.own)
        time.sleep(self.config.idle_probe)
        change = probes.diff(self.redis_snapshot(), before)
        change = {k: v - (self.own[k] - own[k]) for k, v in change.items()}
        return {k: v / self.config.idle_probe for k, v in change.items() if v > 0}

    def cpu(self, variant: Variant) -> dict[str, float]:
        """CPU seconds used so far by the system's workers, every PostgreSQL process but the one answering this
        harness's reads of finished runs, and the Redis server."""
        workers = [pid for root in self.worker_pids(variant.system) for pid in probes.process_tree(root)]
        poll = variant.poll_pid()
        return {
            "workers": probes.cpu_seconds(workers),
            "postgres": probes.cpu_seconds([p for p in probes.pids_named("postgres") if p != poll]),
            "redis": probes.cpu_seconds(probes.pids_named("redis-server")),
        }

    def window(self, variant: Variant, number: int) -> Window:
        # DBOS's workers poll their queue in PostgreSQL every --dbos-polling seconds even with nothing to do:
        # paused while another variant is measured, so that polling counts neither in its CPU nor against it.
        paused = [] if variant.system == "dbos" else self.worker_pids("dbos")
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            return self._window(variant, number)
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)

    def _window(self, variant: Variant, number: int) -> Window:
        config = self.config
        idle = self.idle_rate()
        cpu_before = self.cpu(variant)
        redis_before, own_before = self.redis_snapshot(), Counter(self.own)
        workers_before = counting.read_all(self.counts_dir, variant.system)
        client_before = counting.COUNTER.snapshot()
        began, cpu = time.monotonic(), time.process_time()
        self.sampler.reset()
        done, lost = self.drive(variant, config.runs, config.inflight, config.timeout(config.runs))
        time.sleep(config.settle)
        rss_peak = self.sampler.peak(variant.system)
        cpu_after = self.cpu(variant)
        sql = report.diff_counts(counting.read_all(self.counts_dir, variant.system), workers_before)
        start_label = f"{variant.name} start"
        sql.update(report.diff_counts(counting.COUNTER.snapshot(), client_before, only=start_label))
        raw = probes.diff(self.redis_snapshot(), redis_before)
        elapsed, cpu = time.monotonic() - began, time.process_time() - cpu
        redis: dict[str, float] = {}
        for command, calls in raw.items():
            mine = self.own[command] - own_before[command]
            redis[command] = max(0.0, calls - mine - idle.get(command, 0.0) * elapsed)
        solo, _ = self.drive(variant, config.solo, 1, config.timeout(config.solo))
        completed = sum(1 for _, _, ok in done if ok)
        seconds = (max(end for _, end, _ in done) - min(begin for begin, _, _ in done)) if done else float("nan")
        latencies = [(end - begin) * 1000 for begin, end, _ in done]
        return Window(
            variant=variant.name,
            round=number,
            runs=config.runs,
            completed=completed,
            failed=len(done) - completed,
            lost=lost,
            seconds=seconds,
            runs_per_s=completed / seconds if done else 0.0,
            steps_per_s=completed * variant.steps / seconds if done else 0.0,
            latency_ms={f"p{p}": probes.percentile(latencies, p / 100) for p in (50, 95, 99)},
            solo_ms=[(end - begin) * 1000 for begin, end, _ in solo],
            sql=sql,
            redis={k: v for k, v in redis.items() if v},
            redis_raw_total=sum(raw.values()),
            rss_peak=rss_peak,
            harness_cpu_s=round(cpu, 2),
            cpu_ms_per_run={
                name: round((cpu_after[name] - cpu_before[name]) * 1000 / max(1, len(done)), 2) for name in cpu_after
            },
            per_step=report.per_step(sql, redis, runs=len(done), steps=variant.steps),
        )

    def warm_up(self, variant: Variant) -> None:
        done, lost = self.drive(variant, self.config.warmup, self.config.inflight, 120 + self.config.warmup)
        if lost or not all(ok for _, _, ok in done):
            raise SystemExit(
                f"{variant.name}: {lost} of {self.config.warmup} warm-up runs did not finish, "
                f"{sum(1 for _, _, ok in done if not ok)} failed; see the worker logs in {self.log_dir}"
            )

    def run(self) -> dict[str, Any]:
        variants = self.variants()
        self.sampler.start()
        for variant in variants:
            print(f"warming up {variant.name} ({variant.label})", flush=True)
            self.warm_up(variant)
        systems = sorted({v.system for v in variants})
        rss_before = {system: self.sampler.measure(system) for system in systems}
        windows: list[Window] = []
        for number in range(1, self.config.rounds + 1):
            for variant in variants:
                window = self.window(variant, number)
                windows.append(window)
                print(
                    f"round {number} {variant.name:<9} {window.runs_per_s:7.1f} runs/s  "
                    f"p50 {window.latency_ms['p50']:6.1f} ms  lost {window.lost}",
                    flush=True,
                )
        rss_after = {system: self.sampler.measure(system) for system in systems}
        return {
            "variants": {v.name: {"label": v.label, "system": v.system, "steps": v.steps} for v in variants},
            "windows": [asdict(w) for w in windows],
            "rss": {s: {"after_warmup": rss_before[s], "at_end": rss_after[s]} for s in systems},
            "runs_per_system": {
                s: (self.config.warmup + (self.config.runs + self.config.solo) * self.config.rounds)
                * sum(1 for v in variants if v.system == s)
                for s in systems
            },
        }

    def cleanup_redis(self, was_empty: bool) -> None:
        """Empty the Redis db if it was empty before; else remove only the keys that name our queues (the
        chains' result keys expire by themselves, after Celery's result_expires)."""
        if was_empty:
            self.redis.flushdb()
            return
        for queue in self.queues.values():
            keys = list(self.redis.scan_iter(match=f"*{queue}*"))
            if keys:
                self.redis.delete(*keys)


def systems_of(only: tuple[str, ...]) -> set[str]:
    """The worker groups the chosen variants need (all without a choice)."""
    system = {"saga": "ours", "eager": "ours", "chain": "chain", "chainpg": "chain", "dbos": "dbos"}
    return {system[name.rstrip("0123456789")] for name in only} if only else set(system.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    defaults = Config()
    parser.add_argument("--runs", type=int, default=defaults.runs, help="measured runs per variant per round")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="unmeasured runs per variant first")
    parser.add_argument("--steps", default=",".join(map(str, defaults.steps)), help="step counts, e.g. 3,5")
    parser.add_argument("--inflight", type=int, default=defaults.inflight, help="runs in flight while measuring")
    parser.add_argument("--solo", type=int, default=defaults.solo, help="runs one at a time after each window")
    parser.add_argument("--only", default="", help="variants to run, e.g. saga3,chain3 (default: all)")
    parser.add_argument("--no-dbos", dest="dbos", action="store_false", help="leave DBOS out, even if installed")
    parser.add_argument("--dbos-polling", type=float, default=defaults.dbos_polling)
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    steps = tuple(int(s) for s in args.steps.split(",") if s)
    if not steps or not all(1 <= s <= 10 for s in steps):
        parser.error("--steps takes step counts from 1 to 10, e.g. 3,5")
    known = {f"{kind}{count}" for kind in ("saga", "eager", "chain", "chainpg", "dbos") for count in steps}
    only = set(filter(None, args.only.split(",")))
    if unknown := sorted(only - known):
        parser.error(f"--only: unknown variants {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    if not args.dbos and (dbos := sorted(v for v in only if v.startswith("dbos"))):
        parser.error(f"--no-dbos leaves out {', '.join(dbos)}, which --only asks for")
    config = Config(
        runs=args.runs, rounds=args.rounds, warmup=args.warmup, steps=steps, inflight=args.inflight,
        solo=args.solo, only=tuple(v for v in args.only.split(",") if v), dbos=args.dbos,
        dbos_polling=args.dbos_polling,
    )  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"sagas_bench_{uuid.uuid4().hex[:6]}"
    database_url = f"{args.postgres}/{name}"
    log_dir = RESULTS / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    queues = {system: f"bench-{system}-{uuid.uuid4().hex[:6]}" for system in ("ours", "chain", "dbos")}
    create_database(f"{args.postgres}/postgres", name)
    bench = None
    was_empty = False
    try:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="bench.settings",
            CELERY_TASK_DEFAULT_QUEUE=queues["ours"],  # where this process publishes the sagas' steps
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=args.redis,
            REDIS_URL=args.redis,
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="bench-only-not-a-secret",
        )
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        counting.install()
        counting.COUNTER.enabled = False  # counts only inside counting.counting(...): a run's start
        bench = Bench(config, database_url=database_url, redis_url=args.redis, queues=queues, log_dir=log_dir)
        was_empty = bench.redis.dbsize() == 0
        bench.start_workers(systems_of(config.only))
        if bench.dbos_skipped:
            print(f"DBOS: {bench.dbos_skipped}", flush=True)
        started = time.monotonic()
        results = bench.run()
        results["seconds"] = round(time.monotonic() - started, 1)
    finally:
        if bench is not None:
            bench.close()
            bench.cleanup_redis(was_empty)
        from django.db import connections

        connections.close_all()
        if not args.keep_database:
            drop_database(f"{args.postgres}/postgres", name)
    summary = report.summarise(results, config=asdict(config), dbos_skipped=bench.dbos_skipped)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"throughput-{stamp}.json"
    path.write_text(json.dumps({**summary, "raw": results}, indent=1, sort_keys=True, default=str))
    report.print_summary(summary)
    print(f"results: {path.relative_to(ROOT)}")
    print()
    report.print_targets(summary)
    print(report.last_line(summary))
    return 0 if summary["complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
