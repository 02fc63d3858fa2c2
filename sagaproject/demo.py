"""`make demo`: start Redis, web, worker, beat and Flower, play a batch of demo sagas and print a summary."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from sagaproject import commands
from sagaproject.demo_processes import (
    DEMO_DIR,
    ROOT,
    Child,
    DemoError,
    Supervisor,
    ensure_redis,
    wait_http,
    wait_worker,
)

if TYPE_CHECKING:
    from sagaproject.demo_batch import DemoRun, Shop


@dataclass(frozen=True)
class Config:
    web_port: int
    flower_port: int
    queue: str
    once: bool
    start_timeout: float
    run_timeout: float

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"


def read_config() -> Config:
    def number(name: str, default: str) -> int:
        raw = os.environ.get(name, default)
        try:
            return int(raw)
        except ValueError:
            raise DemoError(f"{name}={raw!r} is not a whole number.", status=2) from None

    return Config(
        web_port=number("DEMO_WEB_PORT", "8000"),
        flower_port=number("DEMO_FLOWER_PORT", "5555"),
        queue=os.environ.get("DEMO_QUEUE", "sagas-demo"),
        once=os.environ.get("DEMO_ONCE", "").strip().lower() in {"1", "true", "yes", "on"},
        start_timeout=number("DEMO_START_TIMEOUT", "120"),
        run_timeout=number("DEMO_RUN_TIMEOUT", "180"),
    )


def ensure_ports_free(config: Config) -> None:
    wanted = [("web server", "DEMO_WEB_PORT", config.web_port), ("Flower", "DEMO_FLOWER_PORT", config.flower_port)]
    if config.web_port == config.flower_port:
        raise DemoError(f"DEMO_WEB_PORT and DEMO_FLOWER_PORT are both {config.web_port}; choose two ports.", 2)
    for what, variable, port in wanted:
        with socket.socket() as probe:
            # Like runserver and Flower, so a port still in TIME_WAIT from the last demo counts as free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                raise DemoError(
                    f"Port {port} on 127.0.0.1, wanted for the {what}, is not free ({exc.strerror}). Stop what "
                    f"uses it, or pick another port: {variable}={port + 1} make demo",
                    status=2,
                ) from None


def refuse_foreign_consumers(app: Any, queue: str) -> None:
    """A worker already consuming the demo queue (say, a demo left running) would take the batch's tasks."""
    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    others = sorted(name for name, queues in replies.items() if any(q.get("name") == queue for q in queues))
    if others:
        raise DemoError(
            f"Worker(s) {', '.join(others)} already consume queue {queue!r} on this broker (another demo?). "
            "Stop them, or give this demo its own queue: DEMO_QUEUE=sagas-demo-2 make demo",
            status=2,
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def prepare(config: Config, supervisor: Supervisor) -> tuple[Shop, str | None]:
    """Broker, Django, database, admin user and demo data; returns the shop and the private broker's URL."""
    DEMO_DIR.mkdir(exist_ok=True)
    ensure_ports_free(config)
    os.environ["DJANGO_SETTINGS_MODULE"] = "sagaproject.settings"
    # The demo runs the development settings, and says so (the settings' own default is production).
    os.environ.setdefault("DJANGO_DEBUG", "1")
    # Every process of the demo, and the batch this process sends, use their own queue, so a demo never
    # takes another process's messages (or the other way round) on a shared Redis.
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = config.queue
    # The web, the worker and this process count into one directory, so /metrics shows all of them; it
    # starts empty with every demo (all its writers are the demo's own processes).
    metrics_dir = DEMO_DIR / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    broker_url, private = ensure_redis(supervisor)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from sagaproject import demo_batch
    from sagaproject.celery import app

    refuse_foreign_consumers(app, config.queue)
    db = settings.DATABASES["default"]
    where = db["NAME"] if db["ENGINE"].endswith("sqlite3") else f"{db['NAME']} on {db.get('HOST') or 'localhost'}"
    print(f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {where}; migrating ...")
    call_command("migrate", interactive=False, verbosity=0)
    try:
        demo_batch.ensure_admin()
    except demo_batch.ForeignDatabase as exc:
        sys.exit(f"demo: {exc}")
    print(f"admin user: {demo_batch.ADMIN_USERNAME!r}, password {demo_batch.ADMIN_PASSWORD!r}")
    shop = demo_batch.seed()
    print(
        f"seeded: stock {', '.join(demo_batch.STOCK)}; accounts {shop.ok_account} (card OK), "
        f"{shop.declined_account} (card declined), {shop.gateway_down_account} (refund gateway down); zone NL"
    )
    return shop, broker_url if private else None


def start_services(config: Config, supervisor: Supervisor) -> Child:
    """Start web, worker, beat and Flower and wait until each answers; returns the worker."""
    from celery.utils.nodenames import host_format

    from sagaproject.celery import app

    node = host_format("demo@%h")
    # The admin links each step's task to the demo's Flower.
    supervisor.env = {**os.environ, "PYTHONUNBUFFERED": "1", "SAGAS_FLOWER_URL": config.flower_url}
    celery = [sys.executable, "-m", "celery", "-A", "sagaproject"]
    print(f"starting processes (queue {config.queue!r}) ...")
    web = supervisor.start(
        "web", [sys.executable, "manage.py", "runserver", f"127.0.0.1:{config.web_port}", "--noreload"]
    )
    worker = supervisor.start("worker", commands.celery_worker(queue=config.queue, hostname=node))
    # The -s file goes unused (the schedule, with the reaper on it, is in the database); it keeps
    # stray files in .demo/.
    supervisor.start("beat", commands.celery_beat(schedule_file=str(DEMO_DIR / "beat-schedule")))
    flower = supervisor.start("flower", [*celery, "flower", f"--port={config.flower_port}", "--address=127.0.0.1"])
    wait_worker(supervisor, worker, app, node, config.start_timeout)
    wait_http(supervisor, web, f"{config.web_url}/admin/login/", config.start_timeout)
    wait_http(supervisor, flower, config.flower_url, config.start_timeout)
    supervisor.check()  # beat has no port to ask: it is ready if it is still running
    print(f"ready: worker {node}, web {config.web_url}, Flower {config.flower_url}")
    return worker


def play_batch(config: Config, supervisor: Supervisor, worker: Child, shop: Shop) -> tuple[list[DemoRun], bool]:
    """Start the batch and wait for it; the runs, and whether all of them settled in time."""
    from sagaproject import demo_batch

    tag = time.strftime("%Y%m%d-%H%M%S")
    runs = demo_batch.start_batch(shop, tag)
    print(f"started {len(runs)} PlaceOrder and BookTrip runs (keys demo-{tag}-*); waiting for them to settle ...")
    settled = 0

    def report(run: DemoRun) -> None:
        nonlocal settled
        settled += 1
        mark = "" if run.as_expected else f"  (expected {run.scenario.expected})"
        print(f"  [{settled}/{len(runs)}] {run.scenario.title}: {run.status} after {run.settled_after:.1f}s{mark}")

    if demo_batch.wait_settled(runs, timeout=config.run_timeout, on_poll=supervisor.check, on_settled=report):
        return runs, True
    print(f"some runs did not settle within {config.run_timeout}s; last lines of {worker.log_path}:")
    print(worker.tail())
    return runs, False


def run(config: Config, supervisor: Supervisor) -> int:
    shop, private_broker = prepare(config, supervisor)
    worker = start_services(config, supervisor)
    runs, all_settled = play_batch(config, supervisor, worker, shop)

    from sagaproject import demo_batch

    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(f"{ROOT}/") else sys.executable
    lines = demo_batch.summary(
        runs,
        shop,
        web_url=config.web_url,
        flower_url=config.flower_url,
        shell_env=f"CELERY_TASK_DEFAULT_QUEUE={config.queue}"
        # A shell does not know the private Redis's port.
        + (f" REDIS_URL={private_broker} CELERY_BROKER_URL={private_broker}" if private_broker else ""),
        python=python,
    )
    print("\n".join(lines))
    ok = all_settled and all(run.as_expected for run in runs)
    print(f"metrics:      {config.web_url}/metrics")
    print(f"REST API:     {config.web_url}/api/docs/   (token: manage.py drf_create_token {demo_batch.ADMIN_USERNAME})")
    print("\nevery run reached its expected status" if ok else "\nSOME RUNS DID NOT REACH THEIR EXPECTED STATUS")
    if config.once:
        return 0 if ok else 1
    print("serving; press Ctrl-C to stop.")
    try:
        while True:
            supervisor.check()
            time.sleep(1)
    except KeyboardInterrupt:
        print()
        return 0


def main() -> int:
    # Progress lines and errors stay in order when the output goes to a pipe or a file.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # SIGTERM (say, from `kill` or a container stop) ends the demo like Ctrl-C does; SIGINT is set
    # explicitly because a shell script's background job starts with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    supervisor = Supervisor()
    # finally covers errors; atexit also covers a sys.exit() from deep inside Django or Celery.
    atexit.register(supervisor.stop_all)
    started = time.monotonic()
    try:
        return run(read_config(), supervisor)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        supervisor.stop_all()
        print(f"demo: done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
