"""The history checker: every run's rows, events, participant and receiver effects checked after a soak."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import models

from bench.chaos.faults import FaultLog
from bench.chaos.workload import BUSINESS, PLAN_KEY, Shop, effect_problems
from sagas import engine, eventlog, registry
from sagas.choreography import receivers_of
from sagas.models import SagaEvent, SagaOutbox, SagaReceipt, SagaRun
from sagas.states import EventType, RunStatus, StepStatus

# What each category counts: bench/README.md, "The history checker".
CATEGORIES = ("lost", "doubled", "misordered", "unsettled")
REFUND_DOWN = "refund_gateway_unavailable"


@dataclass(frozen=True)
class Effect:
    """How a participant records a step's effect (a row keyed ``<run>:<step>``) and its undoing."""

    model: Callable[[], type[models.Model]]
    undone: Callable[[Any], bool] | None  # None: the step has no compensation


def _effects() -> dict[str, Effect]:
    from participants.airline.models import SeatHold
    from participants.cars.models import CarRental
    from participants.fraud.models import Screening
    from participants.hotels.models import RoomBooking
    from participants.inventory.models import Reservation
    from participants.notifications.models import Notification
    from participants.orders.models import Order
    from participants.payments.models import Payment, Refund
    from participants.shipping.models import Shipment

    def refunded(payment: Payment) -> bool:
        return Refund.objects.filter(payment=payment).exists()

    return {
        "create_order": Effect(lambda: Order, lambda row: bool(row.cancel_key)),
        "reserve_stock": Effect(lambda: Reservation, lambda row: bool(row.release_key)),
        "charge_payment": Effect(lambda: Payment, refunded),
        "schedule_shipment": Effect(lambda: Shipment, lambda row: bool(row.cancel_key)),
        "send_confirmation": Effect(lambda: Notification, None),
        "check_fraud": Effect(lambda: Screening, None),
        "reserve_flight": Effect(lambda: SeatHold, lambda row: bool(row.release_key)),
        "book_hotel": Effect(lambda: RoomBooking, lambda row: bool(row.cancel_key)),
        "rent_car": Effect(lambda: CarRental, lambda row: bool(row.return_key)),
        "send_itinerary": Effect(lambda: Notification, None),
    }


@dataclass(frozen=True)
class Violation:
    category: str
    run_id: uuid.UUID | None
    message: str


@dataclass
class Verdict:
    runs: int = 0
    violations: list[Violation] = field(default_factory=list)
    settle_seconds: list[float] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, category: str) -> int:
        """Runs (or, for ledger problems, problems) with at least one violation of ``category``."""
        return len({(v.run_id or v.message) for v in self.violations if v.category == category})

    @property
    def ok(self) -> bool:
        return not self.violations

    def p99(self) -> float:
        if not self.settle_seconds:
            return 0.0
        ordered = sorted(self.settle_seconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def check(run_ids: list[uuid.UUID], shop: Shop, ledger_before: dict[str, Any]) -> Verdict:
    """Every check, for every run the soak started."""
    effects = _effects()
    verdict = Verdict(runs=len(run_ids))
    runs = {run.pk: run for run in SagaRun.objects.filter(pk__in=run_ids).prefetch_related("steps")}
    events: dict[uuid.UUID, list[SagaEvent]] = defaultdict(list)
    for event in SagaEvent.objects.filter(run__in=run_ids).order_by("run_id", "seq"):
        events[event.run_id].append(event)
    statuses: dict[str, int] = defaultdict(int)
    for run_id in run_ids:
        run = runs.get(run_id)
        if run is None:
            verdict.violations.append(Violation("lost", run_id, "started, but no such run in the database"))
            continue
        statuses[run.status] += 1
        found = _check_run(run, events[run.pk], effects, shop)
        verdict.violations += [Violation(category, run.pk, message) for category, message in found]
        if run.finished_at is not None:
            verdict.settle_seconds.append((run.finished_at - run.created_at).total_seconds())
    verdict.by_status = dict(sorted(statuses.items()))
    verdict.violations += [Violation("doubled", None, p) for p in effect_problems(list(runs.values()), ledger_before)]
    verdict.violations += [Violation("doubled", None, p) for p in _receiver_counters()]
    verdict.violations += _receipts(run_ids)
    return verdict


def _check_run(run: SagaRun, log: list[SagaEvent], effects: dict[str, Effect], shop: Shop) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    steps = {step.name: step for step in run.steps.all()}
    # Settled: finished, and `failed` only for the permanent failure the run planned.
    if run.status == RunStatus.FAILED:
        reason = _planned_failure(run, steps, shop)
        if reason:
            found.append(("unsettled", f"failed, which nothing planned: {reason}"))
    elif run.status not in (RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.CANCELLED):
        found.append(("unsettled", f"still {run.status} after the drain"))
    # The event log: seqs 1..lock_version with no gap, and its fold equals the rows.
    if [event.seq for event in log] != list(range(1, run.lock_version + 1)):
        found.append(("lost", f"event seqs {[e.seq for e in log][:5]}... do not run 1..{run.lock_version}"))
    try:
        differences = eventlog.rebuild(run.pk).differences(run)
    except Exception as exc:  # an unfoldable log is a finding, not a crash of the checker
        differences = [f"the log does not fold: {exc!r}"]
    found += [("lost", f"rebuild differs: {d}") for d in differences]
    # Effects: at most once each, undone at most once, and as the step rows say. A run that compensated (or failed
    # compensating) must have undone every step it did; a completed one must have done them all.
    undoing = run.status == RunStatus.COMPENSATED or any(
        step.status == StepStatus.COMPENSATION_FAILED for step in steps.values()
    )
    for name, step in steps.items():
        if run.status == RunStatus.COMPLETED and step.status != StepStatus.SUCCEEDED:
            found.append(("lost", f"the run completed, but {name} is {step.status}"))
        if undoing and step.status == StepStatus.SUCCEEDED and effects[name].undone is not None:
            found.append(("unsettled", f"the run compensated, but {name} is still succeeded: its effect left in place"))
        effect = effects[name]
        model = effect.model()
        rows = list(model.objects.filter(idempotency_key=f"{run.pk}:{name}"))  # type: ignore[attr-defined]
        if len(rows) > 1:
            found.append(("doubled", f"{name}: {len(rows)} {model.__name__} rows"))
        applied = bool(rows)
        undone = bool(rows) and effect.undone is not None and effect.undone(rows[0])
        if step.status in (StepStatus.SUCCEEDED, StepStatus.COMPENSATION_FAILED, StepStatus.COMPENSATING):
            if not applied:
                found.append(("lost", f"{name} is {step.status} but {model.__name__} has no row for it"))
            if undone:
                found.append(("lost", f"{name} is {step.status} but its effect was undone"))
        elif step.status == StepStatus.COMPENSATED:
            if not (applied and undone):
                found.append(("lost", f"{name} is compensated but its effect is {_state(applied, undone)}"))
        elif applied and not undone and effect.undone is not None and run.status == RunStatus.COMPENSATED:
            # An action whose effect landed while its step row says it never succeeded: nothing will undo it.
            found.append(("unsettled", f"{name} is {step.status}, yet its effect is applied and left in place"))
    found += _compensation_order(run, log)
    return found


def _state(applied: bool, undone: bool) -> str:
    return "undone" if undone else "applied, not undone" if applied else "not applied"


def _planned_failure(run: SagaRun, steps: dict[str, Any], shop: Shop) -> str:
    """Why a failed run's failure was not planned ("" when it was): a compensation may give up only for the account
    whose refunds cannot get through; otherwise the run failed forward, past its pivot, by a refusal it planned."""
    plan = run.payload.get(PLAN_KEY) or {}

    def code(step: Any) -> str:
        return str((step.error or {}).get("code") or (step.error or {}).get("type") or "")

    gave_up = [step for step in steps.values() if step.status == StepStatus.COMPENSATION_FAILED]
    if gave_up:
        reasons = [
            f"{step.name}'s compensation gave up ({code(step)})"
            for step in gave_up
            if not (code(step) == REFUND_DOWN and run.payload.get("account_id") == shop.refunds_down)
        ]
        return "; ".join(reasons)
    failed = [step for step in steps.values() if step.status == StepStatus.FAILED]
    if not failed:
        return "no step failed and no compensation gave up"
    reasons = [
        f"{step.name} failed ({code(step)})"
        for step in failed
        if not (code(step) == BUSINESS and plan.get(step.name) == "business")
    ]
    return "; ".join(reasons)


def _compensation_order(run: SagaRun, log: list[SagaEvent]) -> list[tuple[str, str]]:
    """Each compensation succeeded at most once, and none started before every earlier stage had settled."""
    saga = registry.get_saga(run.saga_name, run.version)
    succeeded = [e.step for e in log if e.type == EventType.STEP_SUCCEEDED]
    owed = [name for name in dict.fromkeys(succeeded) if saga.step(name).compensation is not None]
    started: dict[str, int] = {}
    settled: dict[str, int] = {}
    undone: dict[str, int] = defaultdict(int)
    for event in log:
        if event.type == EventType.COMPENSATION_STARTED:
            started.setdefault(event.step, event.seq)
        elif event.type in (EventType.COMPENSATION_SUCCEEDED, EventType.COMPENSATION_FAILED):
            settled[event.step] = event.seq
            undone[event.step] += event.type == EventType.COMPENSATION_SUCCEEDED
    found = [("doubled", f"{name}'s compensation succeeded {n} times") for name, n in undone.items() if n > 1]
    earlier: list[str] = []
    for stage in engine.compensation_stages(saga, [name for name in owed if name in started]):
        for name in stage:
            for before in earlier:
                if before not in settled or settled[before] > started[name]:
                    found.append(("misordered", f"{name}'s compensation started (#{started[name]}) before "
                                                f"{before}'s settled (#{settled.get(before)})"))  # fmt: skip
        earlier += stage
    return found


def _receiver_counters() -> list[str]:
    """Receiver effects that count messages: every count is the messages counted into it, no more."""
    from participants.analytics.models import SagaOutcomeCount
    from participants.loyalty.models import LoyaltyAccount, PointsEntry

    problems = []
    for row in SagaOutcomeCount.objects.annotate(counted=models.Count("messages")):
        if row.count != row.counted:
            problems.append(f"analytics: {row.saga_name} {row.outcome} {row.day} counts {row.count}, "
                            f"{row.counted} messages")  # fmt: skip
    for account in LoyaltyAccount.objects.annotate(awarded=models.Sum("entries__points")):
        if account.points != (account.awarded or 0):
            problems.append(f"loyalty: {account.customer_email} has {account.points} points, awarded {account.awarded}")
    if PointsEntry.objects.values("idempotency_key").annotate(n=models.Count("id")).filter(n__gt=1).exists():
        problems.append("loyalty: points awarded twice for one message")
    return problems


def _receipts(run_ids: list[uuid.UUID]) -> list[Violation]:
    """Every outbox message reached each of its receivers."""
    received = {
        (r.message_id, r.receiver)
        for r in SagaReceipt.objects.filter(message_id__in=SagaOutbox.objects.filter(run__in=run_ids).values("id"))
    }
    found = []
    for message in SagaOutbox.objects.filter(run__in=run_ids):
        for receiver in receivers_of(message.topic, step=bool(message.message.get("step"))):
            if (message.id, receiver.name) not in received:
                found.append(Violation("lost", message.run_id, f"{receiver.name} never got {message.topic}"))
    return found


def timeline(run_id: uuid.UUID, faults: FaultLog) -> str:
    """The run's events, the participants' effects for it and the faults inflicted meanwhile, in time order."""
    from django.utils import timezone

    run = SagaRun.objects.filter(pk=run_id).first()
    if run is None:
        return f"run {run_id}: not in the database"
    lines: list[tuple[datetime, str]] = []
    for event in SagaEvent.objects.filter(run=run).order_by("seq"):
        data = event.data or {}
        move = f" {data.get('from')}->{data.get('to')}" if "to" in data else ""
        extra = {k: v for k, v in data.items() if k in ("attempt", "worker", "error", "reason", "code")}
        lines.append((event.created_at, f"#{event.seq} {event.type} {event.step}{move} {extra or ''}".rstrip()))
    for name, effect in _effects().items():
        for row in effect.model().objects.filter(idempotency_key__startswith=f"{run.pk}:{name}"):  # type: ignore[attr-defined]
            lines.append((row.created_at, f"effect {name}: {type(row).__name__} {row.pk} {row.idempotency_key}"))
    for message in SagaOutbox.objects.filter(run=run):
        lines.append((message.created_at, f"outbox {message.topic} {message.id} published {message.published_at}"))
        for receipt in SagaReceipt.objects.filter(message_id=message.id):
            lines.append((receipt.received_at, f"received {message.topic} by {receipt.receiver}"))
    # The faults of the run's life, and of the minute after it (its messages may still be on their way).
    end = (run.finished_at or timezone.now()) + timedelta(seconds=60)
    for entry in faults.between(run.created_at, end):
        lines.append((entry.started, f"FAULT {entry.fault} {entry.detail}{entry.error}".rstrip()))
    lines.sort(key=lambda line: line[0])
    head = f"run {run.pk} ({run.saga_name} v{run.version}) {run.status}; payload plan {run.payload.get(PLAN_KEY)}"
    body = [f"  +{(at - run.created_at).total_seconds():7.2f}s {text}" for at, text in lines]
    steps = [f"  step {s.name}: {s.status} attempts={s.attempts} error={(s.error or {}).get('code') or ''}"
             for s in run.steps.order_by("index")]  # fmt: skip
    return "\n".join([head, *body, *steps])
