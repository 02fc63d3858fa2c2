"""What a run's page shows: steps with durations, errors and task links; the timeline; payload and outputs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import redis
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from sagas import leases
from sagas.admin.common import pretty_json
from sagas.admin.graph import saga_graph_svg
from sagas.conf import sagas_settings
from sagas.diagnose import Finding, diagnose
from sagas.masking import masked
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.registry import get_saga
from sagas.selectors import circuit_call, humanize_seconds, step_duration
from sagas.states import CIRCUIT_REFUSAL


@dataclass
class TaskLink:
    task_id: str
    flower: str  # "" when no Flower is configured
    result: str  # the django-celery-results admin, filtered to this task


@dataclass
class StepRow:
    step: SagaStepRun
    service: str
    duration: str
    failures: str
    circuit: str  # "" unless the service's breaker ever refused the step: its wait, or how often it was refused
    in_flight: str  # "" unless a delivery holds the step's lease now: which attempt, where, since when
    error_message: str
    traceback: str
    task: TaskLink | None
    compensation_task: TaskLink | None
    output: SafeString | None


@dataclass
class EventRow:
    event: SagaEvent
    since_previous: str
    summary: str


def task_link(task_id: str, *, failed: bool) -> TaskLink | None:
    """Links of a step's task: Flower, and the result backend's rows, which only failed attempts have."""
    if not task_id:
        return None
    flower = str(sagas_settings.FLOWER_URL or "").rstrip("/")
    # Every attempt of a step shares the prefix "<run>:<step>:", so the search lists all its failed attempts.
    query = urlencode({"q": task_id.rsplit(":", 1)[0] + ":"})
    result = reverse("admin:django_celery_results_taskresult_changelist") + "?" + query if failed else ""
    return TaskLink(task_id, f"{flower}/task/{task_id}" if flower else "", result)


def step_rows(run: SagaRun, steps: list[SagaStepRun]) -> list[StepRow]:
    try:
        saga = get_saga(run.saga_name, run.version)
    except LookupError:
        saga = None
    held = _in_flight(run, steps)
    rows = []
    for step in steps:
        duration = step_duration(step)
        error = step.error or {}
        service = ""
        if saga is not None:
            service = saga.step(step.name).service or ""
        rows.append(
            StepRow(
                step=step,
                service=service,
                duration=humanize_seconds(duration.total_seconds()) if duration else "-",
                failures=", ".join(
                    f"{f['kind'][0]}{f['attempt']} {f['class']}" for f in step.failures if f["kind"] != CIRCUIT_REFUSAL
                )
                or "-",
                circuit=_circuit(step),
                in_flight=held.get(step.name, ""),
                error_message=f"{error.get('class', '')}: {error.get('message', '')}" if error else "",
                traceback=error.get("traceback", "") if error else "",
                task=task_link(step.task_id, failed=any(f["kind"] == "action" for f in step.failures)),
                compensation_task=task_link(
                    step.compensation_task_id, failed=any(f["kind"] == "compensation" for f in step.failures)
                ),
                output=pretty_json(masked(step.output)) if step.output is not None else None,
            )
        )
    return rows


def in_flight(run: SagaRun, steps: list[SagaStepRun]) -> dict[str, leases.Holder]:
    """The steps running now, from their leases: an attempt's start is recorded with its outcome, so only the
    lease says a step is under way."""
    try:
        return leases.in_flight(run.pk, steps)
    except (redis.RedisError, ImproperlyConfigured):
        return {}  # the page still shows what the database says


def _in_flight(run: SagaRun, steps: list[SagaStepRun]) -> dict[str, str]:
    """The steps running now, in words."""
    now = time.time()
    return {
        name: f"attempt {h.attempt} running for {humanize_seconds(max(0.0, now - h.started))} "
        f"on {h.host} (pid {h.pid}, task {h.task_id})"
        for name, h in in_flight(run, steps).items()
    }


def _circuit(step: SagaStepRun) -> str:
    """What the step's open circuit did to it: refusals are no attempts, so they are told apart."""
    if step.circuit_waiting_since is not None:
        waited = humanize_seconds((timezone.now() - step.circuit_waiting_since).total_seconds())
        return (
            f"{circuit_call(step.status)} waiting on an open circuit for {waited} "
            f"(since {step.circuit_waiting_since:%Y-%m-%d %H:%M:%S}), refused {step.circuit_refusals}x"
        )
    if step.circuit_refusals:
        return f"refused {step.circuit_refusals}x by an open circuit"
    return ""


def _summary(event: SagaEvent) -> str:
    data = event.data or {}
    parts = []
    if "from" in data and "to" in data:
        parts.append(f"{data['from']} → {data['to']}")
    if "attempt" in data and data["attempt"] is not None:
        parts.append(f"attempt {data['attempt']}")
    if data.get("worker"):  # an attempt's start: the worker process that ran it
        parts.append(f"on {data['worker']} pid {data.get('pid', '?')}")
    error = data.get("error")
    if isinstance(error, dict):
        parts.append(f"{error.get('class', '')}: {error.get('message', '')}")
    if data.get("retry_in") is not None:
        parts.append(f"retry in {data['retry_in']}s")
    for key in ("reason", "action", "failed_step", "service", "deadline"):
        if data.get(key):
            parts.append(f"{key.replace('_', ' ')}: {data[key]}")
    if data.get("compensation_failed"):
        parts.append("compensation failed: " + ", ".join(data["compensation_failed"]))
    return "; ".join(parts)


def event_rows(events: list[SagaEvent]) -> list[EventRow]:
    rows = []
    previous: datetime | None = None
    for event in events:
        gap = humanize_seconds((event.created_at - previous).total_seconds()) if previous else ""
        rows.append(EventRow(event, f"+{gap}" if gap else "", _summary(event)))
        previous = event.created_at
    return rows


@dataclass
class TimelinePage:
    """Which of a run's events the page shows: at most SAGAS["ADMIN_TIMELINE_EVENTS"], the latest by default."""

    first: int  # seq of the first event shown (0: none)
    last: int
    total: int  # events in the run's log (its lock_version: the seq of its latest event)
    older: int | None  # ?events_before= for the page of earlier events, if any
    newer: int | None  # ?events_before= for the page of later events, if any (None: the latest page)
    latest: bool


def timeline(run: SagaRun, events_before: int | None) -> tuple[list[SagaEvent], TimelinePage]:
    """The events before seq ``events_before`` (None: the latest ones), one page of them, oldest first."""
    size = max(1, int(sagas_settings.ADMIN_TIMELINE_EVENTS))
    before = events_before if events_before is not None and 1 <= events_before <= run.lock_version else None
    shown = run.events.order_by("-seq")
    if before is not None:
        shown = shown.filter(seq__lt=before)
    events = list(reversed(shown[:size]))
    first, last = (events[0].seq, events[-1].seq) if events else (0, 0)
    newer = last + 1 + size if before is not None and last + 1 + size <= run.lock_version else None
    return events, TimelinePage(
        first=first,
        last=last,
        total=run.lock_version,
        older=first if first > 1 else None,
        newer=newer,
        latest=before is None or last >= run.lock_version,
    )


def run_page_context(run: SagaRun, *, check_workers: bool = False, events_before: int | None = None) -> dict[str, Any]:
    """Everything the run's page shows, read with a fixed number of queries, whatever the length of its log."""
    steps = list(run.steps.order_by("index"))
    events, page = timeline(run, events_before)
    try:
        saga = get_saga(run.saga_name, run.version)
    except LookupError:
        saga = None
    findings: list[Finding] = diagnose(run, check_workers=check_workers)
    return {
        "run": run,
        "saga_class": saga,
        "graph": saga_graph_svg(saga, steps),
        "step_rows": step_rows(run, steps),
        "event_rows": event_rows(events),
        "timeline": page,
        "findings": findings,
        "payload": pretty_json(masked(run.payload)),
        "error": pretty_json(masked(run.error)) if run.error else None,
        "children": list(run.children.order_by("created_at")),
    }
