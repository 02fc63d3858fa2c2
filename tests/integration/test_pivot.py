"""Pivots and forward recovery on a real worker: after the pivot a step that keeps failing waits for a person."""

from __future__ import annotations

import pytest

import sagas
from sagas.diagnose import diagnose
from sagas.models import SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.models import Switch, calls_of
from tests.testapp.sagas import Pivoted
from tests.worker import WorkerProcess, wait_for_run


@pytest.fixture
def shipping_down() -> Switch:
    return Switch.objects.create(name="shipping_down", on=True)


def _failed_after_pivot(worker: WorkerProcess) -> SagaRun:
    run = wait_for_run(Pivoted.start({"order": 1}), worker)
    assert run.status == RunStatus.FAILED
    steps = dict(run.steps.values_list("name", "status"))
    assert steps == {
        "reserve": StepStatus.SUCCEEDED,  # not compensated: the pivot's effect stands, so the run goes forward
        "charge": StepStatus.SUCCEEDED,
        "ship": StepStatus.FAILED,
        "notify": StepStatus.PENDING,
    }
    assert calls_of(run, "ship") == 2  # its whole budget
    assert calls_of(run, "reserve", ":compensate") == 0
    assert run.deadline is None  # the pivot's success lifted it
    assert run.events.filter(type=EventType.SAGA_FAILED, data__forward=True, data__failed_step="ship").exists()
    assert not run.events.filter(type__in=[EventType.SAGA_COMPENSATING, EventType.COMPENSATION_SCHEDULED]).exists()
    return run


def test_a_step_after_the_pivot_that_keeps_failing_ends_failed_and_retry_completes_the_run(
    worker: WorkerProcess, shipping_down: Switch
) -> None:
    run = _failed_after_pivot(worker)
    with pytest.raises(sagas.InvalidTransition, match="a step after its pivot gave up"):
        sagas.cancel(run.pk, reason="too late", actor="ops")

    Switch.objects.filter(pk=shipping_down.pk).update(on=False)  # the cause is fixed
    retried = sagas.retry(run.pk, reason="shipping is back", actor="ops")
    assert retried.status == RunStatus.EXECUTING

    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPLETED
    ship = run.steps.get(name="ship")
    assert (ship.status, ship.attempts, calls_of(run, "ship")) == (StepStatus.SUCCEEDED, 3, 3)
    assert run.steps.get(name="notify").output == {"notified_with": "T-1"}
    retried_event = run.events.get(type=EventType.SAGA_RETRIED)
    assert (retried_event.actor, retried_event.data["forward"], retried_event.data["reason"]) == (
        "ops",
        True,
        "shipping is back",
    )
    assert run.events.get(type=EventType.STEP_RETRIED, step="ship").data["fresh_budget"] is True
    assert calls_of(run, "reserve", ":compensate") == 0


def test_a_fresh_budget_is_spent_again_before_the_run_waits_for_a_person_once_more(
    worker: WorkerProcess, shipping_down: Switch
) -> None:
    run = _failed_after_pivot(worker)
    sagas.retry(run.pk, reason="try once more", actor="ops")  # the cause is not fixed

    run = wait_for_run(run, worker, statuses=frozenset({RunStatus.FAILED}))
    ship = run.steps.get(name="ship")
    assert (ship.status, ship.attempts, calls_of(run, "ship")) == (StepStatus.FAILED, 4, 4)
    assert run.events.filter(type=EventType.SAGA_FAILED, data__forward=True).count() == 2


def test_resolve_records_the_step_done_by_hand_with_its_output_and_the_run_goes_on(
    worker: WorkerProcess, shipping_down: Switch
) -> None:
    run = _failed_after_pivot(worker)

    resolved = sagas.resolve(
        run.pk, step="ship", reason="shipped by courier", actor="ops", output={"tracking": "BY-HAND-7"}
    )
    assert resolved.status == RunStatus.EXECUTING

    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPLETED
    ship = run.steps.get(name="ship")
    assert (ship.status, ship.output, ship.error) == (StepStatus.SUCCEEDED, {"tracking": "BY-HAND-7"}, None)
    assert calls_of(run, "ship") == 2  # nothing called it again
    assert run.steps.get(name="notify").output == {"notified_with": "BY-HAND-7"}  # merged like an output
    event = run.events.get(type=EventType.STEP_RESOLVED)
    assert (event.actor, event.data["reason"]) == ("ops", "shipped by courier")


def test_the_diagnosis_of_a_run_failed_after_its_pivot_says_how_to_go_forward(
    worker: WorkerProcess, shipping_down: Switch
) -> None:
    run = _failed_after_pivot(worker)
    (finding,) = [f for f in diagnose(run, check_workers=False) if f.cause == "failed_after_pivot"]
    assert "the shipping service is down" in finding.summary
    assert f"saga_resolve {run.pk} --step ship --output" in finding.action
