"""Circuit breakers on a real worker: shared by both worker processes through Redis, proven by real calls."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from django.core.management import call_command

from sagas import breakers
from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.states import EventType, RunStatus
from tests.testapp.models import Call, Switch
from tests.testapp.sagas import CallsX, CallsXOnce
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
    # Runs were turned away with circuit_open, counted against their budget, and then got through.
    refused = [
        f for step in SagaStepRun.objects.filter(run__in=runs) for f in step.failures if f["class"] == "circuit_open"
    ]
    assert refused
    assert all(f["retry_in"] > 0 for f in refused)
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
