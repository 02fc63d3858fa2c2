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
            "name": "tests.engine_prioritised",
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


@pytest.fixture
def fan_out() -> Iterator[type[sagas.Saga]]:
    cls = type(
        "FanOut",
        (sagas.Saga,),
        {
            "__module__": __name__,
            "name": "tests.engine_fan_out",
            "steps": [
                sagas.Step(noop, noop, name="check"),
                sagas.Step(noop, noop, name="flight", depends_on=["check"]),
                sagas.Step(noop, noop, name="hotel", depends_on=["check"]),
                sagas.Step(noop, noop, name="car", depends_on=["check"]),
                sagas.Step(noop, noop, name="pay", depends_on=["flight", "hotel", "car"]),
            ],
        },
    )
    yield cls
    registry.unregister(cls)


def test_forward_chain_names_each_step_after_the_saga_and_the_last_step_ends_it() -> None:
    canvas = engine.forward_canvas(PlaceOrder, "run-1", PlaceOrder.steps)
    names = [task.task for task in canvas.tasks]
    assert names == [f"saga.orders.place_order.{step.name}" for step in PlaceOrder.steps]


def test_step_signatures_carry_ids_only_and_ignore_the_previous_result() -> None:
    canvas = engine.forward_canvas(PlaceOrder, "run-1", PlaceOrder.steps)
    for task, step in zip(canvas.tasks, PlaceOrder.steps, strict=False):
        assert task.immutable
        assert tuple(task.args) == ("run-1", step.name)


def test_every_step_carries_an_errback_naming_it() -> None:
    canvas = engine.forward_canvas(PlaceOrder, "run-1", PlaceOrder.steps)
    for task, step in zip(canvas.tasks, PlaceOrder.steps, strict=True):
        (errback,) = task.options["link_error"]
        assert (errback["task"], tuple(errback["args"]), errback["immutable"]) == (
            "sagas.on_step_failure",
            ("run-1", step.name),
            True,
        )


def test_a_step_timeout_becomes_soft_and_hard_time_limits(prioritised: type[sagas.Saga], settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "TIME_LIMIT_GRACE": 5}
    canvas = engine.forward_canvas(prioritised, "r", prioritised.steps)
    limited = canvas.tasks[3]
    assert (limited.options["soft_time_limit"], limited.options["time_limit"]) == (7, 12)
    assert "soft_time_limit" not in canvas.tasks[0].options


def test_compensations_run_by_priority_then_in_reverse_order(prioritised: type[sagas.Saga]) -> None:
    assert engine.compensation_stages(prioritised, ["a", "b", "c", "d"]) == [["b"], ["d"], ["c"], ["a"]]


def test_only_completed_steps_are_staged(prioritised: type[sagas.Saga]) -> None:
    assert engine.compensation_stages(prioritised, ["a", "c"]) == [["c"], ["a"]]


def test_within_a_stage_the_last_to_complete_is_scheduled_first(fan_out: type[sagas.Saga]) -> None:
    stages = engine.compensation_stages(fan_out, ["check", "hotel", "car", "flight", "pay"])
    assert stages == [["pay"], ["flight", "car", "hotel"], ["check"]]


def test_independent_steps_of_one_priority_share_a_stage(fan_out: type[sagas.Saga]) -> None:
    stages = engine.compensation_stages(fan_out, ["check", "flight", "hotel", "car", "pay"])
    assert stages == [["pay"], ["car", "hotel", "flight"], ["check"]]


def test_priority_goes_before_dependency_order() -> None:
    steps = [
        sagas.Step(noop, noop, name="check"),
        sagas.Step(noop, noop, name="flight", depends_on=["check"]),
        sagas.Step(noop, noop, name="hotel", depends_on=["check"], priority=3),
        sagas.Step(noop, noop, name="pay", depends_on=["flight", "hotel"]),
    ]
    cls = type("Urgent", (sagas.Saga,), {"__module__": __name__, "name": "tests.urgent", "steps": steps})
    try:
        stages = engine.compensation_stages(cls, ["check", "flight", "hotel", "pay"])
    finally:
        registry.unregister(cls)
    # The hotel hold is released first, even though the payment that depends on it is undone later.
    assert stages == [["hotel"], ["pay"], ["flight"], ["check"]]


def test_a_compensation_task_is_one_signature_with_the_step_limits(prioritised: type[sagas.Saga]) -> None:
    task = engine.compensation_task(prioritised, "r", "d", engine.compensation_task_id("r", "d", 1, 2))
    assert (task.task, tuple(task.args), task.immutable) == (
        "saga.tests.engine_prioritised.d.compensate",
        ("r", "d"),
        True,
    )
    assert task.options["soft_time_limit"] == 7
    assert task.options["task_id"] == "r:d:compensate:1.2"
    (errback,) = task.options["link_error"]
    assert (errback["task"], tuple(errback["args"])) == ("sagas.on_compensation_failure", ("r", "d"))


def test_step_task_ids_are_the_run_step_and_attempt() -> None:
    canvas = engine.forward_canvas(PlaceOrder, "run-1", PlaceOrder.steps[2:], first_attempt=3)
    ids = [task.options["task_id"] for task in canvas.tasks]
    assert ids == ["run-1:charge_payment:3", "run-1:schedule_shipment:1", "run-1:send_confirmation:1"]


def test_the_queue_setting_routes_every_saga_task(settings) -> None:
    settings.SAGAS = {"QUEUE": "sagas"}
    canvas = engine.forward_canvas(PlaceOrder, "r", PlaceOrder.steps)
    assert {task.options["queue"] for task in canvas.tasks} == {"sagas"}


def test_the_compensation_order_example_of_the_failure_handling_guide() -> None:
    steps = [
        sagas.Step(noop, noop, name="check_fraud"),
        sagas.Step(noop, noop, name="book_flight", depends_on=["check_fraud"]),
        sagas.Step(noop, noop, name="book_hotel", depends_on=["check_fraud"], priority=10),
        sagas.Step(noop, noop, name="book_car", depends_on=["check_fraud"]),
        sagas.Step(noop, noop, name="charge", depends_on=["book_flight", "book_hotel", "book_car"]),
        sagas.Step(noop, name="send_itinerary", depends_on=["charge"]),
    ]
    cls = type("BookTrip", (sagas.Saga,), {"__module__": __name__, "name": "tests.docs_book_trip", "steps": steps})
    try:
        completed = ["check_fraud", "book_flight", "book_hotel", "book_car", "charge"]
        stages = engine.compensation_stages(cls, completed)
    finally:
        registry.unregister(cls)
    assert stages == [["book_hotel"], ["charge"], ["book_car", "book_flight"], ["check_fraud"]]


def test_a_graph_step_is_published_alone_with_its_errback(fan_out: type[sagas.Saga]) -> None:
    task = engine.start_canvases(fan_out, "r", fan_out.step("hotel"), 2)
    assert task.task == "saga.tests.engine_fan_out.hotel"
    assert task.args == ("r", "hotel")
    assert task.options["task_id"] == "r:hotel:2"
    assert [e.task for e in task.options["link_error"]] == ["sagas.on_step_failure"]
    assert not task.options.get("chain")


def test_a_sequence_step_is_published_as_the_chain_to_the_end() -> None:
    canvas = engine.start_canvases(PlaceOrder, "r", PlaceOrder.step("charge_payment"), 3)
    assert [t.task.rsplit(".", 1)[-1] for t in canvas.tasks] == [
        "charge_payment",
        "schedule_shipment",
        "send_confirmation",
    ]
    assert canvas.tasks[0].options["task_id"] == "r:charge_payment:3"


def test_ready_steps_are_the_pending_ones_whose_dependencies_all_succeeded(fan_out: type[sagas.Saga]) -> None:
    every = {"check", "flight", "hotel", "car", "pay"}
    assert engine.ready_steps(fan_out, set(), every) == ["check"]
    assert engine.ready_steps(fan_out, {"check"}, every - {"check"}) == ["flight", "hotel", "car"]
    assert engine.ready_steps(fan_out, {"check", "flight", "hotel"}, {"car", "pay"}) == ["car"]
    assert engine.ready_steps(fan_out, {"check", "flight", "hotel", "car"}, {"pay"}) == ["pay"]
