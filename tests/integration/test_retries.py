"""Retry policies on a real worker: backoff for transient failures, no retry for the rest."""

from __future__ import annotations

from django_celery_results.models import TaskResult

from sagas.states import RunStatus, StepStatus
from tests.testapp.models import calls_of
from tests.testapp.sagas import BadOutput, Flaky, NotRetried
from tests.worker import WorkerProcess, wait_for_run


def test_transient_failures_past_max_attempts_fail_the_step_and_compensate(worker: WorkerProcess) -> None:
    run = wait_for_run(Flaky.start({"fail_times": 99}), worker)

    assert run.status == RunStatus.COMPENSATED
    flaky = run.steps.get(name="flaky")
    assert (flaky.status, flaky.attempts) == (StepStatus.FAILED, 4)
    assert flaky.error["message"] == "flaky failure 4"
    assert run.error["step"] == "flaky"
    assert run.steps.get(name="first").status == StepStatus.COMPENSATED
    assert calls_of(run, "first", ":compensate") == 1
    assert calls_of(run, "flaky", ":compensate") == 0  # a failed step made no change to undo
    # Saga tasks store no result on success, but every failed attempt is in the result backend: three retried,
    # the last one failed; the successful first step and its compensation left no row.
    results = TaskResult.objects.filter(task_id__startswith=f"{run.pk}:").order_by("task_id")
    assert list(results.values_list("task_id", "status")) == [
        (f"{run.pk}:flaky:{attempt}", "RETRY" if attempt < 4 else "FAILURE") for attempt in range(1, 5)
    ]
    assert "flaky failure 4" in results.get(task_id=f"{run.pk}:flaky:4").traceback


def test_unserialisable_output_fails_the_step_without_retry(worker: WorkerProcess) -> None:
    run = wait_for_run(BadOutput.start({}), worker)

    assert run.status == RunStatus.COMPENSATED
    step = run.steps.get(name="unserialisable")
    assert (step.status, step.attempts) == (StepStatus.FAILED, 1)
    assert step.error["type"] == "sagas.exceptions.InvalidPayload"
    assert "output of step 'unserialisable' is not JSON-serialisable" in step.error["message"]


def test_exception_outside_retry_on_is_not_retried(worker: WorkerProcess) -> None:
    run = wait_for_run(NotRetried.start({}), worker)

    assert run.status == RunStatus.COMPENSATED
    step = run.steps.get(name="value_error")
    assert (step.status, step.attempts, step.error["class"]) == (StepStatus.FAILED, 1, "unknown")
    assert calls_of(run, "value_error") == 1


def test_worker_registers_a_named_task_per_step_and_compensation(worker: WorkerProcess) -> None:
    from sagaproject.celery import app

    registered = app.control.inspect(destination=[worker.hostname], timeout=5).registered()
    names = set(registered[worker.hostname])
    assert {
        "saga.orders.place_order.create_order",
        "saga.orders.place_order.create_order.compensate",
        "saga.orders.place_order.send_confirmation",
        "sagas.on_step_failure",
        "sagas.check_deadline",
    } <= names
    assert "saga.orders.place_order.send_confirmation.compensate" not in names  # it has no compensation
