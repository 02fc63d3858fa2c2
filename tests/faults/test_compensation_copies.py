"""A second copy of a compensation's message, delivered while the attempt it names runs."""

from __future__ import annotations

from django_celery_results.models import TaskResult

from sagaproject.celery import app as celery_app
from sagas import engine
from sagas.models import SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.faults.conftest import FaultLab, gate_name
from tests.testapp.models import Call, Switch, calls_of
from tests.testapp.sagas import SeparateBudgets
from tests.worker import wait_until

STEP = "flaky_then_ok"  # undone by flaky_undo, which may try 5 times


def test_a_copy_of_the_last_compensation_attempt_delivered_while_it_runs_waits_for_it(lab: FaultLab) -> None:
    """What the short infrastructure soak found on 1d81876: a refund failed transiently three times; a copy of its
    fourth and last attempt's message, delivered again after a Redis connection reset, came 10 ms after that
    attempt started, found the budget spent, and gave the refund up while it still ran. The run ended failed,
    the payment never refunded."""
    worker = lab.start_worker(concurrency=2)  # one process for the last attempt, one for its copy
    gate = gate_name()
    run = SeparateBudgets.start({"undo_fail_times": 4, "gate_at": "undo", "gate": gate})
    key = f"{run.pk}:{STEP}:compensate"
    wait_until(lambda: Call.objects.filter(service="gate", key=key).exists(), worker, "the last undo attempt to run")
    step = run.steps.get(name=STEP)
    assert (step.status, step.compensation_attempts) == (StepStatus.COMPENSATING, 5)  # its budget, all started

    # The broker delivers the running attempt's message a second time.
    copy = step.compensation_task_id
    celery_app.send_task(engine.compensation_task_name(SeparateBudgets.name, STEP), args=(str(run.pk), STEP),
                         task_id=copy)  # fmt: skip
    waited = TaskResult.objects.filter(task_id=copy, status="RETRY")
    moved = SagaRun.objects.filter(pk=run.pk).exclude(status=RunStatus.COMPENSATING)
    wait_until(lambda: waited.exists() or moved.exists(), worker, "the copy to be taken")

    assert not moved.exists(), "the copy ended the compensation while its last attempt ran"
    assert "is being run by" in waited.get().result  # it waits for the attempt to end, holding nothing
    step.refresh_from_db()
    assert (step.status, step.compensation_attempts) == (StepStatus.COMPENSATING, 5)
    Switch.objects.create(name=gate, on=True)
    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPENSATED
    assert calls_of(run, STEP, ":compensate") == 5  # four transient failures, then the refund, once
    assert not run.events.filter(type=EventType.COMPENSATION_FAILED).exists()
    assert run.events.filter(type=EventType.COMPENSATION_STARTED, step=STEP).count() == 5
