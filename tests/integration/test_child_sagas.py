"""Child sagas on a real worker: a SubSaga step starts its child once and moves with it."""

from __future__ import annotations

from sagas.models import SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.models import calls_of
from tests.testapp.sagas import Parent
from tests.worker import WorkerProcess, wait_for_run


def _child(parent: SagaRun) -> SagaRun:
    return SagaRun.objects.get(parent=parent)


def test_a_completed_child_gives_its_merged_outputs_to_the_parent(worker: WorkerProcess) -> None:
    parent = wait_for_run(Parent.start({"order": 1}, correlation_id="req-42"), worker)

    assert parent.status == RunStatus.COMPLETED
    child = _child(parent)
    assert (child.status, child.saga_name, child.parent_step) == (RunStatus.COMPLETED, "tests.child_of_parent", "child")
    assert child.correlation_id == "req-42"  # the parent's
    assert child.payload == {"order": 1, "recorded": "prepare", "greeting": "from the parent"}
    step = parent.steps.get(name="child")
    assert step.output == {"recorded": "child_first", "child_said": "from the parent"}
    assert parent.steps.get(name="last").output == {"child_said_seen": "from the parent"}
    assert SagaRun.objects.filter(parent=parent).count() == 1  # started once
    waiting = parent.events.get(type=EventType.STEP_WAITING, step="child")
    assert waiting.data["child"] == str(child.pk)


def test_a_child_that_compensates_fails_the_step_and_the_parent_compensates(worker: WorkerProcess) -> None:
    parent = wait_for_run(Parent.start({"child_fails": True}), worker)

    assert parent.status == RunStatus.COMPENSATED
    child = _child(parent)
    assert child.status == RunStatus.COMPENSATED
    assert calls_of(child, "child_first", ":compensate") == 1
    step = parent.steps.get(name="child")
    assert (step.status, step.error["code"]) == (StepStatus.FAILED, "child_compensated")
    assert calls_of(parent, "prepare", ":compensate") == 1
    assert calls_of(parent, "last") == 0


def test_a_completed_child_is_undone_in_its_own_order_when_the_parent_fails_later(worker: WorkerProcess) -> None:
    parent = wait_for_run(Parent.start({"parent_fails": True}), worker)

    assert parent.status == RunStatus.COMPENSATED
    child = _child(parent)
    assert child.status == RunStatus.COMPENSATED
    assert parent.steps.get(name="child").status == StepStatus.COMPENSATED
    assert (calls_of(child, "child_first", ":compensate"), calls_of(child, "child_second", ":compensate")) == (1, 1)
    undone = list(
        child.events.filter(type=EventType.COMPENSATION_SUCCEEDED).order_by("seq").values_list("step", flat=True)
    )
    assert undone == ["child_second", "child_first"]  # the child's own order
    # The parent's earlier step is undone after the child, as the parent's order requires.
    parent_undone = list(
        parent.events.filter(type=EventType.COMPENSATION_SUCCEEDED).order_by("seq").values_list("step", flat=True)
    )
    assert parent_undone == ["child", "prepare"]
    assert calls_of(parent, "prepare", ":compensate") == 1
