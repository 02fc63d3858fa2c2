"""`DEMO_ONCE=1 make demo` end to end: real web, worker, beat and Flower processes on a fresh database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.worker
def test_demo_once_plays_every_scenario_and_exits_zero(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DEMO_ONCE": "1",
        "DEMO_WEB_PORT": str(free_port()),
        "DEMO_FLOWER_PORT": str(free_port()),
        "DEMO_QUEUE": f"sagas-demo-test-{uuid.uuid4().hex[:8]}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "REDIS_URL": os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/14"),
    }
    for inherited in ("DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "CELERY_TASK_DEFAULT_QUEUE"):
        env.pop(inherited, None)  # the demo configures its own processes, as `make demo` would

    result = subprocess.run(
        [sys.executable, "-m", "sagaproject.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert "every run reached its expected status" in out
    for scenario in ("completed", "compensated", "failed"):
        assert f"  {scenario}  " in out
    assert "reserve_stock: out_of_stock" in out
    assert "charge_payment: card_declined" in out
    assert "schedule_shipment: unserviceable_address" in out
    assert "awaits a person" in out
    assert "/api/docs/" in out  # where the REST API is
