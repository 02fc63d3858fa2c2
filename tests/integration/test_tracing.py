"""Tracing across processes: the run starts here, its steps, compensations and receiver run in a real worker's pool
processes, and the trace context its messages carry on the broker makes every span one trace (docs/tracing.md)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from sagaproject.celery import app
from sagas.testing import queues, spans
from sagas.testing.worker_main import SPANS_VARIABLE
from tests.testapp.sagas import Traced
from tests.tracing import finished_spans, memory_exporter
from tests.worker import WorkerProcess, wait_for_run, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EXPECTED = [
    ("saga.step", "first", 1, "continue"),
    ("saga.step", "second", 1, "retry"),
    ("saga.step", "second", 2, "continue"),
    ("saga.step", "third", 1, "failed"),
    ("saga.compensate", "second", 1, "stop"),
    ("saga.compensate", "first", 1, "stop"),
    ("saga.receive", "tests.traced_ledger", 1, "received"),
]


def summary(span: dict[str, Any]) -> tuple[str, str, int, str]:
    """(name, step or receiver, attempt, outcome)."""
    attributes = span["attributes"]
    step = attributes.get("saga.receiver") or attributes["saga.step"]
    return (span["name"], step, attributes["saga.attempt"], attributes["saga.outcome"])


def ours(found: list[dict[str, Any]], run_id: str) -> list[tuple[str, str, int, str]]:
    """The run's spans, less those of the example project's analytics receiver (which gets its end too)."""
    return sorted(
        summary(span)
        for span in found
        if span["attributes"].get("saga.run_id") == run_id
        and span["attributes"].get("saga.receiver", "tests.").startswith("tests.")
    )


def test_a_runs_spans_in_the_worker_are_children_of_its_start_here(tmp_path: Path, settings) -> None:
    queue, directory = f"tracing-{uuid.uuid4().hex[:8]}", tmp_path / "spans"
    directory.mkdir()
    exporter = memory_exporter()
    exporter.clear()
    settings.SAGAS = {**settings.SAGAS, "QUEUE": queue, "TRACING": True}
    worker = WorkerProcess(
        tmp_path / "worker.log",
        queue=queue,
        env={
            "SAGAS_QUEUE": queue,  # what the worker publishes comes back to it
            "SAGAS_TRACING": "1",
            SPANS_VARIABLE: str(directory),
        },
    )
    try:
        worker.wait_ready()
        run = Traced.start({"fail_times": 1, "parent_fails": True})
        assert wait_for_run(run, worker).status == "compensated"
        # The receiver runs after the run's end is committed; a span is written when it ends.
        wait_until(lambda: len(ours(spans.read(directory), str(run.pk))) >= len(EXPECTED), worker, "the spans")
        worker.wait_idle()
    finally:
        worker.stop()
        with app.connection_for_write() as connection:
            queues.delete(connection, queue)

    (start,) = [span for span in finished_spans() if span["name"] == "saga.start"]
    assert start["attributes"]["saga.run_id"] == str(run.pk)
    found = spans.read(directory)
    assert ours(found, str(run.pk)) == sorted(EXPECTED)
    # Made in other processes, from the traceparent header of the messages that reached them through Redis.
    assert {span["trace_id"] for span in found} == {start["trace_id"]}
    assert {span["parent_id"] for span in found} == {start["span_id"]}
    failed = [span for span in found if span["attributes"]["saga.outcome"] in ("retry", "failed")]
    assert {(span["status"], "exception" in span["events"]) for span in failed} == {("ERROR", True)}
