"""The demo's processes: start and stop children, find or start Redis, wait until each answers."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / ".demo"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
STOP_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1
# Loaded up front: the preexec_fn that uses it runs between fork and exec, where importing is unsafe.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

NO_REDIS = """No Redis answers at {url}, and redis-server is not installed to start a private one.
Get one of these, then run `make demo` again:
  sudo apt-get install redis-server             # the demo then starts its own private Redis
  docker run -d -p 127.0.0.1:6379:6379 redis:7  # Redis in a container on 127.0.0.1:6379
  REDIS_URL=redis://HOST:PORT/DB make demo      # a Redis you already run"""


class DemoError(Exception):
    """Stops the demo with a message for the person running it and an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_last: bool = False

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])

    def failure(self, what: str) -> DemoError:
        return DemoError(f"{self.name} {what}. Last lines of {self.log_path}:\n{self.tail()}")


def _die_with_parent() -> None:
    """Between fork and exec: the child gets SIGTERM if the demo itself is killed (even by SIGKILL)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """The demo's child processes: each in its own process group, each logging to .demo/<name>.log."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.env: dict[str, str] = {}
        self.stopped = False

    def start(self, name: str, argv: Sequence[str], *, stop_last: bool = False) -> Child:
        log_path = DEMO_DIR / f"{name}.log"
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env or None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C in the terminal reaches only the demo, which stops children in order.
                start_new_session=True,
                # Not thread-safe in general; the demo starts its children from its only thread.
                preexec_fn=_die_with_parent,
            )
        child = Child(name, process, log_path, stop_last)
        self.children.append(child)
        print(f"  started {name} (pid {process.pid}), log {log_path.relative_to(ROOT)}")
        return child

    def check(self) -> None:
        """Raise with the log tail of the first child that exited."""
        for child in self.children:
            if child.process.poll() is not None:
                raise child.failure(f"exited with status {child.process.returncode}")

    def stop_all(self) -> None:
        """Stop every child, Redis last since the others talk to it while they shut down; runs once."""
        if self.stopped:
            return
        self.stopped = True
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            first = [child for child in self.children if not child.stop_last]
            last = [child for child in self.children if child.stop_last]
            running = [child.name for child in first + last if child.process.poll() is None]
            if running:
                print(f"stopping {', '.join(running)} ...")
            _stop(first)
            _stop(last)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _stop(children: list[Child]) -> None:
    for child in children:
        # SIGTERM to the leader, not the group: the worker's pool processes reset SIGTERM to die at once
        # (celery.concurrency.prefork.WORKER_SIGRESET), while the leader's warm shutdown lets them finish.
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"  {child.name} did not stop within {STOP_TIMEOUT:.0f}s; killing it")
        # Whatever is left of the group goes now: the leader on timeout, or the pool processes of a
        # worker that died on its own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def ensure_redis(supervisor: Supervisor) -> tuple[str, bool]:
    """The broker URL, and whether it is a private redis-server under .demo/ (when the configured one is silent)."""
    from kombu.utils.url import maybe_sanitize_url

    # The same choice as settings.py: CELERY_BROKER_URL if set, else REDIS_URL.
    url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if _redis_answers(url):
        print(f"redis: using {maybe_sanitize_url(url)}")
        return url, False
    server = shutil.which("redis-server")
    if server is None:
        raise DemoError(NO_REDIS.format(url=maybe_sanitize_url(url)), status=2)
    port = _free_port()
    data_dir = DEMO_DIR / "redis"
    data_dir.mkdir(exist_ok=True)
    print(f"redis: nothing answers at {maybe_sanitize_url(url)}; starting a private redis-server on port {port}")
    child = supervisor.start(
        "redis",
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
        stop_last=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not _redis_answers(url):
        if child.process.poll() is not None or time.monotonic() > deadline:
            raise child.failure("did not answer a PING")
        time.sleep(0.1)
    os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = url
    return url, True


def _get(url: str) -> None:
    # No proxy: a developer's http_proxy must not intercept requests to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=2):
        pass


def wait_http(supervisor: Supervisor, child: Child, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            _get(url)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # it answers; a redirect or 404 is an answer
                return
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.5)
    raise child.failure(f"did not answer {url} within {timeout:.0f}s (last: {last})")


def wait_worker(supervisor: Supervisor, child: Child, app: Any, node: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no reply"
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            if app.control.ping(destination=[node], timeout=1.0):
                return
        except Exception as exc:  # the broker may drop a connection; keep asking until the deadline
            last = repr(exc)
            time.sleep(0.5)
    raise child.failure(f"did not answer a ping as {node} within {timeout:.0f}s (last: {last})")
