"""A worker's own metrics endpoint: a real worker with SAGAS["WORKER_METRICS_PORT"] serves the counts of its pool
processes (prometheus-client's multiprocess mode, files named as the client names them)."""

from __future__ import annotations

import socket
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.testapp.sagas import EagerThree
from tests.worker import WorkerProcess, wait_for_run

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_worker_serves_the_counts_of_its_pool_processes(tmp_path: Path, settings) -> None:
    port, queue = free_port(), f"metrics-{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "metrics"
    directory.mkdir()
    settings.SAGAS = {**settings.SAGAS, "QUEUE": queue}  # this test's runs go to this worker only
    worker = WorkerProcess(
        tmp_path / "worker.log",
        queue=queue,
        env={
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "SAGAS_WORKER_METRICS_PORT": str(port),
        },
    )
    try:
        worker.wait_ready()
        runs = [EagerThree.start({"n": n}) for n in range(3)]
        for run in runs:
            assert wait_for_run(run, worker).status == "completed"
        deadline = time.monotonic() + 30  # the outcome is counted after its commit, in the pool process
        key = ("sagas_runs_finished_total", frozenset({("saga", EagerThree.name), ("outcome", "completed")}))
        while scrape(port).get(key, 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        samples = scrape(port)
        assert samples[key] == 3
        steps = ("sagas_step_duration_seconds_count", frozenset({("saga", EagerThree.name), ("step", "two")}))
        assert samples[steps] == 3
        # The client's own file names, by pid: what its mark_process_dead(pid) expects.
        pids = {int(path.stem.split("_")[-1]) for path in directory.glob("*.db")}
        assert pids
        assert pids <= {*worker.pool_pids(), worker.process.pid}
    finally:
        worker.stop()
