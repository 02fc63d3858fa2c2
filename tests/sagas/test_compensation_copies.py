"""Copies of a compensation's message: one delivered again while its attempt runs, after it ended, or after it
vanished; and the second budget of a compensation whose last allowed attempt vanished."""

from __future__ import annotations

import time

import pytest

import sagas
from sagas import engine, leases, services
from sagas.failures import Failure
from sagas.models import SagaRun
from sagas.outcomes import Outcome
from sagas.services.compensation import run_on_compensation_failure
from sagas.services.context import Claim
from sagas.states import EventType, RunStatus, StepStatus
from tests.factories import SagaRunFactory
from tests.metrics import publishes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _redis_keeps_its_data() -> None:
    """Redis has kept the saga keys since before the test's run began (the reaper marks it every tick)."""
    leases.memory_since()


STEP = "charge_payment"  # its refund: compensation_retry max_attempts=4
BUDGET = 4


def _compensating() -> SagaRun:
    """A compensating run whose refund is its last compensation left."""
    undone = {"create_order": StepStatus.COMPENSATED, "reserve_stock": StepStatus.COMPENSATED}
    return SagaRunFactory(status=RunStatus.COMPENSATING, step_statuses={**undone, STEP: StepStatus.COMPENSATING})


def _task(run: SagaRun, attempt: int, round_: int = 1) -> str:
    return engine.compensation_task_id(str(run.pk), STEP, round_, attempt)


def _claim(run: SagaRun, attempt: int, round_: int = 1) -> Claim:
    return services.compensation_claim(run_id=run.pk, step=STEP, task_id=_task(run, attempt, round_))


def _ends(run: SagaRun, claim: Claim, *, retry_in: float | None = 0.5) -> Outcome:
    """The claimed attempt fails (retried after ``retry_in``, or for good with None) and gives its lease back,
    as the runner does."""
    assert claim.outcome is Outcome.RUN
    assert claim.compensation is not None
    error = Failure.without_exception(
        "ConnectionError", "payments unreachable", code="transient", attempt=claim.compensation.number
    )
    outcome = services.compensation_fail_attempt(run_id=run.pk, step=STEP, error=error, retry_in=retry_in)
    leases.release(run.pk, STEP, claim.compensation.lease, mode="done", compensation=True)
    return outcome


def _dies(run: SagaRun, claim: Claim) -> None:
    """The claimed attempt's process dies before it records anything: its lease lapses (or its holder is known
    dead); only its CompensationStarted shows it."""
    assert claim.outcome is Outcome.RUN
    leases.forget(run.pk, STEP, compensation=True)


def _step(run: SagaRun):
    return run.steps.get(name=STEP)


def _with_three_failed_attempts() -> SagaRun:
    run = _compensating()
    for attempt in range(1, BUDGET):
        assert _ends(run, _claim(run, attempt)) is Outcome.RETRY
    return run


def test_a_copy_delivered_while_the_last_attempt_runs_waits_for_it_and_gives_nothing_up() -> None:
    run = _with_three_failed_attempts()
    last = _claim(run, BUDGET)
    assert last.outcome is Outcome.RUN

    copy = _claim(run, BUDGET)  # the broker delivers attempt 4's message again while it runs

    assert copy.outcome is Outcome.WAIT
    assert copy.holder is not None
    assert copy.holder.task_id == _task(run, BUDGET)
    assert 1.0 <= copy.delay <= 60
    step = _step(run)
    assert (step.status, step.compensation_attempts) == (StepStatus.COMPENSATING, BUDGET)
    assert not run.events.filter(type=EventType.COMPENSATION_FAILED).exists()

    services.compensation_succeed(run_id=run.pk, step=STEP)
    leases.release(run.pk, STEP, last.compensation.lease, mode="done", compensation=True)
    assert _claim(run, BUDGET).outcome is Outcome.STOP  # it comes back: the refund is done
    assert _step(run).status == StepStatus.COMPENSATED
    assert run.events.filter(type=EventType.COMPENSATION_STARTED, step=STEP).count() == BUDGET


def test_a_re_drive_published_while_an_attempt_runs_waits_for_it() -> None:
    run = _compensating()
    first = _claim(run, 1)
    assert first.outcome is Outcome.RUN

    assert _claim(run, 2).outcome is Outcome.WAIT  # the next attempt's message, published by a re-drive

    assert _ends(run, first) is Outcome.RETRY
    assert _claim(run, 2).outcome is Outcome.RUN
    assert _step(run).compensation_attempts == 2


def test_a_copy_of_an_attempt_whose_failure_is_on_record_stops_without_spending_an_attempt() -> None:
    run = _compensating()
    assert _ends(run, _claim(run, 1)) is Outcome.RETRY

    assert _claim(run, 1).outcome is Outcome.STOP  # its retry has a message of its own

    assert _step(run).compensation_attempts == 1
    claim = _claim(run, 2)
    assert claim.outcome is Outcome.RUN
    assert claim.context.attempt == 2


def test_a_copy_of_an_attempt_that_later_ones_followed_stops() -> None:
    run = _compensating()
    assert _ends(run, _claim(run, 1)) is Outcome.RETRY
    _dies(run, _claim(run, 2))
    assert _claim(run, 3).outcome is Outcome.RUN  # the errback or a re-drive moved it on

    leases.forget(run.pk, STEP, compensation=True)
    assert _claim(run, 2).outcome is Outcome.STOP
    assert _claim(run, 1).outcome is Outcome.STOP
    assert _step(run).compensation_attempts == 3


def test_a_copy_from_before_a_persons_retry_stops(django_capture_on_commit_callbacks) -> None:
    run = _compensating()
    assert _ends(run, _claim(run, 1), retry_in=None) is Outcome.STOP  # gave up
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED

    with django_capture_on_commit_callbacks() as callbacks:
        sagas.retry(run.pk, reason="payments is back", actor="ops")
    assert len(publishes(callbacks)) == 1  # round 2, attempt 1

    assert _claim(run, 1).outcome is Outcome.STOP  # round 1's message, delivered again
    assert _claim(run, 2).outcome is Outcome.STOP
    claim = _claim(run, 1, round_=2)
    assert claim.outcome is Outcome.RUN
    assert claim.context.attempt == 1


def test_a_copy_of_an_attempt_that_vanished_runs_the_next_attempt() -> None:
    run = _compensating()
    _dies(run, _claim(run, 1))

    claim = _claim(run, 1)  # redelivered after its process died

    assert claim.outcome is Outcome.RUN
    assert (claim.context.attempt, claim.compensation.of_budget) == (2, 2)
    assert _step(run).compensation_task_id == _task(run, 1)
    assert claim.retry_task_id == _task(run, 3)


def test_a_last_attempt_that_vanished_gives_a_second_budget_then_the_compensation_gives_up() -> None:
    run = _with_three_failed_attempts()
    _dies(run, _claim(run, BUDGET))

    again = _claim(run, BUDGET)  # its copy, redelivered after its process died

    assert again.outcome is Outcome.RUN
    assert (again.context.attempt, again.compensation.of_budget) == (BUDGET + 1, 1)
    assert again.context.idempotency_key == f"{run.pk}:{STEP}:compensate"
    step = _step(run)
    assert [(f["code"], f["attempt"]) for f in step.failures][-1] == ("attempt_in_doubt", BUDGET)
    assert step.status == StepStatus.COMPENSATING

    _dies(run, again)
    for attempt in range(BUDGET + 2, 2 * BUDGET + 1):  # the second budget's attempts vanish too
        claim = _claim(run, attempt)
        assert claim.outcome is Outcome.RUN
        _dies(run, claim)
    gave_up = _claim(run, 2 * BUDGET + 1)

    assert gave_up.outcome is Outcome.FAILED
    step = _step(run)
    assert (step.status, step.compensation_attempts) == (StepStatus.COMPENSATION_FAILED, 2 * BUDGET)
    assert step.error["code"] == "attempts_lost"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED  # awaiting a person


def test_the_second_budget_retries_a_transient_failure_as_its_policy_says() -> None:
    run = _with_three_failed_attempts()
    _dies(run, _claim(run, BUDGET))
    again = _claim(run, BUDGET + 1)  # a re-drive's message

    assert again.compensation.of_budget == 1
    assert _ends(run, again) is Outcome.RETRY
    assert _claim(run, BUDGET + 2).compensation.of_budget == 2


def test_the_errback_counts_an_attempt_of_the_second_budget_in_that_budget(
    django_capture_on_commit_callbacks,
) -> None:
    run = _with_three_failed_attempts()
    _dies(run, _claim(run, BUDGET))
    _claim(run, BUDGET + 1)  # runs, and fails before it can record why (the database went away)

    with django_capture_on_commit_callbacks() as callbacks:
        run_on_compensation_failure(run_id=run.pk, step=STEP)

    step = _step(run)
    assert step.status == StepStatus.COMPENSATING
    assert (step.failures[-1]["attempt"], step.failures[-1]["retry_in"] is not None) == (BUDGET + 1, True)
    assert len(publishes(callbacks)) == 1  # its retry
    assert leases.holder(run.pk, STEP, compensation=True) is None  # its holder is gone: the retry need not wait


def test_a_copy_waits_while_an_attempt_whose_lease_redis_lost_may_still_run() -> None:
    run = _compensating()
    assert _claim(run, 1).outcome is Outcome.RUN
    leases.forget(run.pk, STEP, compensation=True)
    leases.client().set(leases.memory_key(), repr(time.time()))  # Redis restarted empty after the attempt began

    copy = _claim(run, 1)

    assert copy.outcome is Outcome.WAIT
    assert "whose lease Redis lost" in copy.awaited
    assert _step(run).compensation_attempts == 1


def test_a_claim_that_does_not_run_gives_the_lease_back() -> None:
    run = _compensating()
    assert _ends(run, _claim(run, 1)) is Outcome.RETRY
    assert _claim(run, 1).outcome is Outcome.STOP
    assert leases.holder(run.pk, STEP, compensation=True) is None
