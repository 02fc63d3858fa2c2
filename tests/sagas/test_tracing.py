"""Tracing (docs/tracing.md): one run's spans form one trace, parented by the trace context its messages carry, also
after a re-drive; baggage does not travel through the broker; with tracing off no span is made and no message carries
a header; the check for a missing extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from celery.signals import before_task_publish, task_postrun, task_prerun
from opentelemetry import baggage, propagate
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import sagas
from sagaproject.celery import app
from sagas import checks, selectors, services, tracing
from sagas.models import SagaEvent, SagaRun
from sagas.states import FINISHED_RUN_STATES
from sagas.testing import queues
from tests.testapp.sagas import Child, Parent, Traced
from tests.tracing import drain, finished_spans, memory_exporter
from tests.worker import ROOT

RUN_OF_EVERY_KIND = {"fail_times": 1, "parent_fails": True}  # a retried attempt, a refusal, two compensations

# What anyone who can publish to the broker could put in a saga message besides its trace context.
PLANTED = {"baggage": "tenant=someone-else,role=admin", "x-planted": "yes"}
TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.fixture
def queue(settings) -> Iterator[str]:
    """This test's own queue: the messages its runs publish wait there for ``drain``."""
    name = f"tracing-{uuid.uuid4().hex[:8]}"
    settings.SAGAS = {**settings.SAGAS, "QUEUE": name}
    yield name
    with app.connection_for_write() as connection:
        queues.delete(connection, name)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = memory_exporter()
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture
def tracing_on(settings, queue: str, exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    settings.SAGAS = {**settings.SAGAS, "TRACING": True}
    return exporter


@pytest.fixture
def baggage_propagated() -> Iterator[None]:
    """The project's OpenTelemetry propagator carries baggage (the default one does), for its HTTP instrumentation."""
    configured = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
    yield
    propagate.set_global_textmap(configured)


@pytest.fixture
def a_request_with_baggage() -> Iterator[None]:
    """Where a run starts, a request's baggage in force, as the project's HTTP instrumentation leaves it."""
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    yield
    otel_context.detach(token)


@dataclass(eq=False)
class Task:
    """What Celery's task signals are sent with: a task whose request has its message's custom headers."""

    name: str
    request: SimpleNamespace = field(default_factory=SimpleNamespace)


def finished(run_id: uuid.UUID) -> Callable[[], bool]:
    return lambda: SagaRun.objects.get(pk=run_id).status in FINISHED_RUN_STATES


def summary(span: dict[str, Any]) -> tuple[str, str, Any, Any, str]:
    """Name, step (a receiver's: its name), attempt, outcome, status."""
    attributes = span["attributes"]
    return (span["name"], attributes.get("saga.receiver") or attributes["saga.step"], attributes["saga.attempt"],
            attributes["saga.outcome"], span["status"])  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_runs_start_attempts_compensations_and_receiver_are_one_trace(tracing_on, queue: str) -> None:
    run = Traced.start(RUN_OF_EVERY_KIND)
    headers = drain(queue, finished(run.pk))
    assert SagaRun.objects.get(pk=run.pk).status == "compensated"

    spans = finished_spans()
    (start,) = [span for span in spans if span["name"] == "saga.start"]
    assert start["attributes"] == {
        "saga.name": "tests.traced", "saga.version": 1, "saga.run_id": str(run.pk), "saga.outcome": "started",
    }  # fmt: skip
    others = [span for span in spans if span is not start]
    assert {span["trace_id"] for span in spans} == {start["trace_id"]}
    assert {span["parent_id"] for span in others} == {start["span_id"]}  # every span of the run is its child
    # (Another receiver, the example project's analytics, listens to every run's end too.)
    mine = [span for span in others if span["attributes"].get("saga.receiver", "tests.").startswith("tests.")]
    assert sorted(summary(span) for span in mine) == sorted([
        ("saga.step", "first", 1, "continue", "UNSET"),
        ("saga.step", "second", 1, "retry", "ERROR"),
        ("saga.step", "second", 2, "continue", "UNSET"),
        ("saga.step", "third", 1, "failed", "ERROR"),
        ("saga.compensate", "second", 1, "stop", "UNSET"),
        ("saga.compensate", "first", 1, "stop", "UNSET"),
        ("saga.receive", "tests.traced_ledger", 1, "received", "UNSET"),
    ])  # fmt: skip
    for span in others:
        assert span["attributes"]["saga.run_id"] == str(run.pk)
        assert span["attributes"]["saga.name"] == "tests.traced"
        assert ("exception" in span["events"]) == (span["status"] == "ERROR")
    (received,) = [span for span in mine if span["name"] == "saga.receive"]
    assert received["attributes"]["saga.topic"] == "tests.traced.compensated"
    assert received["attributes"]["saga.step"] == ""  # a run's message, not a step's

    # What carried it: the W3C traceparent header of every message, and the copy the run keeps for re-drives.
    assert headers
    ids = (start["trace_id"], start["span_id"])
    assert {tuple(message["traceparent"].split("-")[1:3]) for message in headers} == {ids}
    assert tuple(selectors.trace_context(run.pk)["traceparent"].split("-")[1:3]) == ids


@pytest.mark.django_db(transaction=True)
def test_a_step_published_again_by_a_re_drive_joins_the_runs_trace(tracing_on, queue: str) -> None:
    run = Traced.start({})
    with app.connection_for_write() as connection:
        queues.delete(connection, queue)  # the first step's message is lost
    # As the reaper or an operator does it: outside any span of the run, from the trace context the run stored.
    assert services.run_redrive(run_id=run.pk, force=True).action
    drain(queue, finished(run.pk))
    assert SagaRun.objects.get(pk=run.pk).status == "completed"

    spans = finished_spans()
    (start,) = [span for span in spans if span["name"] == "saga.start"]
    steps = [span for span in spans if span["name"] == "saga.step"]
    assert sorted(span["attributes"]["saga.step"] for span in steps) == ["first", "second", "third"]
    assert {(span["trace_id"], span["parent_id"]) for span in steps} == {(start["trace_id"], start["span_id"])}


@pytest.mark.django_db(transaction=True)
def test_a_child_run_is_a_branch_of_its_parents_trace_and_each_keeps_its_own_spans(tracing_on, queue: str) -> None:
    parent = Parent.start({"parent_fails": True})  # its last step refuses: the child is undone with it
    drain(queue, finished(parent.pk))
    child = SagaRun.objects.get(parent=parent)
    assert (SagaRun.objects.get(pk=parent.pk).status, SagaRun.objects.get(pk=child.pk).status) == (
        "compensated", "compensated",
    )  # fmt: skip

    spans = finished_spans()
    assert len({span["trace_id"] for span in spans}) == 1
    starts = {span["attributes"]["saga.name"]: span for span in spans if span["name"] == "saga.start"}
    (waits,) = [span for span in spans if span["name"] == "saga.step" and span["attributes"]["saga.step"] == "child"]
    assert starts[Child.name]["parent_id"] == waits["span_id"]  # started by the parent's SubSaga step
    for run, saga in ((parent, Parent.name), (child, Child.name)):
        # Whoever published them (the child telling its parent it ended, the parent's compensation undoing the
        # child), a run's attempts are children of its own start.
        attempts = [span for span in spans if span["name"] != "saga.start" and span["attributes"]["saga.name"] == saga]
        assert attempts
        assert {span["attributes"]["saga.run_id"] for span in attempts} == {str(run.pk)}
        assert {span["parent_id"] for span in attempts} == {starts[saga]["span_id"]}, saga
    names = {(span["attributes"]["saga.name"], span["name"]) for span in spans}
    assert {(Child.name, "saga.compensate"), (Parent.name, "saga.compensate")} <= names


def test_a_message_with_baggage_continues_its_trace_but_its_baggage_is_neither_in_force_nor_carried_on(
    settings, exporter: InMemorySpanExporter, baggage_propagated: None
) -> None:
    settings.SAGAS = {**settings.SAGAS, "TRACING": True}
    assert tracing.enabled()  # connects its handlers of Celery's signals
    run_id = uuid.uuid4()
    request = SimpleNamespace(
        traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01", tracestate="vendor=value", sagas_trace_run=str(run_id), **PLANTED
    )
    task = Task("saga.step", request)
    ctx = sagas.StepContext(
        saga_id=run_id, saga_name="tests.traced", step="first", payload={}, results={},
        idempotency_key=f"{run_id}:first", attempt=1,
    )  # fmt: skip
    following: dict[str, Any] = {}
    retried = dict(vars(request))  # Celery's retry copies the headers of the message it retries
    task_prerun.send(sender=task, task_id="a-task", task=task, args=(), kwargs={})
    try:
        with tracing.attempt(tracing.STEP, ctx, 1):
            in_force = dict(baggage.get_all())  # what a participant's HTTP client would send on
            for headers in (following, retried):
                before_task_publish.send(sender="saga.step", body=(), headers=headers)
    finally:
        task_postrun.send(sender=task, task_id="a-task", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")

    (span,) = finished_spans()
    assert (span["trace_id"], span["parent_id"]) == (TRACE_ID, SPAN_ID)  # the message's trace goes on
    assert in_force == {}
    carried = {
        "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01", "tracestate": "vendor=value", "sagas_trace_run": str(run_id),
    }  # fmt: skip
    assert following == carried
    assert "baggage" not in retried
    assert {key: retried[key] for key in carried} == carried


def test_a_runs_stored_trace_context_and_what_is_published_from_it_carry_no_baggage(
    settings, exporter: InMemorySpanExporter, baggage_propagated: None, a_request_with_baggage: None
) -> None:
    settings.SAGAS = {**settings.SAGAS, "TRACING": True}
    with tracing.starting("tests.traced", 1):
        kept = tracing.stored()
    (start,) = finished_spans()
    assert list(kept) == [tracing.STORED_KEY]
    assert list(kept[tracing.STORED_KEY]) == ["traceparent"]
    assert kept[tracing.STORED_KEY]["traceparent"].split("-")[1:3] == [start["trace_id"], start["span_id"]]

    # A re-drive, outside the run's tasks: only the traceparent and tracestate of what the run stored are read back.
    published: dict[str, Any] = {}
    stored_context = {**kept[tracing.STORED_KEY], **PLANTED}
    run_id = uuid.uuid4()
    publish = tracing.bound(
        lambda: before_task_publish.send(sender="saga.step", body=(), headers=published), run_id, lambda: stored_context
    )
    publish()
    assert published == {**kept[tracing.STORED_KEY], "sagas_trace_run": str(run_id)}


@pytest.mark.django_db(transaction=True)
def test_baggage_does_not_travel_through_the_broker_with_a_runs_trace(
    tracing_on, queue: str, baggage_propagated: None, a_request_with_baggage: None
) -> None:
    run = Traced.start(RUN_OF_EVERY_KIND)
    # Every message reaching the worker carries baggage and a header of its own besides the run's trace context.
    headers = drain(queue, finished(run.pk), planted=PLANTED)
    assert SagaRun.objects.get(pk=run.pk).status == "compensated"

    spans = finished_spans()
    (start,) = [span for span in spans if span["name"] == "saga.start"]
    assert {span["trace_id"] for span in spans} == {start["trace_id"]}
    assert {span["parent_id"] for span in spans if span is not start} == {start["span_id"]}
    # Those the framework published (the start's, the chain's, a retry, the compensations, the deliveries) and
    # what the run keeps carry its trace context and no baggage.
    assert len(headers) >= 7
    assert {"traceparent", "sagas_trace_run"} <= set.intersection(*(set(message) for message in headers))
    assert [message for message in headers if "baggage" in message] == []
    assert set(selectors.trace_context(run.pk)) == {"traceparent"}


@pytest.mark.django_db(transaction=True)
def test_with_tracing_off_no_span_is_made_and_no_message_carries_a_trace(
    queue: str, exporter: InMemorySpanExporter
) -> None:
    run = Traced.start(RUN_OF_EVERY_KIND)
    headers = drain(queue, finished(run.pk))
    assert SagaRun.objects.get(pk=run.pk).status == "compensated"
    assert len(headers) >= 7
    assert not [message for message in headers if {"traceparent", "tracestate"} & set(message)]
    assert exporter.get_finished_spans() == ()
    assert "trace_context" not in SagaEvent.objects.get(run_id=run.pk, seq=1).data


def test_tracing_on_without_the_extra_is_a_configuration_error(settings, monkeypatch) -> None:
    settings.SAGAS = {**settings.SAGAS, "TRACING": True}
    monkeypatch.setattr(checks, "TRACING_INSTALLED", False)
    (error,) = checks.check_tracing(None)
    assert error.id == "sagas.E006"
    assert "pip install django-celery-sagas[tracing]" in str(error.hint)
    monkeypatch.setattr(checks, "TRACING_INSTALLED", True)
    assert checks.check_tracing(None) == []
    settings.SAGAS = {**settings.SAGAS, "TRACING": False}
    monkeypatch.setattr(checks, "TRACING_INSTALLED", False)
    assert checks.check_tracing(None) == []


WITHOUT_OPENTELEMETRY = """
import json, sys
sys.modules["opentelemetry"] = None  # as if the tracing extra were not installed: importing it fails
import django
django.setup()
from django.core import checks
from sagas import delivery, runner, tasks, tracing
print(json.dumps({
    "installed": tracing.INSTALLED,
    "enabled": tracing.enabled(),
    "errors": sorted(message.id for message in checks.run_checks() if message.id == "sagas.E006"),
    "span": type(tracing.starting("tests.traced", 1)).__name__,
}))
"""


def test_the_framework_loads_without_the_extra_and_the_check_says_what_is_missing() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "SAGAS_TRACING": "1"}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"installed": False, "enabled": False, "errors": ["sagas.E006"], "span": "Untraced"}
