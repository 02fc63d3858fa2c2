"""Tracing in tests: this process's spans in memory, and the saga messages of one queue run in this process as a
worker's pool process runs them (real messages on the test broker, their headers included)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import kombu
from celery.worker.request import Request
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sagaproject.celery import app
from sagas.testing.spans import span_record

# Generous: it only keeps a broken run from hanging the suite, it measures nothing.
DRAIN_TIMEOUT = 60.0

_exporter: list[InMemorySpanExporter] = []


def memory_exporter() -> InMemorySpanExporter:
    """The exporter of this process's tracer provider (installed once: OpenTelemetry sets the global one once)."""
    if not _exporter:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _exporter.append(exporter)
    return _exporter[0]


def finished_spans() -> list[dict[str, Any]]:
    return [span_record(span) for span in memory_exporter().get_finished_spans()]


def drain(
    queue: str, done: Callable[[], bool], timeout: float = DRAIN_TIMEOUT, planted: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Run the messages of ``queue`` here, one at a time through Celery's own ``Request.execute`` (the worker's
    path: headers become ``task.request`` attributes, chains, retries and errbacks are published as a worker
    publishes them), until ``done()`` holds with the queue empty; the headers of every message run, as published.
    A retry's countdown is not waited for. ``planted``: headers added to every message before it runs, as a
    publisher other than the framework could have put them there."""
    headers: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with app.connection_for_read() as connection:
        source = kombu.Queue(queue, routing_key=queue)(connection.default_channel)
        source.declare()
        while True:
            message = source.get(no_ack=True, accept=["json"])
            if message is None:
                if done():
                    return headers
                assert time.monotonic() < deadline, f"the messages of {queue} did not settle in {timeout}s"
                time.sleep(0.05)
                continue
            headers.append(dict(message.headers))
            message.headers.update(planted or {})
            task = app.tasks[message.headers["task"]]
            Request(message, app=app, task=task, hostname="tracing-test@localhost").execute()
