"""`manage.py saga_trace <run_id>`: a run's header and its event timeline, secrets masked."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sagas import selectors
from sagas.management import cli
from sagas.masking import masked
from sagas.models import SagaEvent, SagaRun, SagaStepRun


class Command(BaseCommand):
    help = (
        "Show a saga run: saga, status, idempotency key, correlation id and error, then every event in order "
        "with its time, the time since the event before, type, step, actor and a summary of its data (an "
        "attempt's start names the worker process that ran it). Payload, "
        "error and event data are masked (SAGAS['MASKED_KEYS']). Exit codes: 0 ok; 2 malformed or unknown run id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", help="the saga run's id (a UUID)")
        parser.add_argument("--json", action="store_true", help="print the run, its steps and events as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        run = cli.get_run(options["run_id"])
        events = list(run.events.select_related("causation").order_by("seq"))
        if options["json"]:
            steps = [_step_json(step) for step in run.steps.order_by("index")]
            data = {"run": cli.run_json(run), "steps": steps, "events": [_event_json(e) for e in events]}
            self.stdout.write(cli.dumps(data))
            return
        self.stdout.write(_header(run))
        self.stdout.write("")
        self.stdout.write(cli.table(HEADER, _timeline(events)) if events else "No events recorded.")


HEADER = ["seq", "time (UTC)", "+since prev", "type", "step", "actor", "details"]


def _header(run: SagaRun) -> str:
    step = selectors.current_step(run.steps.all())
    lines = [
        ("run", str(run.pk)),
        ("saga", f"{run.saga_name} v{run.version}"),
        ("status", run.status),
        ("created", f"{cli.when(run.created_at)} ({cli.ago(run.created_at)} ago)"),
        ("duration", selectors.humanize_seconds(selectors.run_duration(run).total_seconds())),
        ("idempotency key", run.idempotency_key or "-"),
        ("correlation id", run.correlation_id or "-"),
        ("error", cli.error_text(masked(run.error))),
    ]
    if step is not None:
        lines.append(("step to look at", f"{step.name} ({step.status})"))
    if run.parked_reason:
        lines.append(("parked because", run.parked_reason))
    width = max(len(label) for label, _ in lines)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in lines)


def _timeline(events: list[SagaEvent]) -> list[list[str]]:
    rows = []
    previous = None
    for event in events:
        since = "-" if previous is None else _elapsed((event.created_at - previous).total_seconds())
        previous = event.created_at
        rows.append(
            [
                str(event.seq),
                cli.when(event.created_at),
                since,
                event.type,
                event.step or "-",
                event.actor or "-",
                _summary(masked(event.data)),
            ]
        )
    return rows


def _elapsed(seconds: float) -> str:
    return f"+{seconds:.3f}s" if seconds < 60 else f"+{selectors.humanize_seconds(seconds)}"


def _summary(data: dict[str, Any]) -> str:
    """The parts of an event's data a person reads first: from→to, reason, error, retry, attempt."""
    parts = []
    if "from" in data or "to" in data:
        parts.append(f"{data.get('from', '?')}→{data.get('to', '?')}")
    if data.get("reason"):
        parts.append(f"reason: {data['reason']}")
    if data.get("error"):
        parts.append(f"error: {cli.error_text(data['error'])}")
    if data.get("retry_in") is not None:
        parts.append(f"retry in {float(data['retry_in']):.1f}s")
    if data.get("attempt") is not None:
        parts.append(f"attempt {data['attempt']}")
    if data.get("worker"):  # an attempt's start: the worker process that ran it
        parts.append(f"on {data['worker']} pid {data.get('pid', '?')}")
    for key in ("failed_step", "action", "service", "task"):
        if data.get(key):
            parts.append(f"{key.replace('_', ' ')}: {data[key]}")
    return cli.shorten("; ".join(parts)) if parts else "-"


def _step_json(step: SagaStepRun) -> dict[str, Any]:
    return {
        "name": step.name,
        "index": step.index,
        "status": step.status,
        "attempts": step.attempts,
        "compensation_attempts": step.compensation_attempts,
        "output": masked(step.output),
        "error": masked(step.error),
        "task_id": step.task_id,
        "compensation_task_id": step.compensation_task_id,
        "worker": step.worker,
        "worker_pid": step.worker_pid,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "compensated_at": step.compensated_at,
    }


def _event_json(event: SagaEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "created_at": event.created_at,
        "type": event.type,
        "step": event.step,
        "actor": event.actor,
        "data": masked(event.data),
        "caused_by": event.causation.seq if event.causation else None,
    }
