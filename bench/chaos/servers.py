"""A PostgreSQL cluster and a redis-server of the soak's own, on free loopback ports, that it may restart at will."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

START_TIMEOUT = 60  # seconds: generous, the machine may be busy with other test runs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("No /usr/lib/postgresql/*/bin/initdb: install PostgreSQL (make machine does).")
    return Path(found[-1]).parent


class PrivatePostgres:
    """A cluster initialised into a temporary directory, trust authentication, on 127.0.0.1:<port>.

    PostgreSQL refuses to run as root: run as root, every command runs as the ``postgres`` user, which owns the
    directory. ``fsync`` is off: a restart in immediate mode is a crash of PostgreSQL, not of the machine, so
    nothing committed is lost by it, and the soak does not wear the disk the other test runs share."""

    def __init__(self, directory: Path | None = None) -> None:
        self.bin = _postgres_bin()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="sagas-chaos-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        self._ctl("start")

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self.as_postgres, *argv], capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr or done.stdout}")

    def _ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=off -c log_min_messages=warning"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "postgres.log"),
                  "-w", "-t", str(START_TIMEOUT), "-o", options, *extra, action)  # fmt: skip

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m fast`` (clients are told and disconnected) or ``-m immediate`` (a crash: recovery
        replays the WAL); returns once it accepts connections again."""
        self._ctl("restart", "-m", mode)

    def terminate(self, client_ports: set[int]) -> int:
        """``pg_terminate_backend`` of every backend whose client connected from one of ``client_ports``."""
        if not client_ports:
            return 0
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE client_port = ANY(%s) AND pid <> pg_backend_pid()",
                (sorted(client_ports),),
            ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRedis:
    """A redis-server with an append-only file in a temporary directory: restarted with its data (shut down
    cleanly, the AOF replayed at start), or without (killed, its files deleted)."""

    def __init__(self, directory: Path | None = None) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (make machine installs it).")
        self.server = server
        self.directory = Path(directory or tempfile.mkdtemp(prefix="sagas-chaos-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the soak's redis-server on port {self.port} did not start")
            time.sleep(0.05)
        client.close()

    def restart(self, *, keep_data: bool) -> None:
        assert self.process is not None
        if keep_data:
            self.process.terminate()  # SIGTERM: Redis flushes its AOF and exits
        else:
            self.process.kill()
        self.process.wait(timeout=START_TIMEOUT)
        if not keep_data:
            for path in self.directory.iterdir():
                if path.name != "redis.log":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.start()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
