"""The canvases a run dispatches: names, immutable id-only arguments, errbacks, order (pure logic)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sagas
from participants.checkout.sagas import PlaceOrder
from sagas import engine, registry


def noop(ctx: sagas.StepContext) -> None:
    return None


@pytest.fixture
def prioritised() -> Iterator[type[sagas.Saga]]:
    cls = type(
        "Prioritised",
        (sagas.Saga,),
        {
            "__module__": __name__,
            "name": "tests.prioritised",
            "steps": [
                sagas.Step(noop, noop, name="a"),
                sagas.Step(noop, noop, name="b", priority=5),
                sagas.Step(noop, noop, name="c"),
                sagas.Step(noop, noop, name="d", timeout=7),
            ],
        },
    )
    yield cls
    registry.unregister(cls)


def test_forward_chain_names_each_step_after_the_saga_and_ends_with_finish() -> None:
    canvas = engine.forward_canvas(PlaceOrder, "run-1", PlaceOrder.steps)
    names = [task.task for task in canvas.tasks]
    assert names == [f"saga.orders.place_order.{step.name}" for step in PlaceOrder.steps] + ["sagas.finish_run"]


def test_step_signatures_carry_ids_only_and_ignore_the_previous_result() -> None:
    canvas = engine.forward_canvas(PlaceOrder, "run-1", PlaceOrder.steps)
    for task, step in zip(canvas.tasks, PlaceOrder.steps, strict=False):
        assert task.immutable
        assert tuple(task.args) == ("run-1", step.name)


def test_every_step_but_not_finish_carries_the_compensation_errback() -> None:
    canvas = engine.forward_canvas(PlaceOrder, "run-1", PlaceOrder.steps)
    *steps, finish = canvas.tasks
    for task in steps:
        (errback,) = task.options["link_error"]
        assert (errback["task"], tuple(errback["args"]), errback["immutable"]) == (
            "sagas.on_step_failure",
            ("run-1",),
            True,
        )
    assert "link_error" not in finish.options


def test_a_step_timeout_becomes_soft_and_hard_time_limits(prioritised: type[sagas.Saga]) -> None:
    canvas = engine.forward_canvas(prioritised, "r", prioritised.steps)
    limited = canvas.tasks[3]
    assert (limited.options["soft_time_limit"], limited.options["time_limit"]) == (7, 12)
    assert "soft_time_limit" not in canvas.tasks[0].options


def test_compensations_run_by_priority_then_in_reverse_order(prioritised: type[sagas.Saga]) -> None:
    ordered = engine.compensation_order(prioritised, ["a", "b", "c", "d"])
    assert [step.name for step in ordered] == ["b", "d", "c", "a"]


def test_compensation_chain_names_compensate_tasks_and_ends_with_finish(prioritised: type[sagas.Saga]) -> None:
    canvas = engine.compensation_canvas(prioritised, "r", engine.compensation_order(prioritised, ["a", "c"]))
    assert [task.task for task in canvas.tasks] == [
        "saga.tests.prioritised.c.compensate",
        "saga.tests.prioritised.a.compensate",
        "sagas.finish_compensation",
    ]


def test_the_queue_setting_routes_every_saga_task(settings) -> None:
    settings.SAGAS = {"QUEUE": "sagas"}
    canvas = engine.forward_canvas(PlaceOrder, "r", PlaceOrder.steps)
    assert {task.options["queue"] for task in canvas.tasks} == {"sagas"}
