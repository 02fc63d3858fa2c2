"""The infrastructure soak, short: servers restarted and connections hurt; nothing lost, doubled or misordered."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.chaos.faults import KINDS
from bench.chaos.processes import ROOT, clean_environment

# Two minutes of faults (a fault every 3 s: three or more of each kind), then the drain and the checks: about
# four minutes in all. The soak brings its own PostgreSQL and Redis, so it runs once, in the Redis pass of the
# suite, not again when the session's broker is RabbitMQ (`make test-rabbitmq-suites`).
pytestmark = pytest.mark.skipif(
    os.environ.get("TEST_BROKER_URL", "").startswith("amqp"),
    reason="the infrastructure soak brings its own servers: the Redis pass of the suite runs it",
)
SOAK = ["--minutes", "2", "--runs", "400", "--seed", "19", "--fault-every", "3", "--drain", "240"]


@pytest.mark.timeout(1800)  # generous: only keeps a hung soak from hanging the suite
def test_a_short_infrastructure_soak_loses_doubles_misorders_and_strands_nothing(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--infra", *SOAK, "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT,
        env=clean_environment(),  # its own servers and settings, not this session's
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    output = done.stdout + done.stderr
    report = done.stdout[done.stdout.find("\nsoak: ") :]  # the verdict, without the list of faults before it
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert last.startswith("chaos: "), output[-5000:]
    figures = dict(part.split("=", 1) for part in last.removeprefix("chaos: ").split())
    faults = dict(item.split(":") for item in figures["faults"].split(","))

    assert int(figures["runs"]) == 400
    assert (figures["lost"], figures["doubled"], figures["misordered"], figures["unsettled"]) == ("0",) * 4, report
    assert all(int(faults[kind]) >= 1 for kind in KINDS), faults  # it really was chaotic, in every way
    assert done.returncode == 0, output[-5000:]
