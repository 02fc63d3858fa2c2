"""Claims behind an open circuit breaker: a refused call is recorded, is not an attempt, and waits (real Redis and
PostgreSQL, no worker; the worker scenarios are in tests/integration/test_breakers.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import sagas
from sagas import breakers, eventlog, services
from sagas.exceptions import InvalidDefinition
from sagas.failures import Failure
from sagas.models import SagaRun, SagaStepRun
from sagas.outcomes import Outcome
from sagas.retry import FailureClass
from sagas.states import EventType, RunStatus, StepStatus
from tests.conftest import open_breaker, reset_breakers
from tests.testapp.sagas import NoCircuitWait, UndoesY, WaitsForY, record

pytestmark = pytest.mark.django_db

Y = breakers.breaker_settings("svc-y")


@pytest.fixture(autouse=True)
def _closed_breakers() -> Iterator[None]:
    reset_breakers()
    yield
    reset_breakers()


def steps_of(run: SagaRun) -> dict[str, SagaStepRun]:
    return {step.name: step for step in run.steps.all()}


def succeed(run: SagaRun, step: str) -> None:
    """One attempt of ``step`` claimed and recorded as a success, as the runner does."""
    claim = services.step_claim(run_id=run.pk, step=step, task_id=f"{step}-1")
    assert claim.outcome is Outcome.RUN
    assert claim.context is not None
    services.step_succeed(run_id=run.pk, step=step, output={}, claim=claim)


def assert_rebuilds(run: SagaRun) -> None:
    assert eventlog.rebuild(run.pk).differences(run) == []


def test_a_refused_forward_call_is_recorded_and_is_not_an_attempt() -> None:
    run = WaitsForY.start({})
    succeed(run, "first")
    open_breaker("svc-y")

    claim = services.step_claim(run_id=run.pk, step="book_y", task_id="t-1")

    assert claim.outcome is Outcome.WAIT
    assert Y.recovery_timeout - 0.5 <= claim.delay <= Y.recovery_timeout + Y.retry_spread
    step = steps_of(run)["book_y"]
    assert (step.status, step.attempts, step.circuit_refusals) == (StepStatus.PENDING, 0, 1)
    assert step.circuit_waiting_since is not None
    [refusal] = step.failures
    assert refusal["kind"] == "circuit_open"
    assert refusal["call"] == "action"
    assert refusal["class"] == "circuit_open"
    assert refusal["retry_in"] == claim.delay
    event = run.events.get(type=EventType.CIRCUIT_REFUSED)
    assert event.step == "book_y"
    assert event.data["failure"] == refusal
    run.refresh_from_db()
    assert_rebuilds(run)


def test_the_call_let_through_after_a_wait_is_attempt_one_and_ends_the_wait() -> None:
    run = WaitsForY.start({})
    succeed(run, "first")
    breaker = open_breaker("svc-y")
    assert services.step_claim(run_id=run.pk, step="book_y", task_id="t-1").outcome is Outcome.WAIT
    breaker.reset()

    claim = services.step_claim(run_id=run.pk, step="book_y", task_id="t-1")

    assert claim.outcome is Outcome.RUN
    assert claim.context.attempt == 1
    assert claim.gate.permit is not None
    assert claim.gate.permit.allowed
    services.step_succeed(run_id=run.pk, step="book_y", output={}, claim=claim)  # the attempt's start goes with it
    step = steps_of(run)["book_y"]
    assert (step.status, step.attempts, step.circuit_refusals, step.circuit_waiting_since) == ("succeeded", 1, 1, None)
    run.refresh_from_db()
    assert_rebuilds(run)


def test_the_half_open_probe_goes_to_one_caller_and_the_other_waits_for_it() -> None:
    first, second = WaitsForY.start({}), WaitsForY.start({})
    for run in (first, second):
        succeed(run, "first")
    open_breaker("svc-y", ago=Y.recovery_timeout + 0.01)  # the recovery timeout has just passed

    probe = services.step_claim(run_id=first.pk, step="book_y", task_id="a")
    waiter = services.step_claim(run_id=second.pk, step="book_y", task_id="b")

    assert probe.outcome is Outcome.RUN
    assert probe.gate.permit is not None
    assert probe.gate.permit.probe
    assert first.events.filter(type=EventType.BREAKER_HALF_OPENED).count() == 1
    assert waiter.outcome is Outcome.WAIT
    assert waiter.gate.permit is not None
    # Told to come back when the probe has reported, or stopped counting: not sooner, not a whole window later.
    assert 0 < waiter.gate.permit.wait <= Y.recovery_timeout
    assert waiter.delay <= Y.recovery_timeout + Y.retry_spread
    for run in (first, second):
        run.refresh_from_db()
        assert_rebuilds(run)


def test_a_forward_step_fails_with_circuit_open_once_it_waited_its_circuit_wait() -> None:
    run = NoCircuitWait.start({})  # circuit_wait=0: the first refusal ends the wait
    open_breaker("svc-y")

    claim = services.step_claim(run_id=run.pk, step="book_y", task_id="t")

    assert claim.outcome is Outcome.FAILED
    step = steps_of(run)["book_y"]
    assert (step.status, step.attempts, step.circuit_waiting_since) == (StepStatus.FAILED, 0, None)
    assert step.error["class"] == "circuit_open"
    assert "circuit_wait 0s" in step.error["message"]
    services.run_on_step_failure(run_id=run.pk, step="book_y")  # the errback the failed task fires
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED  # nothing before it to undo
    assert run.error["class"] == "circuit_open"
    assert_rebuilds(run)


def test_a_refused_compensation_waits_without_spending_its_budget() -> None:
    run = UndoesY.start({})
    succeed(run, "book_y")
    services.step_claim(run_id=run.pk, step="refuse", task_id="r")
    services.step_fail_attempt(run_id=run.pk, step="refuse", error=_refusal_error(), retry_in=None)
    services.run_on_step_failure(run_id=run.pk, step="refuse")
    open_breaker("svc-y")
    budget = UndoesY.steps[0].compensation_retry.max_attempts

    for _ in range(budget + 2):
        claim = services.compensation_claim(run_id=run.pk, step="book_y", task_id="c")
        assert claim.outcome is Outcome.WAIT

    step = steps_of(run)["book_y"]
    assert (step.status, step.compensation_attempts, step.circuit_refusals) == ("compensating", 0, budget + 2)
    assert {f["call"] for f in step.failures} == {"compensation"}
    # The count says how often; the log keeps the last refusal only, however long the breaker stays open.
    last = run.events.filter(type=EventType.CIRCUIT_REFUSED).order_by("seq").last()
    assert step.failures == [last.data["failure"]]
    assert run.events.filter(type=EventType.CIRCUIT_REFUSED).count() == budget + 2
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    assert_rebuilds(run)


def test_breaker_events_do_not_move_the_step_in_a_rebuild() -> None:
    run = WaitsForY.start({})
    succeed(run, "first")
    claim = services.step_claim(run_id=run.pk, step="book_y", task_id="t")
    assert claim.outcome is Outcome.RUN
    # The attempt opened the breaker and is retried: no step transition follows the BreakerOpened event.
    services.record_breaker_change(run_id=run.pk, step="book_y", service="svc-y", before="closed", after="open")
    services.step_fail_attempt(run_id=run.pk, step="book_y", error=_refusal_error(), retry_in=1.0)
    run.refresh_from_db()
    assert eventlog.rebuild(run.pk).steps["book_y"].status == StepStatus.RUNNING
    assert_rebuilds(run)


@pytest.mark.parametrize("wait", [-1, "soon", True])
def test_circuit_wait_must_be_a_number_of_seconds(wait: object) -> None:
    with pytest.raises(InvalidDefinition, match="circuit_wait"):

        class BadWait(sagas.Saga):
            name = f"tests.bad_wait_{time.monotonic_ns()}"
            steps = [sagas.Step(record, service="svc-y", circuit_wait=wait)]  # type: ignore[arg-type]


def test_circuit_wait_is_part_of_the_spec_only_when_set() -> None:
    assert "circuit_wait" not in UndoesY.spec()["steps"][0]
    assert WaitsForY.spec()["steps"][1]["circuit_wait"] == 2


def _refusal_error() -> Failure:
    return Failure(type="t", message="no", failure_class=FailureClass.INVALID_REQUEST, code="no", attempt=1)
