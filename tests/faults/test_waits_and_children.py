"""Waits and child runs on real workers under faults: a worker killed while a child runs, a signal racing the
wait's timeout."""

from __future__ import annotations

import threading
import time

from django.db import connection
from django.utils import timezone

import sagas
from sagas import services
from sagas.models import SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.faults.conftest import FaultLab, gate_name
from tests.testapp.models import Switch, calls_of
from tests.testapp.sagas import GatedParent, QuickApproval
from tests.worker import wait_until

RACES = 6


def test_a_worker_killed_while_a_child_runs_loses_nothing_and_doubles_nothing(lab: FaultLab) -> None:
    gate = gate_name()
    first = lab.start_worker()
    parent = GatedParent.start({"gate": gate})

    def child_at_the_gate() -> bool:
        child = SagaRun.objects.filter(parent=parent).first()
        return child is not None and calls_of(child, "child_gate") >= 1

    wait_until(child_at_the_gate, first, "the child's step to reach the gate")
    first.kill()  # SIGKILL mid-step: the child's message is neither run to the end nor acknowledged
    Switch.objects.update_or_create(name=gate, defaults={"on": True})
    lab.start_worker()

    (parent,) = lab.settle([parent])

    assert parent.status == RunStatus.COMPLETED
    (child,) = SagaRun.objects.filter(parent=parent)  # started once
    assert child.status == RunStatus.COMPLETED
    assert parent.steps.get(name="child").output == {"recorded": "child_first", "gate": "passed"}
    assert (calls_of(parent, "prepare"), calls_of(parent, "last"), calls_of(child, "child_first")) == (1, 1, 1)
    assert calls_of(child, "child_gate") == 2  # the killed attempt and its redelivery, under one key
    assert calls_of(parent, "prepare", ":compensate") == 0


def _race(run: SagaRun, outcomes: dict[str, object]) -> None:
    """At the wait's timeout, a signal and the timeout check go at once, from two threads."""
    until = run.steps.get(name="approved").wait_until
    barrier = threading.Barrier(2)

    def signal() -> None:
        try:
            barrier.wait()
            sagas.signal(run.pk, "approved", {"by": "ann"}, actor="ann")
            outcomes["signal"] = "received"
        except sagas.InvalidTransition:
            outcomes["signal"] = "refused"
        finally:
            connection.close()

    def time_out() -> None:
        try:
            barrier.wait()
            outcomes["timeout"] = services.run_check_wait(run_id=run.pk, step="approved")
        finally:
            connection.close()

    time.sleep(max(0.0, (until - timezone.now()).total_seconds()))
    threads = [threading.Thread(target=signal), threading.Thread(target=time_out)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_a_signal_racing_the_waits_timeout_exactly_one_wins(lab: FaultLab) -> None:
    worker = lab.start_worker()
    runs = [QuickApproval.start({}) for _ in range(RACES)]
    for run in runs:
        wait_until(lambda run=run: run.steps.get(name="approved").status == StepStatus.WAITING, worker, "the wait")
    outcomes: dict[str, dict[str, object]] = {}
    for run in runs:
        outcomes[str(run.pk)] = {}
        _race(run, outcomes[str(run.pk)])

    settled = lab.settle(runs)

    for run in settled:
        seen = outcomes[str(run.pk)]
        approved = run.steps.get(name="approved")
        received = run.events.filter(type=EventType.SIGNAL_RECEIVED).count()
        timed_out = run.events.filter(type=EventType.STEP_FAILED, step="approved").count()
        assert received + timed_out == 1, (run.pk, seen)  # exactly one won
        if received:
            assert seen["signal"] == "received"
            assert (run.status, approved.output) == (RunStatus.COMPLETED, {"by": "ann"})
            assert calls_of(run, "reserve", ":compensate") == 0
        else:
            assert seen["signal"] == "refused"
            assert (run.status, approved.error["code"]) == (RunStatus.COMPENSATED, "wait_timeout")
            assert (calls_of(run, "after"), calls_of(run, "reserve", ":compensate")) == (0, 1)
