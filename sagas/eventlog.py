"""Event sourcing: fold a run's events into its state, snapshot it every N events, rebuild it from the log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from sagas import failures, logs
from sagas.conf import sagas_settings
from sagas.exceptions import RunNotFound
from sagas.models import SagaEvent, SagaRun, SagaSnapshot
from sagas.states import BREAKER_EVENTS, EventType, RunStatus, StepStatus, stamp_run, stamp_step

logger = logging.getLogger(__name__)

# Columns of SagaRun / SagaStepRun that a fold reproduces (everything but keys and the search text's index).
RUN_FIELDS = (
    "saga_name",
    "version",
    "definition_id",
    "status",
    "payload",
    "idempotency_key",
    "search_text",
    "correlation_id",
    "error",
    "deadline",
    "start_at",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "parked_reason",
    "lock_version",
    "parent_id",
    "parent_step",
)
STEP_FIELDS = (
    "index",
    "status",
    "attempts",
    "compensation_attempts",
    "output",
    "error",
    "failures",
    "task_id",
    "compensation_task_id",
    "started_at",
    "finished_at",
    "compensated_at",
    "circuit_refusals",
    "circuit_waiting_since",
    "wait_until",
    "worker",
    "worker_pid",
)
TIMESTAMPS = {
    "deadline",
    "start_at",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "compensated_at",
    "circuit_waiting_since",
    "wait_until",
}
FAILURES = {
    EventType.STEP_ATTEMPT_FAILED,
    EventType.STEP_FAILED,
    EventType.COMPENSATION_ATTEMPT_FAILED,
    EventType.COMPENSATION_FAILED,
}


class UnfoldableLog(ValueError):
    """A run's events cannot be folded into a state: a gap, or a log that did not start with SagaStarted
    (a run written by something other than the framework's services)."""


@dataclass
class StepState:
    """A step as its events tell it."""

    index: int
    status: str = StepStatus.PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    output: Any = None
    error: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    task_id: str = ""
    compensation_task_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    compensated_at: datetime | None = None
    circuit_refusals: int = 0
    circuit_waiting_since: datetime | None = None
    wait_until: datetime | None = None
    worker: str = ""
    worker_pid: int | None = None


@dataclass
class RunState:
    """A run as its events tell it: what ``sagas.rebuild`` returns."""

    id: uuid.UUID
    saga_name: str = ""
    version: int = 0
    definition_id: int | None = None
    status: str = RunStatus.PENDING
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    search_text: str = ""
    correlation_id: str = ""
    error: dict[str, Any] | None = None
    deadline: datetime | None = None
    start_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    parked_reason: str = ""
    lock_version: int = 0
    parent_id: uuid.UUID | None = None
    parent_step: str = ""
    steps: dict[str, StepState] = field(default_factory=dict)
    folded: int = 0  # events folded by the rebuild that produced this state (after its snapshot, if any)
    snapshot_seq: int = 0  # the snapshot the rebuild started from (0: none)

    def apply(self, event: SagaEvent) -> None:
        """Fold one event into the state (events must come in ``seq`` order)."""
        if event.seq != self.lock_version + 1:
            raise UnfoldableLog(f"Run {self.id}: event #{event.seq} follows #{self.lock_version}; the log has a gap.")
        if (event.seq == 1) != (event.type == EventType.SAGA_STARTED):
            raise UnfoldableLog(f"Run {self.id}: its log must begin with SagaStarted, and only there (#{event.seq}).")
        if event.step and event.step not in self.steps:
            raise UnfoldableLog(f"Run {self.id}: event #{event.seq} names step {event.step!r}, which it never had.")
        data, at = event.data, event.created_at
        self.lock_version, self.updated_at = event.seq, at
        if event.type == EventType.SAGA_STARTED:
            self._start(data, at)
        elif event.type == EventType.SAGA_PARKED:  # names the step whose task was unknown; parks the whole run
            self.parked_reason = data["reason"]
        elif event.step:
            self._apply_to_step(self.steps[event.step], event.type, event.step, data, at)
        elif "to" in data:  # a run transition (move_run): its status, stamps and the columns it set
            self.status = data["to"]
            for name, value in stamp_run(data["from"], data["to"], at).items():
                setattr(self, name, value)
            for name, value in data.get("set", {}).items():
                setattr(self, name, value)
        elif event.type == EventType.SAGA_REDRIVEN:
            self.parked_reason = ""
        self.folded += 1

    def _start(self, data: dict[str, Any], at: datetime) -> None:
        self.saga_name, self.version, self.definition_id = data["saga"], data["version"], data["definition"]
        self.payload, self.idempotency_key = data["payload"], data["idempotency_key"]
        self.search_text, self.correlation_id = data["search_text"], data["correlation_id"]
        self.deadline = datetime.fromisoformat(data["deadline"]) if data["deadline"] else None
        self.start_at = datetime.fromisoformat(data["start_at"]) if data.get("start_at") else None
        self.parent_id = uuid.UUID(data["parent"]) if data.get("parent") else None
        self.parent_step = data.get("parent_step", "")
        self.created_at = at
        self.steps = {name: StepState(index=index) for index, name in enumerate(data["steps"])}

    def _apply_to_step(self, step: StepState, type: str, name: str, data: dict[str, Any], at: datetime) -> None:
        if type in BREAKER_EVENTS:
            return  # the service's breaker moved; the step did not
        if "to" in data:
            step.status = data["to"]
            step.circuit_waiting_since = None  # any transition ends a wait on the circuit
            for column, value in stamp_step(data["to"], step.started_at, at).items():
                setattr(step, column, value)
        if type == EventType.CIRCUIT_REFUSED:
            step.circuit_refusals += 1
            step.circuit_waiting_since = datetime.fromisoformat(data["waiting_since"])
            step.failures = failures.with_refusal(step.failures, data["failure"])
        if type == EventType.STEP_STARTED:
            # The attempt's number: a start recorded with its outcome may follow attempts lost without a record.
            step.attempts = data.get("attempt", step.attempts + 1)
            step.task_id = data.get("task_id", step.task_id)
            _record_worker(step, data)
        elif type == EventType.STEP_WAITING:
            step.wait_until = datetime.fromisoformat(data["until"]) if data.get("until") else None
        elif type in (EventType.STEP_SUCCEEDED, EventType.STEP_RESOLVED, EventType.SIGNAL_RECEIVED):
            step.output, step.error = data["output"], None
            if data.get("deadline_lifted"):  # a pivot succeeded: the run goes forward without a deadline
                self.deadline = None
        elif type == EventType.COMPENSATION_SCHEDULED:
            step.compensation_task_id = data["task_id"]
            if data.get("fresh_budget"):
                step.compensation_attempts = 0
        elif type == EventType.COMPENSATION_STARTED:
            step.compensation_attempts += 1
            step.compensation_task_id = data["task_id"]
            _record_worker(step, data)
        if type in FAILURES:
            step.error = data["error"]
            step.failures = [*step.failures, data["failure"]]
        if type == EventType.STEP_FAILED and self.error is None:
            self.error = {"step": name, **failures.summary(data["error"])}  # the first step to fail for good

    def differences(self, run: SagaRun) -> list[str]:
        """Where the stored rows of ``run`` disagree with this state; empty when they match."""
        found = [
            f"run.{name}: rebuilt {getattr(self, name)!r}, stored {getattr(run, name)!r}"
            for name in RUN_FIELDS
            if getattr(self, name) != getattr(run, name)
        ]
        rows = {step.name: step for step in run.steps.all()}
        if set(rows) != set(self.steps):
            found.append(f"steps: rebuilt {sorted(self.steps)}, stored {sorted(rows)}")
        for name in set(rows) & set(self.steps):
            found += [
                f"step {name}.{column}: rebuilt {getattr(self.steps[name], column)!r}, "
                f"stored {getattr(rows[name], column)!r}"
                for column in STEP_FIELDS
                if getattr(self.steps[name], column) != getattr(rows[name], column)
            ]
        return found

    def to_json(self) -> dict[str, Any]:
        state = {name: _dump(getattr(self, name)) for name in RUN_FIELDS}
        state["steps"] = {
            name: {column: _dump(value) for column, value in asdict(step).items()} for name, step in self.steps.items()
        }
        return state

    @classmethod
    def from_json(cls, run_id: uuid.UUID, state: dict[str, Any]) -> RunState:
        loaded = cls(id=run_id, **{name: _load(name, state[name]) for name in RUN_FIELDS if name in state})
        # A snapshot taken before a column existed lacks it (run or step): the column's default is what the fold
        # had then.
        loaded.steps = {
            name: StepState(**{f.name: _load(f.name, values[f.name]) for f in fields(StepState) if f.name in values})
            for name, values in state["steps"].items()
        }
        return loaded


def _record_worker(step: StepState, data: dict[str, Any]) -> None:
    # An attempt recorded by another process (one lost with its worker) names no worker: the row then names none.
    step.worker, step.worker_pid = data.get("worker", ""), data.get("pid")


def _dump(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    return value.isoformat() if isinstance(value, datetime) else value


def _load(name: str, value: Any) -> Any:
    if name == "parent_id" and value is not None:
        return uuid.UUID(value)
    return datetime.fromisoformat(value) if name in TIMESTAMPS and value is not None else value


def fold(run_id: uuid.UUID, events: Iterable[SagaEvent], start: RunState | None = None) -> RunState:
    """The state after ``events`` (in seq order), from ``start`` (a snapshot) or from nothing."""
    state = start or RunState(id=run_id)
    for event in events:
        state.apply(event)
    return state


def rebuild(run_id: uuid.UUID | str, *, upto: int | None = None) -> RunState:
    """A run's state folded from its event log alone: the latest snapshot, then the events after it (``upto``:
    only the events up to that seq, and a snapshot at or before it).

    Compare it with the stored rows with ``state.differences(run)``.
    """
    try:
        key = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError as exc:
        raise RunNotFound(f"No saga run with id {run_id!r}.") from exc
    snapshots = SagaSnapshot.objects.filter(run_id=key)
    events = SagaEvent.objects.filter(run_id=key).order_by("seq")
    if upto is not None:
        snapshots, events = snapshots.filter(seq__lte=upto), events.filter(seq__lte=upto)
    snapshot = snapshots.order_by("-seq").first()
    if snapshot is None:
        if not events.exists():
            raise RunNotFound(f"No saga run with id {run_id!r} has any event.")
        return fold(key, events)
    start = RunState.from_json(key, snapshot.state)
    start.snapshot_seq = snapshot.seq
    return fold(key, events.filter(seq__gt=snapshot.seq), start)


def snapshot_due(seq: int) -> bool:
    """Whether the event numbered ``seq`` is followed by a snapshot: one every ``SNAPSHOT_EVERY`` events, so a
    rebuild of a long run folds at most that many events."""
    every = sagas_settings.SNAPSHOT_EVERY
    return bool(every) and seq % every == 0


def store_snapshot(run: SagaRun, seq: int) -> None:
    """In the transaction of the event numbered ``seq``: store the run's state folded up to it."""
    try:
        state = rebuild(run.pk, upto=seq)  # the state at this event, whatever was appended since
    except UnfoldableLog as exc:
        # The run goes on; only its rebuild is impossible. Say so once per skipped snapshot.
        logger.warning("no snapshot of saga run %s at #%d: %s", run.pk, seq, exc, extra=logs.fields(run, seq=seq))
        return
    SagaSnapshot.objects.create(run_id=run.pk, seq=seq, state=state.to_json())
