"""Celery tasks: thin wrappers that call the runner or one service and map its answer onto Celery."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Task, shared_task

from sagas import backlog, connections, eager, engine, leases, logs, recovery, registry, retention, runner, services
from sagas.celeryconf import broker_delay
from sagas.definitions import Saga
from sagas.exceptions import StepFailed
from sagas.outcomes import Outcome
from sagas.services.compensation import run_on_compensation_failure

logger = logging.getLogger(__name__)


class SagaTask(Task):
    """Base of every saga task: redelivered if the worker dies mid-task, never acked early."""

    acks_late = True
    reject_on_worker_lost = True
    # A task killed at its hard time limit is acknowledged: its errback records the timeout in the
    # database, which retries or compensates. Redelivering it would run it again regardless.
    acks_on_failure_or_timeout = True
    # A business refusal is an expected outcome: logged without a traceback (the errback still fires).
    throws = (StepFailed,)
    # Attempt budgets are the steps' RetryPolicy, counted in the database, not Celery's counter.
    max_retries = None
    # A saga task's outcome lives in the run's tables: a result row per successful task would double the
    # database writes of a step for nothing the admin does not show already. Failures and retries are still
    # stored (with their tracebacks), so the result backend lists what went wrong.
    ignore_result = True
    store_errors_even_if_ignored = True

    # Celery's Django fixup closes every connection around every task unless CELERY_DB_REUSE_MAX is set, and
    # with it set checks none: these keep connections across tasks and still replace bad ones.
    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        connections.before_task()
        eager.mark_started(self)

    def after_return(self, *args: Any, **kwargs: Any) -> None:
        connections.after_task()

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None, *rest: Any,
                    **options: Any) -> Any:  # fmt: skip
        # Every publish of a saga task (a chain's next step, a retry, a re-drive, a check) passes here, and says
        # when it was published: the reaper reads how far behind the queue is (sagas.backlog).
        options["headers"] = {**(options.get("headers") or {}), **backlog.sent_now()}
        return super().apply_async(args, kwargs, task_id, *rest, **broker_delay(self.app, options))


def _finish(task: Task, result: Any) -> None:
    if result.outcome is Outcome.STOP:
        # Stops the rest of the chain: the worker publishes the next step only if this is set.
        task.request.chain = None
    elif result.outcome in (Outcome.WAIT, Outcome.RETRY):
        raise task.retry(countdown=result.delay, exc=result.exc, task_id=result.retry_task_id)
    elif result.outcome is Outcome.FAILED:
        raise result.exc


def run_step(self: Task, run_id: str, step: str) -> None:
    """Registered once per step as ``saga.<saga>.<step>``. In an eager saga, the steps after it that this
    process may run are run here, one attempt each, before the rest of the chain is published."""
    hard_limit = eager.message_limits(self)[1]
    result = runner.execute_step(
        run_id=run_id, step=step, task_id=self.request.id, hard_limit=hard_limit, hand_over=True
    )
    held = result.held  # a succeeded step's lease: given back with the next eager step's acquire, or below
    try:
        while result.outcome is Outcome.CONTINUE and result.saga is not None and result.saga.is_eager():
            found = eager.next_step(self, result.saga, run_id)
            if found is None:
                break
            following, name = found
            hard = engine.step_limits(result.saga.step(name))[1]
            previous, held = held, None  # the acquire gives it back, whatever it answers
            try:
                result = runner.execute_step(
                    run_id=run_id,
                    step=name,
                    task_id=following.options["task_id"],
                    hard_limit=hard,
                    previous=previous,
                    hand_over=True,
                )
            except Exception as exc:
                # The step's attempt failed before its outcome was recorded (the database went away): its own
                # errback reports it, as the worker's would for a published step; this message's step succeeded.
                logger.exception(
                    "eager step %s of saga run %s failed before its outcome was recorded",
                    name,
                    run_id,
                    extra=logs.fields(run_id=run_id, step=name),
                )
                eager.fail(self, following, exc)
                return
            held = result.held
            if result.outcome in (Outcome.WAIT, Outcome.RETRY):
                assert result.exc is not None
                eager.publish_retry(self, following, delay=result.delay, task_id=result.retry_task_id, exc=result.exc)
                return
            if result.outcome is Outcome.FAILED:
                assert result.exc is not None
                eager.fail(self, following, result.exc)
                return
    finally:
        if held is not None:
            # The success is committed: a lease Redis could not take back lapses by itself.
            with contextlib.suppress(redis.RedisError):
                leases.release(run_id, held.step, held.value, mode="done")
    _finish(self, result)


def run_compensation(self: Task, run_id: str, step: str) -> None:
    """Registered once per compensable step as ``saga.<saga>.<step>.compensate``; scheduled by the
    run's tables, one stage at a time."""
    hard_limit = eager.message_limits(self)[1]
    _finish(self, runner.execute_compensation(run_id=run_id, step=step, task_id=self.request.id, hard_limit=hard_limit))


def register_saga_tasks(saga: type[Saga]) -> None:
    """Register the named tasks of a saga's steps and compensations with every Celery app."""
    for step in saga.steps:
        shared_task(name=engine.step_task_name(saga.name, step.name), bind=True, base=SagaTask)(run_step)
        if step.compensation is not None:
            shared_task(name=engine.compensation_task_name(saga.name, step.name), bind=True, base=SagaTask)(
                run_compensation
            )


registry.on_register(register_saga_tasks)


def _retried_on_failure(task: Task, what: str, run_id: str, step: str, call: Callable[[], object]) -> None:
    """Report to the run's tables with ``call``; if that fails, log it and retry the task with a growing delay.
    These tasks never fail for good: the database may be back in a moment (and the reaper covers the rest)."""
    try:
        call()
    except Exception as exc:
        logger.exception(
            "%s for step %s of saga run %s failed; retrying",
            what,
            step,
            run_id,
            extra=logs.fields(run_id=run_id, step=step),
        )
        raise task.retry(countdown=min(60, 2**task.request.retries), exc=exc) from exc


@shared_task(name=engine.ON_STEP_FAILURE, bind=True, base=SagaTask, max_retries=10)
def on_step_failure(self: Task, run_id: str, step: str) -> None:
    """The errback of every step: report the failure to the run's tables, which decide what it means.
    It may fire zero or many times per failure; extra calls do nothing."""
    _retried_on_failure(self, "errback", run_id, step, lambda: services.run_on_step_failure(run_id=run_id, step=step))


@shared_task(name=engine.ON_COMPENSATION_FAILURE, bind=True, base=SagaTask, max_retries=10)
def on_compensation_failure(self: Task, run_id: str, step: str) -> None:
    """The errback of every compensation task: a failure the runner could not record (a hard time limit)."""
    _retried_on_failure(
        self, "compensation errback", run_id, step, lambda: run_on_compensation_failure(run_id=run_id, step=step)
    )


@shared_task(name=engine.DEADLINE_CHECK, bind=True, base=SagaTask)
def check_deadline(self: Task, run_id: str) -> None:
    """Scheduled at start for sagas with a ``timeout``: time the run out if it is still going."""
    services.run_check_deadline(run_id=run_id)


@shared_task(name=engine.WAIT_CHECK, bind=True, base=SagaTask)
def check_wait(self: Task, run_id: str, step: str) -> None:
    """Scheduled when a Wait step with a timeout begins to wait: fail it if no signal came in time."""
    services.run_check_wait(run_id=run_id, step=step)


@shared_task(name=engine.CHILD_SETTLED, bind=True, base=SagaTask, max_retries=10)
def child_settled(self: Task, parent_id: str, step: str) -> None:
    """Published when a child run finishes: its parent's SubSaga step succeeds, fails or is undone with it."""
    _retried_on_failure(
        self, "settling after the child's end", parent_id, step,
        lambda: services.run_child_settled(run_id=parent_id, step=step),
    )  # fmt: skip


@shared_task(name="sagas.reap", bind=True, base=SagaTask)
def reap(self: Task) -> int:
    """The periodic reaper: re-drive runs that stopped moving (see sagas.recovery)."""
    done = recovery.reap()
    recovery.mark_reaped()
    return len(done)


@shared_task(name=retention.PURGE_TASK, bind=True, base=SagaTask)
def purge(self: Task) -> int:
    """The scheduled purge of finished runs, when ``SAGAS["PURGE_AFTER"]`` is set (see sagas.retention)."""
    report = retention.scheduled_purge()
    return report.runs if report is not None else 0
