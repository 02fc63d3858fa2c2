"""The reaper and waiting steps: a wait is not stuck, an overdue wait fails, a lost child's end is made up for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sagas import recovery
from sagas.models import SagaRun, SagaStepRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaDefinitionFactory, SagaRunFactory, waiting_run
from tests.testapp.sagas import Child, Parent

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(hours=1)


def _idle(run: SagaRun) -> None:
    SagaRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - LONG_AGO)


def test_a_run_waiting_for_a_signal_is_not_stuck_until_its_timeout_passed() -> None:
    run = waiting_run()
    _idle(run)
    assert str(run.pk) not in recovery.stuck_run_ids()

    run.steps.filter(name="approved").update(wait_until=timezone.now() - LONG_AGO)
    assert str(run.pk) in recovery.stuck_run_ids()
    (redrive,) = recovery.reap()
    assert redrive.action.startswith("fail the wait approved")
    run.refresh_from_db()
    approved = run.steps.get(name="approved")
    assert (approved.status, approved.error["code"]) == (StepStatus.FAILED, "wait_timeout")
    assert run.status == RunStatus.COMPENSATING  # reserve is being undone


def _parent_waiting_for(child_status: str) -> tuple[SagaRun, SagaRun]:
    parent_definition = SagaDefinitionFactory(
        name=Parent.name, version=Parent.version, spec=Parent.spec(), spec_hash=Parent.spec_hash()
    )
    child_definition = SagaDefinitionFactory(
        name=Child.name, version=Child.version, spec=Child.spec(), spec_hash=Child.spec_hash()
    )
    parent = SagaRunFactory(definition=parent_definition, status=RunStatus.EXECUTING, step_statuses={})
    parent.steps.all().delete()
    statuses = {"prepare": StepStatus.SUCCEEDED, "child": StepStatus.WAITING}
    for index, step in enumerate(Parent.steps):
        SagaStepRun.objects.create(run=parent, name=step.name, index=index, status=statuses.get(step.name, "pending"))
    child = SagaRunFactory(definition=child_definition, status=child_status, parent=parent, parent_step="child")
    child.steps.all().delete()
    for index, step in enumerate(Child.steps):
        SagaStepRun.objects.create(
            run=child, name=step.name, index=index, status=StepStatus.SUCCEEDED, output={step.name: index}
        )
    SagaRun.objects.filter(pk__in=[parent.pk, child.pk]).update(updated_at=timezone.now() - LONG_AGO)
    return parent, child


def test_a_child_that_completed_while_its_message_was_lost_is_settled_by_the_reaper() -> None:
    parent, _ = _parent_waiting_for(RunStatus.COMPLETED)
    assert str(parent.pk) in recovery.stuck_run_ids()

    (redrive,) = recovery.reap()

    assert redrive.action == "move child on (its child run completed)"
    step = parent.steps.get(name="child")
    assert (step.status, step.output) == (StepStatus.SUCCEEDED, {"child_first": 0, "child_second": 1})
    assert parent.events.filter(type=EventType.STEP_SUCCEEDED, step="child").exists()


def test_a_parent_whose_child_still_runs_is_not_stuck() -> None:
    parent, _ = _parent_waiting_for(RunStatus.EXECUTING)
    assert str(parent.pk) not in recovery.stuck_run_ids()
