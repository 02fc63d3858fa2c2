"""Chaos soak: PlaceOrder runs with random failures while worker processes are SIGKILLed and restarted.

    python -m bench.chaos [--runs 1000] [--minutes 5] [--workers 2] [--kill-every 3] [--json]

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
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sagaproject import commands
from sagas.states import FINISHED_RUN_STATES

ROOT = Path(__file__).resolve().parent.parent
STOCK = {"cup": 400, "pen": 300, "hat": 250}


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


class Process:
    """A child process in its own session, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in kill()
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.popen.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self.log.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=20)
        self.kill()


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

    def seed_shop(self) -> dict[str, Any]:
        from participants.inventory.models import StockItem
        from participants.payments.models import Account, CardStatus
        from participants.shipping.models import DeliveryZone

        DeliveryZone.objects.get_or_create(country="NL", defaults={"active": True})
        for sku, units in STOCK.items():
            StockItem.objects.create(sku=f"{sku}-{self.queue}", name=sku, available=units)
        accounts = [
            Account.objects.create(holder=f"chaos {n}", email=f"chaos{n}@example.com", balance=Decimal(2000))
            for n in range(20)
        ]
        accounts[0].card_status = CardStatus.DECLINED
        accounts[0].save()
        accounts[1].refund_gateway_down = True
        accounts[1].save()
        return {"accounts": [a.pk for a in accounts], "skus": [f"{s}-{self.queue}" for s in STOCK]}

    def payload(self, shop: dict[str, Any], number: int) -> dict[str, Any]:
        rng = self.rng
        country = "ZZ" if rng.random() < 0.08 else "NL"
        return {
            "customer_email": f"buyer{number}@example.com",
            "account_id": rng.choice(shop["accounts"]),
            "lines": [
                {"sku": sku, "quantity": rng.randint(1, 3), "unit_price": str(rng.choice([4, 9, 15]))}
                for sku in rng.sample(shop["skus"], k=rng.randint(1, 2))
            ],
            "shipping_address": {"country": country, "city": "Utrecht", "line1": "Oudegracht 1", "postal_code": "3511"},
        }

    def run(self) -> Report:
        from participants.checkout.sagas import PlaceOrder
        from sagas.recovery import ensure_reaper_schedule

        ensure_reaper_schedule()
        shop = self.seed_shop()
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
                run_ids.append(
                    PlaceOrder.start(self.payload(shop, number), idempotency_key=f"{self.queue}-{number}").pk
                )
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


def ledger() -> dict[str, Any]:
    from participants.inventory.models import StockItem
    from participants.payments.models import Account

    return {
        "stock": {item.sku: item.available + item.reserved for item in StockItem.objects.all()},
        "balances": {account.pk: account.balance for account in Account.objects.all()},
    }


def effect_problems(runs: list[Any], before: dict[str, Any]) -> list[str]:
    """Every sign of an effect applied twice (or undone twice, or undone without being done)."""
    from participants.inventory.models import Reservation, StockItem
    from participants.orders.models import Order
    from participants.payments.models import Account, Payment, Refund
    from participants.shipping.models import Shipment

    problems = []
    for item in StockItem.objects.all():
        if item.available + item.reserved != before["stock"].get(item.sku, item.available + item.reserved):
            problems.append(f"stock of {item.sku} changed: {item.available} + {item.reserved}")
    for account in Account.objects.all():
        paid = sum(p.amount for p in Payment.objects.filter(account=account))
        refunded = sum(r.amount for r in Refund.objects.filter(payment__account=account))
        if account.balance != before["balances"][account.pk] - paid + refunded:
            problems.append(f"account {account.pk}: balance {account.balance} disagrees with its payments")
    for run in runs:
        key = str(run.pk)
        for model, field_name in (
            (Order, "idempotency_key"),
            (Payment, "idempotency_key"),
            (Shipment, "idempotency_key"),
            (Reservation, "idempotency_key"),
        ):
            count = model.objects.filter(**{f"{field_name}__startswith": key}).count()
            if count > 1:
                problems.append(f"run {key}: {count} {model.__name__} rows")
        if run.status == "completed" and Refund.objects.filter(payment__idempotency_key__startswith=key).exists():
            problems.append(f"run {key}: completed but refunded")
    return problems


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


def _create_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    _create_database(f"{args.postgres}/postgres", name)
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
            _drop_database(f"{args.postgres}/postgres", name)
    _print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
