"""When a worker runs an eager saga's next step in process, and when it publishes it instead: the decision
alone, on a real registered task with a pushed request (no broker involved)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from ctypes import c_bool
from multiprocessing.sharedctypes import RawValue

import pytest
from celery import Task

from sagaproject.celery import app
from sagas import eager, engine
from tests.testapp.sagas import EagerThree


@pytest.fixture
def run_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def task() -> Iterator[Task]:
    task = app.tasks[engine.step_task_name(EagerThree.name, "one")]
    yield task
    while task.request_stack.top is not None:
        task.pop_request()


def push(task: Task, run_id: str, *, queue: str | None = None, timelimit=None, chain=None) -> list:
    if timelimit is None:  # what the first step's message carries: the budget of the three steps
        options = engine.step_task(EagerThree, run_id, EagerThree.step("one"), 1).options
        timelimit = (options["time_limit"], options["soft_time_limit"])
    if chain is None:
        chain = [engine.step_task(EagerThree, run_id, EagerThree.step(name), 1) for name in ("three", "two")]
    if queue is None:  # the queue the next link is routed to (the unit tests' routing sends it nowhere)
        queue = app.amqp.router.route(dict(chain[-1].options), chain[-1].task, chain[-1].args)["queue"].name
    task.push_request(chain=chain, delivery_info={"routing_key": queue}, timelimit=timelimit)
    eager.mark_started(task)
    return chain


def test_the_next_step_on_the_same_queue_runs_here(task: Task, run_id: str) -> None:
    chain = push(task, run_id)
    following, step = eager.next_step(task, EagerThree, run_id)
    assert step == "two"
    assert following.options["task_id"] == f"{run_id}:two:1"
    assert len(chain) == 1  # taken off the chain: the worker will not publish it


def test_a_step_for_another_queue_is_published(task: Task, run_id: str) -> None:
    chain = push(task, run_id, queue="elsewhere")
    assert eager.next_step(task, EagerThree, run_id) is None
    assert len(chain) == 2


def test_a_step_whose_limit_does_not_fit_in_what_is_left_of_the_message_is_published(task: Task, run_id: str) -> None:
    push(task, run_id, timelimit=(10, 5))  # a message published with one step's limits, not the chain's budget
    assert eager.next_step(task, EagerThree, run_id) is None


def test_nothing_runs_eagerly_once_the_worker_shuts_down(task: Task, run_id: str, monkeypatch) -> None:
    monkeypatch.setattr(eager, "_stopping", RawValue(c_bool, True))
    push(task, run_id)
    assert eager.next_step(task, EagerThree, run_id) is None


def test_a_link_that_is_not_a_step_of_this_run_is_left_to_celery(task: Task, run_id: str) -> None:
    push(task, run_id, chain=[engine._task(engine.DEADLINE_CHECK, run_id)])
    assert eager.next_step(task, EagerThree, run_id) is None
    push(task, run_id, chain=[engine.step_task(EagerThree, str(uuid.uuid4()), EagerThree.step("two"), 1)])
    assert eager.next_step(task, EagerThree, run_id) is None


def test_a_thread_cannot_enforce_a_steps_limits_so_it_publishes(task: Task, run_id: str) -> None:
    answers = []

    def decide() -> None:
        push(task, run_id)
        answers.append(eager.next_step(task, EagerThree, run_id))
        task.pop_request()

    thread = threading.Thread(target=decide)
    thread.start()
    thread.join()
    assert answers == [None]


def test_an_eager_sagas_message_carries_the_budget_of_the_steps_after_it(settings) -> None:
    hard = app.conf.task_time_limit
    first = engine.step_task(EagerThree, "r", EagerThree.step("one"), 1)
    last = engine.step_task(EagerThree, "r", EagerThree.step("three"), 1)
    assert first.options["soft_time_limit"] == 3 * hard
    assert last.options["soft_time_limit"] == hard
    assert first.options["time_limit"] == 3 * hard + 1  # the tests' TIME_LIMIT_GRACE
