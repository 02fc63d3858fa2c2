"""Circuit breakers on a real worker: shared by both worker processes through Redis, proven by real calls."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta

from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from sagas import breakers
from sagas.diagnose import diagnose
from sagas.health import health_report
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.states import EventType, RunStatus
from tests.conftest import open_breaker
from tests.metrics import scrape
from tests.testapp.models import Call, Switch
from tests.testapp.sagas import CallsX, CallsXOnce, UndoesY, WaitsForY
from tests.worker import WorkerProcess, wait_for_run, wait_until

SETTINGS = breakers.breaker_settings("svc-x")  # tests/settings.py: threshold 3, recovery 3 s, 1 probe


def test_open_breaker_stops_calls_from_every_worker_until_a_probe_closes_it(worker: WorkerProcess) -> None:
    Switch.objects.create(name="x-down", on=True)
    # Phase 1: as many failed calls as the threshold, one run after another, opens the breaker.
    for _ in range(SETTINGS.failure_threshold):
        assert wait_for_run(CallsXOnce.start({}), worker).status == RunStatus.COMPENSATED
    assert breakers.for_service("svc-x").status()["state"] == "open"
    opened = SagaEvent.objects.get(type=EventType.BREAKER_OPENED)
    assert opened.data == {"service": "svc-x", "from": "closed", "to": "open"}

    # Phase 2: the service is back, and several runs want it at once on both worker processes.
    Switch.objects.filter(name="x-down").update(on=False)
    runs = [CallsX.start({}) for _ in range(6)]
    for run in runs:
        assert wait_for_run(run, worker).status == RunStatus.COMPLETED

    calls = list(Call.objects.order_by("started_at"))
    failed, succeeded = calls[: SETTINGS.failure_threshold], calls[SETTINGS.failure_threshold :]
    assert [c.ok for c in failed] == [False] * SETTINGS.failure_threshold
    assert len(succeeded) == len(runs)  # exactly one real call per run: none wasted while open
    assert all(c.ok for c in succeeded)
    # While open nobody called: the first call after the failures waited out the recovery timeout
    # (Redis stamps the opening a moment before the event records it, hence the small allowance).
    recovery = timedelta(seconds=SETTINGS.recovery_timeout - 0.25)
    assert succeeded[0].started_at >= opened.created_at + recovery
    # Runs were turned away with circuit_open, which was not an attempt, and then got through with one.
    steps = list(SagaStepRun.objects.filter(run__in=runs))
    refused = [f for step in steps for f in step.failures if f["kind"] == "circuit_open"]
    assert refused
    assert all(f["class"] == "circuit_open" and f["call"] == "action" and f["retry_in"] > 0 for f in refused)
    assert [step.attempts for step in steps] == [1] * len(runs)
    # Each refused step keeps its last refusal and a count of them all; the event log has every one.
    assert [len([f for f in s.failures if f["kind"] == "circuit_open"]) for s in steps] == [
        min(s.circuit_refusals, 1) for s in steps
    ]
    assert sum(step.circuit_refusals for step in steps) == SagaEvent.objects.filter(
        type=EventType.CIRCUIT_REFUSED
    ).count()
    assert all(step.circuit_waiting_since is None for step in steps)
    # Refused at most once per recovery window: while open, then while the one probe was out; never again after.
    assert max(step.circuit_refusals for step in steps) <= 2
    # One probe went through half-open, succeeded, and closed the breaker.
    half_opened = SagaEvent.objects.filter(type=EventType.BREAKER_HALF_OPENED)
    closed = SagaEvent.objects.filter(type=EventType.BREAKER_CLOSED)
    assert (half_opened.count(), closed.count()) == (1, 1)
    assert closed.get().data == {"service": "svc-x", "from": "half_open", "to": "closed"}
    probe_run = SagaRun.objects.get(pk=closed.get().run_id)
    assert Call.objects.filter(key__startswith=str(probe_run.pk)).count() == 1
    assert breakers.for_service("svc-x").status()["state"] == "closed"


def test_saga_breakers_lists_and_resets(worker: WorkerProcess) -> None:
    Switch.objects.create(name="x-down", on=True)
    for _ in range(SETTINGS.failure_threshold):
        wait_for_run(CallsXOnce.start({}), worker)
    wait_until(lambda: breakers.for_service("svc-x").status()["state"] == "open", worker, "the breaker to open")

    out = io.StringIO()
    call_command("saga_breakers", "--json", stdout=out)
    rows = {row["service"]: row for row in json.loads(out.getvalue())}
    assert rows["svc-x"]["state"] == "open"
    assert rows["svc-x"]["times_opened"] == 1
    assert 0 < rows["svc-x"]["recovery_in"] <= SETTINGS.recovery_timeout
    assert rows["payments"]["state"] == "closed"  # every service a step names is listed

    table = io.StringIO()
    call_command("saga_breakers", "--reset", "svc-x", stdout=table, stderr=io.StringIO())
    assert "svc-x" in table.getvalue()
    assert breakers.for_service("svc-x").status()["state"] == "closed"


def hold_open(service: str, seconds: float) -> None:
    """Keep ``service``'s breaker open for ``seconds``, as runs that keep taking its half-open probe and failing
    would: its opening is stamped anew, on Redis's clock, every 50 ms."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        open_breaker(service)
        time.sleep(0.05)


def compensation_calls(run: SagaRun) -> list[Call]:
    return list(Call.objects.filter(service="svc-y", key=f"{run.pk}:book_y:compensate"))


def test_a_compensation_refused_by_an_open_circuit_spends_no_attempt(
    worker: WorkerProcess, admin_client: Client, client: Client
) -> None:
    y = breakers.breaker_settings("svc-y")
    budget = UndoesY.steps[0].compensation_retry.max_attempts
    # A healthy run booked at Y and waits at a gate before it is refused.
    healthy = UndoesY.start({"gate": "refuse"})
    wait_until(lambda: Call.objects.filter(key=f"{healthy.pk}:book_y").exists(), worker, "the booking at Y")
    # Runs whose undo is broken open service Y's breaker with their failed compensations.
    broken = [UndoesY.start({"broken_undo": True}) for _ in range(y.failure_threshold)]
    wait_until(lambda: breakers.for_service("svc-y").status()["state"] == "open", worker, "svc-y's breaker to open")
    # Now the healthy run needs its booking undone, while the breaker stays open for many recovery windows.
    Switch.objects.create(name="refuse", on=True)
    hold_open("svc-y", budget * (y.recovery_timeout + y.retry_spread))
    # Meanwhile the console shows the compensation waiting on its circuit, and since when.
    waiting = healthy.steps.get(name="book_y")
    assert waiting.status == "compensating"
    assert waiting.circuit_waiting_since is not None
    [finding] = [f for f in diagnose(healthy, check_workers=False) if f.cause == "circuit_wait"]
    assert "compensation of step 'book_y' is waiting on an open circuit" in finding.summary
    assert "'svc-y'" in finding.summary
    assert "waits without limit" in finding.summary
    waits = [w for w in health_report().circuit_waits if w["run"] == str(healthy.pk)]
    assert [(w["step"], w["call"], w["since"]) for w in waits] == [
        ("book_y", "compensation", waiting.circuit_waiting_since.isoformat())
    ]
    page = admin_client.get(reverse("admin:sagas_health")).content.decode()
    assert "Waiting on an open circuit" in page
    assert str(healthy.pk)[:8] in page
    run_page = admin_client.get(reverse("admin:sagas_sagarun_change", args=[healthy.pk])).content.decode()
    assert "compensation waiting on an open circuit" in run_page
    metrics = scrape(client)
    assert metrics.value("sagas_circuit_waiting_steps", kind="compensation") >= 1
    assert metrics.value("sagas_circuit_wait_longest_seconds", kind="compensation") > 0
    hold_open("svc-y", budget * (y.recovery_timeout + y.retry_spread))
    healthy = wait_for_run(healthy, worker)
    for run in broken:
        wait_for_run(run, worker)

    assert healthy.status == RunStatus.COMPENSATED
    step = healthy.steps.get(name="book_y")
    assert len(compensation_calls(healthy)) == 1  # one real call, however long the breaker stayed open
    assert step.compensation_attempts == 1  # "times the compensation was started"
    # Refused more often than its whole budget, and none of that spent it.
    assert step.circuit_refusals > budget
    [refusal] = [f for f in step.failures if f["kind"] == "circuit_open"]  # the last one, with their count
    assert (refusal["class"], refusal["call"], refusal["service"]) == ("circuit_open", "compensation", "svc-y")
    events = healthy.events.filter(type=EventType.CIRCUIT_REFUSED)
    assert events.count() == step.circuit_refusals
    assert refusal == events.order_by("seq").last().data["failure"]
    first = events.order_by("seq").first()
    assert first is not None
    assert all(e.data["waiting_since"] == first.data["waiting_since"] for e in events)  # one wait, from its start
    assert step.circuit_waiting_since is None  # the wait ended when the call went through
    # The broken runs spent their own budgets on real calls only, and wait for a person.
    for run in broken:
        run.refresh_from_db()
        assert run.status == RunStatus.FAILED
        broken_step = run.steps.get(name="book_y")
        assert broken_step.compensation_attempts == budget == len(compensation_calls(run))


def test_a_forward_step_waits_for_its_circuit_at_most_circuit_wait(worker: WorkerProcess) -> None:
    y = breakers.breaker_settings("svc-y")
    limit = WaitsForY.steps[1].circuit_wait
    open_breaker("svc-y")
    run = WaitsForY.start({})
    hold_open("svc-y", limit + y.recovery_timeout + y.retry_spread + 1)
    run = wait_for_run(run, worker)

    assert run.status == RunStatus.COMPENSATED
    step = run.steps.get(name="book_y")
    assert step.status == "failed"
    assert step.attempts == 0  # never called
    assert not Call.objects.filter(service="svc-y").exists()
    assert step.error["class"] == "circuit_open"
    assert f"circuit_wait {limit:g}s" in step.error["message"]
    assert step.circuit_refusals >= 1
    waited = (step.finished_at - run.events.filter(type=EventType.CIRCUIT_REFUSED).order_by("seq")[0].created_at)
    assert limit <= waited.total_seconds() < limit + y.recovery_timeout + y.retry_spread + 1
    assert run.steps.get(name="first").status == "compensated"
    assert run.error["class"] == "circuit_open"


def test_mixed_failures_leave_every_healthy_run_completed_or_compensated(worker: WorkerProcess) -> None:
    """60 runs at once, a few of them with a broken compensation that keeps opening service Y's breaker: every
    run whose own compensation is healthy ends compensated after one real call; only the broken ones fail."""
    budget = UndoesY.steps[0].compensation_retry.max_attempts
    payloads = [{"broken_undo": index % 10 == 0} for index in range(60)]
    started = [UndoesY.start(payload) for payload in payloads]
    runs = [wait_for_run(run, worker) for run in started]

    assert SagaEvent.objects.filter(type=EventType.BREAKER_OPENED, data__service="svc-y").exists()
    healthy = [run.pk for run, payload in zip(runs, payloads, strict=True) if not payload["broken_undo"]]
    # The open breaker did turn healthy compensations away: that is what must not cost them their budgets.
    assert SagaStepRun.objects.filter(run__in=healthy, name="book_y", circuit_refusals__gt=0).exists()
    for run, payload in zip(runs, payloads, strict=True):
        step = run.steps.get(name="book_y")
        if payload["broken_undo"]:
            assert run.status == RunStatus.FAILED
            assert step.compensation_attempts == budget == len(compensation_calls(run))
        else:
            assert run.status == RunStatus.COMPENSATED, (run.pk, step.failures)
            assert step.compensation_attempts == 1 == len(compensation_calls(run))
