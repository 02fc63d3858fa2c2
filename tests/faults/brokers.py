"""Private brokers for the fault lab: a redis-server of the test's own, or a vhost of its own on RabbitMQ."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
from kombu import Connection

from sagas.testing import queues

REDIS_SERVER = shutil.which("redis-server")
RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"


class PrivateBroker(Protocol):
    """A broker only this test uses, and the faults a test may inflict on it."""

    url: str
    kind: str  # "redis" or "rabbitmq": where a test's expectations differ (how soon a lost worker's message returns)

    def restart(self) -> None:
        """Every queued and unacknowledged message is gone, and every connection dropped."""

    def purge(self) -> None:
        """Every queued message is gone; connections stay."""

    def queued(self, queue: str) -> int:
        """Messages waiting in ``queue``."""

    def empty_queue(self, queue: str) -> None:
        """What waits in ``queue`` is gone."""

    def close(self) -> None:
        """Stop or remove the broker."""


def private_broker(session_broker_url: str, directory: Path) -> PrivateBroker:
    """A private broker of the kind the session runs on: a vhost on the session's RabbitMQ when its broker is
    ``amqp://``, else a redis-server of its own."""
    if urlsplit(session_broker_url).scheme in ("amqp", "pyamqp", "amqps"):
        return PrivateVhost(session_broker_url)
    return PrivateRedis(directory)


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl -q ARGS`` (through sudo unless root: it needs the node's Erlang cookie); its output."""
    command = [RABBITMQCTL, "-q", *args]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own (no persistence, like a broker restarted without AOF)."""

    kind = "redis"

    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed; the fault suite starts private brokers with it")
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        """Gone at once, and with it every message it held."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def purge(self) -> None:
        client = redis.Redis.from_url(self.url)
        client.flushdb()
        client.close()

    def queued(self, queue: str) -> int:
        client = redis.Redis.from_url(self.url)
        try:
            return int(client.llen(queue))
        finally:
            client.close()

    def empty_queue(self, queue: str) -> None:
        client = redis.Redis.from_url(self.url)
        client.delete(queue)
        client.close()

    def close(self) -> None:
        self.kill()


class PrivateVhost:
    """A vhost of the test's own on the session's RabbitMQ (made and removed with rabbitmqctl, as root).

    Removing a vhost closes its connections and drops its queues with every message in them: a restart of a
    broker that kept nothing, as PrivateRedis's restart is. (A real RabbitMQ restart keeps durable queues and
    persistent messages; losing them is the harder case.)"""

    kind = "rabbitmq"

    def __init__(self, session_broker_url: str) -> None:
        self.vhost = f"sagas-fault-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        parts = urlsplit(session_broker_url)
        self.user = parts.username or "guest"
        self.url = urlunsplit((parts.scheme, parts.netloc, f"/{self.vhost}", "", ""))
        self._create()

    def _create(self) -> None:
        rabbitmqctl("add_vhost", self.vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, self.user, ".*", ".*", ".*")

    def restart(self) -> None:
        rabbitmqctl("delete_vhost", self.vhost)
        self._create()

    def purge(self) -> None:
        # Every queue of the vhost, whoever declared it: the workers' own (pidbox, events) are emptied too, as
        # a Redis FLUSHDB empties everything.
        names = rabbitmqctl("list_queues", "-p", self.vhost, "name", "--no-table-headers").split()
        with Connection(self.url, connect_timeout=10) as connection:
            channel = connection.default_channel
            for name in names:
                with contextlib.suppress(*connection.channel_errors):
                    channel.queue_purge(queue=name)

    def queued(self, queue: str) -> int:
        with Connection(self.url, connect_timeout=10) as connection:
            return queues.waiting(connection, queue)

    def empty_queue(self, queue: str) -> None:
        # Purged, not deleted: deleting it would drop its binding too, and a publisher that declared it once
        # would then send into nothing.
        with Connection(self.url, connect_timeout=10) as connection:
            connection.default_channel.queue_purge(queue=queue)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            rabbitmqctl("delete_vhost", self.vhost)
