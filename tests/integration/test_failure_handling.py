"""Failure handling on a real worker: retry by failure class, timeouts, deadlines, cancellation, order.

Assertions are on recorded state and events. Where a delay must be respected, the recorded timestamps
are compared with the delay as a lower bound; nothing here measures how fast the system is.
"""

from __future__ import annotations

from datetime import timedelta

import sagas
from sagas import leases
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.models import Switch, calls_of
from tests.testapp.sagas import (
    Deadline,
    FanOut,
    Flaky,
    Gated,
    Prioritised,
    RateLimitedOnce,
    SeparateBudgets,
    SlowStep,
    StubbornStep,
    StubbornUndo,
    UnknownErrors,
)
from tests.worker import WorkerProcess, wait_for_run, wait_until


def events(run: SagaRun, *types: str, step: str | None = None) -> list[SagaEvent]:
    found = SagaEvent.objects.filter(run=run, type__in=types).order_by("seq")
    return list(found.filter(step=step) if step is not None else found)


def test_transient_twice_then_success_records_three_attempts_and_bounded_delays(worker: WorkerProcess) -> None:
    run = wait_for_run(Flaky.start({"fail_times": 2}), worker)

    assert run.status == RunStatus.COMPLETED
    step = run.steps.get(name="flaky")
    assert step.attempts == 3
    policy = Flaky.step("flaky").retry
    assert [(f["attempt"], f["class"]) for f in step.failures] == [(1, "transient"), (2, "transient")]
    for failure in step.failures:
        low, high = policy.bounds(failure["attempt"])
        assert low <= failure["retry_in"] <= high, failure
    recorded = events(run, EventType.STEP_ATTEMPT_FAILED)
    assert [e.data["retry_in"] for e in recorded] == [f["retry_in"] for f in step.failures]
    # Each retry started no sooner than the delay chosen for it.
    started = events(run, EventType.STEP_STARTED, step="flaky")
    for failed, next_start in zip(recorded, started[1:], strict=True):
        assert next_start.created_at - failed.created_at >= timedelta(seconds=failed.data["retry_in"])


def test_an_unknown_exception_uses_up_max_attempts_then_compensates(worker: WorkerProcess) -> None:
    run = wait_for_run(UnknownErrors.start({}), worker)

    assert run.status == RunStatus.COMPENSATED
    step = run.steps.get(name="raise_unknown")
    max_attempts = 3  # SAGAS["DEFAULT_RETRY"] in tests/settings.py
    assert (step.status, step.attempts) == (StepStatus.FAILED, max_attempts)
    assert [f["class"] for f in step.failures] == ["unknown"] * max_attempts
    assert [f["retry_in"] is None for f in step.failures] == [False] * (max_attempts - 1) + [True]
    assert calls_of(run, "raise_unknown") == max_attempts
    assert run.steps.get(name="first").status == StepStatus.COMPENSATED


def test_rate_limited_is_not_retried_before_retry_after(worker: WorkerProcess) -> None:
    run = wait_for_run(RateLimitedOnce.start({}), worker)

    assert run.status == RunStatus.COMPLETED
    (failure,) = run.steps.get().failures
    assert failure["class"] == "rate_limited"
    assert failure["retry_in"] >= 1.0  # the policy's own backoff is 0.05 s
    (failed,) = events(run, EventType.STEP_ATTEMPT_FAILED)
    _, second = events(run, EventType.STEP_STARTED)
    assert second.created_at - failed.created_at >= timedelta(seconds=1)


def test_a_step_past_its_timeout_is_a_timeout_failure_and_compensates(worker: WorkerProcess) -> None:
    run = wait_for_run(SlowStep.start({"sleep": 30}), worker)

    assert run.status == RunStatus.COMPENSATED
    step = run.steps.get(name="sleepy")
    assert (step.status, step.attempts) == (StepStatus.FAILED, 2)
    assert [f["class"] for f in step.failures] == ["timeout", "timeout"]
    assert run.error["class"] == "timeout"
    assert run.steps.get(name="first").status == StepStatus.COMPENSATED


def test_a_step_killed_at_its_hard_time_limit_is_a_timeout_failure_settled_once_more(worker: WorkerProcess) -> None:
    """Its one allowed attempt was killed at the hard limit, after it may have called the service: the step is in
    doubt, so the run compensates and the step runs once more with its key (a budget of its own, one attempt),
    killed again, and fails with the timeout."""
    run = wait_for_run(StubbornStep.start({}), worker)

    assert run.status == RunStatus.COMPENSATED
    assert run.error["class"] == "timeout"
    step = run.steps.get(name="stubborn")
    assert (step.status, step.attempts) == (StepStatus.FAILED, 2)
    assert [(f["attempt"], f["class"], f["code"]) for f in step.failures] == [
        (1, "timeout", ""),
        (1, "unknown", "attempt_in_doubt"),
        (2, "timeout", ""),
    ]
    for failure in (step.failures[0], step.failures[2]):
        assert failure["type"].endswith(".TimeLimitExceeded")
        assert "hard time limit" in failure["message"]
    assert calls_of(run, "stubborn") == 2
    assert run.steps.get(name="first").status == StepStatus.COMPENSATED
    worker.wait_ready()  # the killed pool processes were replaced


def test_a_compensation_killed_at_its_hard_time_limit_is_retried_then_given_up(worker: WorkerProcess) -> None:
    run = wait_for_run(StubbornUndo.start({}), worker)

    assert run.status == RunStatus.FAILED
    step = run.steps.get(name="first")
    assert (step.status, step.compensation_attempts) == (StepStatus.COMPENSATION_FAILED, 2)
    assert [(f["kind"], f["class"]) for f in step.failures] == [("compensation", "timeout")] * 2
    assert calls_of(run, "first", ":compensate") == 2
    worker.wait_ready()


def test_a_saga_past_its_deadline_is_compensated_through_timeout(worker: WorkerProcess) -> None:
    run = wait_for_run(Deadline.start({"sleep": 4}), worker)

    assert run.status == RunStatus.COMPENSATED
    transitions = [(e.data.get("from"), e.data.get("to")) for e in events(run, *RUN_EVENTS)]
    assert ("executing", "timeout") in transitions
    assert transitions.index(("executing", "timeout")) + 1 == transitions.index(("timeout", "compensating"))
    assert run.error["class"] == "timeout"
    steps = {s.name: s for s in run.steps.all()}
    # The slow step finished after the deadline: recorded, then undone; the run stayed down.
    assert steps["slow"].status == StepStatus.COMPENSATED
    (late,) = events(run, EventType.STEP_SUCCEEDED, step="slow")
    (timed_out,) = events(run, EventType.SAGA_TIMED_OUT)
    assert late.data["late"] is True
    assert late.seq > timed_out.seq
    assert steps["first"].status == StepStatus.COMPENSATED
    assert (steps["third"].status, steps["third"].attempts) == (StepStatus.SKIPPED, 0)
    assert not events(run, EventType.SAGA_COMPLETED)


RUN_EVENTS = (
    EventType.SAGA_EXECUTING,
    EventType.SAGA_TIMED_OUT,
    EventType.SAGA_COMPENSATING,
    EventType.SAGA_COMPENSATED,
    EventType.SAGA_COMPLETED,
)


def test_compensation_budget_is_separate_from_the_forward_budget(worker: WorkerProcess) -> None:
    run = wait_for_run(SeparateBudgets.start({"fail_times": 2, "undo_fail_times": 4}), worker)

    assert run.status == RunStatus.COMPENSATED
    step = run.steps.get(name="flaky_then_ok")
    declared = SeparateBudgets.step("flaky_then_ok")
    assert step.attempts == declared.retry.max_attempts  # every forward attempt used
    assert step.compensation_attempts == declared.compensation_retry.max_attempts  # and every undo attempt
    assert step.status == StepStatus.COMPENSATED
    kinds = [f["kind"] for f in step.failures]
    assert kinds == ["action", "action", "compensation", "compensation", "compensation", "compensation"]


def test_cancel_during_step_two_of_four_stops_and_compensates(worker: WorkerProcess) -> None:
    Switch.objects.create(name="gate", on=False)
    run = Gated.start({"gate": "gate"})
    # A running step shows in its lease (its start is recorded with its outcome).
    wait_until(lambda: "two" in leases.holders(run.pk, ["two"]), worker, "step two to start")

    sagas.cancel(run.pk, reason="customer cancelled by phone", actor="frank")
    Switch.objects.filter(name="gate").update(on=True)
    run = wait_for_run(run, worker)

    assert run.status == RunStatus.COMPENSATED
    steps = {s.name: s for s in run.steps.all()}
    assert (steps["one"].status, steps["two"].status) == (StepStatus.COMPENSATED, StepStatus.COMPENSATED)
    assert (steps["three"].status, steps["three"].attempts) == (StepStatus.SKIPPED, 0)
    assert (steps["four"].status, steps["four"].attempts) == (StepStatus.SKIPPED, 0)
    assert calls_of(run, "three") == 0
    (cancelled,) = events(run, EventType.SAGA_CANCELLED)
    assert (cancelled.actor, cancelled.data["reason"]) == ("frank", "customer cancelled by phone")
    assert run.error["message"] == "customer cancelled by phone"
    undone = [e.step for e in events(run, EventType.COMPENSATION_SUCCEEDED)]
    assert undone == ["two", "one"]


def test_compensation_order_follows_priority_then_reverse_completion(worker: WorkerProcess) -> None:
    run = wait_for_run(Prioritised.start({}), worker)

    assert run.status == RunStatus.COMPENSATED
    assert [e.step for e in events(run, EventType.COMPENSATION_STARTED)] == ["b", "d", "c", "a"]
    assert [e.step for e in events(run, EventType.COMPENSATION_SUCCEEDED)] == ["b", "d", "c", "a"]


def test_independent_compensations_run_in_parallel_and_the_run_waits_for_both(worker: WorkerProcess) -> None:
    run = wait_for_run(FanOut.start({"undo_sleep": 1.0}), worker)

    assert run.status == RunStatus.COMPENSATED
    started = {e.step: e.created_at for e in events(run, EventType.COMPENSATION_STARTED)}
    finished = {e.step: e.created_at for e in events(run, EventType.COMPENSATION_SUCCEEDED)}
    assert finished["urgent"] <= min(started["left"], started["right"])  # priority 10 first
    assert started["left"] < finished["right"]
    assert started["right"] < finished["left"]  # the two overlapped
    assert started["first"] >= max(finished["left"], finished["right"])
    (compensated,) = events(run, EventType.SAGA_COMPENSATED)
    assert compensated.created_at >= max(finished.values())
