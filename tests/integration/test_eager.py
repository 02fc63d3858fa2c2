"""Eager dispatch on a real worker: the process that recorded a step's success runs the next step itself, and
each step keeps its own attempt, retry, time limit and errback."""

from __future__ import annotations

from django_celery_results.models import TaskResult

from sagas import leases
from sagas.models import SagaEvent
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.models import Call, Effect
from tests.testapp.sagas import EagerFailures, EagerThree
from tests.worker import WorkerProcess, wait_for_run


def pids_by_run(runs: list) -> dict[str, set[int]]:
    calls = Call.objects.filter(service="where")
    return {str(run.pk): set(calls.filter(key__startswith=str(run.pk)).values_list("pid", flat=True)) for run in runs}


def test_an_eager_saga_runs_each_run_in_the_process_that_took_its_first_step(worker: WorkerProcess) -> None:
    runs = [EagerThree.start({"n": n}) for n in range(8)]
    runs = [wait_for_run(run, worker) for run in runs]

    assert {run.status for run in runs} == {RunStatus.COMPLETED}
    for run in runs:
        assert [(s.name, s.status, s.attempts) for s in run.steps.order_by("index")] == [
            (name, StepStatus.SUCCEEDED, 1) for name in ("one", "two", "three")
        ]
        events = list(SagaEvent.objects.filter(run=run).order_by("seq").values_list("type", "step"))
        assert events == [
            ("SagaStarted", ""),
            ("SagaExecuting", ""),
            *[(kind, name) for name in ("one", "two", "three") for kind in ("StepStarted", "StepSucceeded")],
            ("SagaCompleted", ""),
        ]
    # Each run's steps ran in one pool process: the ones after the first were not published.
    assert all(len(pids) == 1 for pids in pids_by_run(runs).values())
    # Each step's lease, kept for the next step's acquire to give back, went with its attempt count.
    names = ["one", "two", "three"]
    for run in runs:
        assert leases.holders(run.pk, names) == {}
        assert leases.started(run.pk, names) == dict.fromkeys(names, 0)


def test_an_eager_step_that_fails_is_retried_as_a_published_attempt(worker: WorkerProcess) -> None:
    run = wait_for_run(EagerFailures.start({"fail_times": 1}), worker)

    assert run.status == RunStatus.COMPLETED, run.error
    flaky = run.steps.get(name="flaky")
    assert (flaky.status, flaky.attempts) == (StepStatus.SUCCEEDED, 2)
    assert Effect.objects.get(key=f"{run.pk}:flaky").calls == 2
    # The failed eager attempt is in the result backend as a retry, as a published one would be.
    retried = TaskResult.objects.get(task_id=f"{run.pk}:flaky:1")
    assert retried.status == "RETRY"
    assert "flaky failure 1" in retried.result


def test_an_eager_step_runs_under_its_own_time_limit_and_its_failure_compensates(worker: WorkerProcess) -> None:
    run = wait_for_run(EagerFailures.start({"sleep": 30}), worker)

    assert run.status == RunStatus.COMPENSATED
    last = run.steps.get(name="last")
    assert last.status == StepStatus.FAILED
    assert last.attempts == 1
    assert last.error["class"] == "timeout"
    assert last.error["type"].endswith("SoftTimeLimitExceeded")
    # The errback of the failed eager step started compensation: the steps before it were undone once.
    assert {s.name: s.status for s in run.steps.all()} == {
        "one": StepStatus.COMPENSATED,
        "flaky": StepStatus.COMPENSATED,
        "last": StepStatus.FAILED,
    }
    assert Effect.objects.get(key=f"{run.pk}:one:compensate").calls == 1
    assert TaskResult.objects.get(task_id=f"{run.pk}:last:1").status == "FAILURE"
    assert SagaEvent.objects.filter(run=run, type=EventType.SAGA_COMPENSATING).count() == 1
