"""Faults a test can switch on in its worker processes through environment variables."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from celery.canvas import Signature
from celery.signals import task_postrun

KILL_AFTER = "SAGAS_FAULT_KILL_AFTER"  # a task name: kill the process once that task has returned
MARKER = "SAGAS_FAULT_MARKER"  # a file that says the kill happened (so the redelivery is not killed too)
LOSE_PUBLISH = "SAGAS_FAULT_LOSE_PUBLISH"  # a task name: the first publish of it fails, as if the broker hiccuped


def install() -> None:
    if os.environ.get(KILL_AFTER):
        task_postrun.connect(_kill_after_commit, weak=False)
    if os.environ.get(LOSE_PUBLISH):
        _lose_first_publish()
    if os.environ.get(KILL_AT_RELAY):
        _kill_at_relay()
    if os.environ.get(KILL_WORKER_AFTER_ACTION):
        _kill_worker_after_action()
    if os.environ.get(LOSE_OUTCOME_OF):
        _lose_outcome_once()


def _kill_after_commit(sender: Any = None, **kwargs: Any) -> None:
    """The step has committed its outcome; the worker has not acknowledged the message yet."""
    if getattr(sender, "name", None) != os.environ[KILL_AFTER]:
        return
    marker = Path(os.environ[MARKER])
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _lose_first_publish() -> None:
    """Make the first publish of a task raise, as a broker that drops the connection would: the framework
    logs it and the message never exists; only the database knows what should have been sent."""
    apply_async = Signature.apply_async

    def failing_once(self: Signature, *args: Any, **kwargs: Any) -> Any:
        if self.task == os.environ[LOSE_PUBLISH]:
            try:
                Path(os.environ[MARKER]).touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                raise ConnectionError(f"injected fault: the publish of {self.task} was lost")
        return apply_async(self, *args, **kwargs)

    Signature.apply_async = failing_once  # type: ignore[method-assign]


KILL_AT_RELAY = "SAGAS_FAULT_KILL_AT_RELAY"  # "<topic> before|after": kill the process around that message's publish


def _kill_at_relay() -> None:
    """Kill the process once, when the outbox relays a message of the topic: before it is published (a crash
    between commit and relay) or after it is published but before it is marked so (the reaper publishes it
    again: a duplicate)."""
    from sagas import outbox

    topic, when = os.environ[KILL_AT_RELAY].split()
    publish = outbox._publish

    def publish_then_maybe_die(message: Any, receivers: list[Any]) -> bool:
        due = message.topic == topic and _first_time()
        if due and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        published = publish(message, receivers)
        if due and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return published

    outbox._publish = publish_then_maybe_die


def _first_time() -> bool:
    try:
        Path(os.environ[MARKER]).touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


KILL_WORKER_AFTER_ACTION = "SAGAS_FAULT_KILL_WORKER_AFTER_ACTION"  # a step name: kill the worker after its action


def _kill_worker_after_action() -> None:
    """Kill the whole worker (the pool process and its parent) once, right after the step's action returned: its
    effect is committed, its outcome not recorded, and its message stays unacknowledged with the dead worker."""
    from sagas import runner

    step = os.environ[KILL_WORKER_AFTER_ACTION]
    call_admitted = runner.call_admitted

    def call_then_maybe_die(function: Any, claim: Any) -> Any:
        result = call_admitted(function, claim)
        if claim.context is not None and claim.context.step == step and _first_time():
            os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    runner.call_admitted = call_then_maybe_die


LOSE_OUTCOME_OF = "SAGAS_FAULT_LOSE_OUTCOME_OF"  # a step name: its first success is not recorded (connection lost)


def _lose_outcome_once() -> None:
    """Fail the first record of the step's success, as a database connection cut right after the action would:
    the effect is committed, the task fails, and only the errback reports the attempt (its outcome unknown)."""
    from django.db import OperationalError

    from sagas import services

    step_name = os.environ[LOSE_OUTCOME_OF]
    step_succeed = services.step_succeed

    def succeed_unless_lost(*, step: str, **kwargs: Any) -> bool:
        if step == step_name and _first_time():
            raise OperationalError(f"injected fault: the connection closed before {step}'s outcome was recorded")
        return step_succeed(step=step, **kwargs)

    services.step_succeed = succeed_unless_lost  # type: ignore[assignment]
