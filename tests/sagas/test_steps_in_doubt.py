"""Steps in doubt: an attempt that started and never reported back, in a run that then stops executing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from sagas import leases, recovery, services
from sagas.failures import Failure
from sagas.models import SagaRun
from sagas.outcomes import Outcome
from sagas.states import EventType, RunStatus, StepStatus
from tests import history
from tests.factories import SagaRunFactory, forward_failed_run
from tests.metrics import publishes

pytestmark = pytest.mark.django_db

ORDER_CREATED = {"create_order": StepStatus.SUCCEEDED}


def _attempt_died(run: SagaRun, step: str) -> None:
    """An attempt of ``step`` starts (its lease taken, its count raised) and its process dies before recording
    anything: its lease lapses (or its holder is known dead), only the count shows it."""
    claim = services.step_claim(run_id=run.pk, step=step, task_id=f"{step}-1")
    assert claim.outcome is Outcome.RUN
    leases.forget(run.pk, step)


def _compensating_with_a_lost_second_attempt() -> SagaRun:
    """A compensating run whose reserve_stock failed attempt 1 (on record, a retry due) and whose attempt 2
    started (counted in Redis) and never reported back."""
    run = SagaRunFactory(status=RunStatus.COMPENSATING, step_statuses={**ORDER_CREATED, "reserve_stock": "running"})
    run.steps.filter(name="reserve_stock").update(attempts=1)
    leases.client().set(leases.counter_key(run.pk, "reserve_stock"), 2)
    return run


def _refused(attempt: int) -> Failure:
    return Failure.without_exception("StepFailed", "out of stock", code="refused", attempt=attempt)


def test_a_cancel_settles_a_step_whose_attempt_died_then_undoes_it(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    _attempt_died(run, "reserve_stock")

    with django_capture_on_commit_callbacks() as callbacks:
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    run.refresh_from_db()
    steps = {s.name: s for s in run.steps.all()}
    assert run.status == RunStatus.COMPENSATING
    reserve = steps["reserve_stock"]
    assert (reserve.status, reserve.attempts) == (StepStatus.RUNNING, 1)  # the lost attempt, on record
    assert [(f["code"], f["attempt"]) for f in reserve.failures] == [("attempt_in_doubt", 1)]
    assert steps["charge_payment"].status == StepStatus.SKIPPED  # never started: skipped as before
    assert steps["create_order"].status == StepStatus.SUCCEEDED  # not undone before reserve_stock settles
    assert len(publishes(callbacks)) == 1  # the attempt that settles it

    # It runs although the run compensates, through the fence the cancel put up, with the same key.
    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-2")
    assert claim.outcome is Outcome.RUN
    assert claim.context.idempotency_key == f"{run.pk}:reserve_stock"
    assert claim.context.attempt == 2

    with django_capture_on_commit_callbacks() as callbacks:
        assert services.step_succeed(run_id=run.pk, step="reserve_stock", output={"r": 1}, claim=claim) is False
    steps = dict(run.steps.values_list("name", "status"))
    assert steps["reserve_stock"] == StepStatus.COMPENSATING  # undone first, in its place
    assert steps["create_order"] == StepStatus.SUCCEEDED
    assert run.events.get(type=EventType.STEP_SUCCEEDED, step="reserve_stock").data["late"] is True
    assert len(publishes(callbacks)) == 1  # its compensation


def test_a_settling_attempt_is_retried_on_a_transient_failure_and_a_refusal_ends_it(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    _attempt_died(run, "reserve_stock")
    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-2")
    timeout = Failure.without_exception("TimeoutError", "inventory did not answer", code="", attempt=2)
    with django_capture_on_commit_callbacks():
        outcome = services.step_fail_attempt(
            run_id=run.pk, step="reserve_stock", error=timeout, retry_in=0.1, claim=claim
        )
    assert outcome is Outcome.RETRY  # its outcome is still unknown: tried again, the run compensating or not

    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-3")
    assert claim.outcome is Outcome.RUN
    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.step_fail_attempt(
            run_id=run.pk, step="reserve_stock", error=_refused(3), retry_in=None, claim=claim
        )
    assert outcome is Outcome.STOP
    run.refresh_from_db()
    steps = dict(run.steps.values_list("name", "status"))
    assert steps["reserve_stock"] == StepStatus.FAILED  # refused: it did nothing, nothing to undo
    assert steps["create_order"] == StepStatus.COMPENSATING  # and the compensation goes on


def test_a_settling_step_gets_a_budget_of_its_own_and_fails_when_every_attempt_of_it_vanished(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    for _ in range(3):  # the step's whole budget (3 attempts in the test settings) started and vanished
        _attempt_died(run, "reserve_stock")
    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")
    assert run.steps.get(name="reserve_stock").attempts == 3

    for attempt in (4, 5, 6):  # settling: three more, each lost too
        claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id=f"reserve_stock-{attempt}")
        assert claim.outcome is Outcome.RUN
        assert claim.context.attempt == attempt
        leases.forget(run.pk, "reserve_stock")
    with django_capture_on_commit_callbacks():
        claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-7")

    assert claim.outcome is Outcome.FAILED  # not a loop
    run.refresh_from_db()
    assert run.steps.get(name="reserve_stock").status == StepStatus.FAILED
    assert run.steps.get(name="create_order").status == StepStatus.COMPENSATING


def test_a_step_whose_last_attempt_vanished_with_its_budget_stops_its_run_in_doubt_not_failed(
    django_capture_on_commit_callbacks,
) -> None:
    """Attempts 1 and 2 failed (on record, retried) and attempt 3, the last of the budget, started and never
    reported back. It may have acted, so the step does not fail (a failed step is never undone): the run
    compensates with the step in doubt, settled with the same key and undone if it succeeded."""
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses={**ORDER_CREATED, "reserve_stock": "running"})
    run.steps.filter(name="reserve_stock").update(attempts=2)
    leases.client().set(leases.counter_key(run.pk, "reserve_stock"), 3)

    with django_capture_on_commit_callbacks() as callbacks:
        claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-4")

    assert claim.outcome is Outcome.STOP  # the run compensates already: no errback is due
    run.refresh_from_db()
    assert (run.status, run.error["step"], run.error["code"]) == (
        RunStatus.COMPENSATING,
        "reserve_stock",
        "attempts_lost",
    )
    steps = {s.name: s for s in run.steps.all()}
    reserve = steps["reserve_stock"]
    assert (reserve.status, reserve.attempts) == (StepStatus.RUNNING, 3)  # the lost attempt, on record
    assert [(f["code"], f["attempt"]) for f in reserve.failures] == [("attempt_in_doubt", 3)]
    assert steps["charge_payment"].status == StepStatus.SKIPPED
    assert steps["create_order"].status == StepStatus.SUCCEEDED  # undone once reserve_stock settled
    assert len(publishes(callbacks)) == 1  # the attempt that settles it

    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-4")
    assert claim.outcome is Outcome.RUN  # a budget of its own
    assert (claim.context.idempotency_key, claim.context.attempt) == (f"{run.pk}:reserve_stock", 4)
    with django_capture_on_commit_callbacks():
        assert services.step_succeed(run_id=run.pk, step="reserve_stock", output={"r": 1}, claim=claim) is False
    steps = dict(run.steps.values_list("name", "status"))
    assert (steps["reserve_stock"], steps["create_order"]) == (StepStatus.COMPENSATING, StepStatus.SUCCEEDED)


def test_a_step_whose_budget_vanished_after_the_pivot_fails_for_a_person() -> None:
    """After the pivot nothing is undone: the step gives up as before (the run then waits for a person, whose
    retry calls it again with the same key)."""
    run = forward_failed_run(status=RunStatus.EXECUTING)
    run.steps.filter(name="ship").update(status=StepStatus.RUNNING, attempts=1)  # attempt 1 failed, retried
    leases.client().set(leases.counter_key(run.pk, "ship"), 2)  # attempt 2, the last, started and vanished

    claim = services.step_claim(run_id=run.pk, step="ship", task_id="ship-3")

    assert claim.outcome is Outcome.FAILED
    ship = run.steps.get(name="ship")
    assert (ship.status, ship.attempts, ship.error["code"]) == (StepStatus.FAILED, 2, "attempts_lost")


def test_a_step_nobody_started_is_still_skipped_when_its_run_is_cancelled(django_capture_on_commit_callbacks) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    assert run.steps.get(name="reserve_stock").status == StepStatus.SKIPPED
    assert services.step_claim(run_id=run.pk, step="reserve_stock", task_id="t").outcome is Outcome.STOP


def test_a_cancelled_pending_run_whose_first_attempt_died_compensates_instead_of_ending_cancelled(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.PENDING)
    _attempt_died(run, "create_order")

    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    assert run.steps.get(name="create_order").status == StepStatus.RUNNING


def test_a_retry_of_a_stopped_run_that_finds_a_lost_later_attempt_settles_the_step(
    django_capture_on_commit_callbacks,
) -> None:
    """Attempt 1 failed (on record, a retry due), attempt 2 started and died, then the run compensated: the
    retry's message settles the step instead of abandoning it."""
    run = _compensating_with_a_lost_second_attempt()

    with django_capture_on_commit_callbacks() as callbacks:
        claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-3")

    assert claim.outcome is Outcome.STOP
    step = run.steps.get(name="reserve_stock")
    assert (step.status, step.attempts) == (StepStatus.RUNNING, 2)
    assert step.failures[-1]["code"] == "attempt_in_doubt"
    assert len(publishes(callbacks)) == 1


def test_the_reaper_settles_a_running_step_of_a_compensating_run_whose_attempt_vanished(
    django_capture_on_commit_callbacks,
) -> None:
    run = _compensating_with_a_lost_second_attempt()
    SagaRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(hours=1))

    with django_capture_on_commit_callbacks() as callbacks:
        outcome = services.run_redrive(run_id=run.pk)

    assert "move compensation on (reserve_stock)" in outcome.action
    step = run.steps.get(name="reserve_stock")
    assert (step.status, step.attempts) == (StepStatus.RUNNING, 2)
    assert step.failures[-1]["code"] == "attempt_in_doubt"
    assert len(publishes(callbacks)) == 1


def test_the_errback_of_an_attempt_killed_after_its_run_stopped_settles_the_step(
    django_capture_on_commit_callbacks,
) -> None:
    run = _compensating_with_a_lost_second_attempt()

    with django_capture_on_commit_callbacks() as callbacks:
        services.run_on_step_failure(run_id=run.pk, step="reserve_stock")

    step = run.steps.get(name="reserve_stock")
    assert (step.status, step.attempts) == (StepStatus.RUNNING, 2)
    assert [f["code"] for f in step.failures] == ["attempt_in_doubt"]
    assert len(publishes(callbacks)) == 1


def _redis_lost_its_data(seconds_ago: float) -> None:
    """Redis started empty ``seconds_ago``, with every lease and attempt count it held before."""
    leases.client().set(leases.memory_key(), repr(time.time() - seconds_ago))


def _order_created(seconds_ago: float) -> SagaRun:
    """An executing run begun a minute ago whose create_order succeeded ``seconds_ago`` (reserve_stock was
    published then)."""
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    SagaRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=60))
    run.steps.filter(name="create_order").update(finished_at=timezone.now() - timedelta(seconds=seconds_ago))
    run.refresh_from_db()
    return run


def test_a_step_published_before_redis_lost_its_data_is_settled_when_its_run_is_cancelled(
    django_capture_on_commit_callbacks,
) -> None:
    run = _order_created(seconds_ago=30)
    _redis_lost_its_data(seconds_ago=10)  # an attempt of reserve_stock may have started: its lease and count are gone

    with django_capture_on_commit_callbacks() as callbacks:
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    steps = {s.name: s for s in run.steps.all()}
    reserve = steps["reserve_stock"]
    assert (reserve.status, reserve.attempts) == (StepStatus.RUNNING, 1)
    assert [(f["code"], f["attempt"]) for f in reserve.failures] == [("attempt_in_doubt", 1)]
    assert steps["charge_payment"].status == StepStatus.SKIPPED  # its dependency never succeeded: never published
    assert len(publishes(callbacks)) == 1  # the attempt that settles reserve_stock
    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-2")
    assert (claim.outcome, claim.context.attempt) == (Outcome.RUN, 2)


def test_a_step_published_after_redis_lost_its_data_is_skipped_as_before(django_capture_on_commit_callbacks) -> None:
    run = _order_created(seconds_ago=5)
    _redis_lost_its_data(seconds_ago=10)  # reserve_stock's count is kept since: none started

    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    assert run.steps.get(name="reserve_stock").status == StepStatus.SKIPPED


def test_a_redis_without_its_mark_counts_as_having_lost_its_data_and_gets_one(
    django_capture_on_commit_callbacks,
) -> None:
    run = _order_created(seconds_ago=30)
    leases.client().delete(leases.memory_key())  # flushed, restarted empty: not even the mark is left

    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    assert run.steps.get(name="reserve_stock").status == StepStatus.RUNNING  # in doubt
    assert abs(leases.memory_since() - time.time()) < 60  # marked by the first to ask


def test_the_reaper_marks_a_redis_that_lost_its_data() -> None:
    leases.client().delete(leases.memory_key())

    recovery.reap()

    assert leases.client().get(leases.memory_key()) is not None


def test_a_success_after_its_step_was_skipped_is_logged_as_an_error(caplog) -> None:
    run = SagaRunFactory(status=RunStatus.COMPENSATING, step_statuses={**ORDER_CREATED, "reserve_stock": "skipped"})

    assert services.step_succeed(run_id=run.pk, step="reserve_stock", output={"r": 1}) is False

    assert run.steps.get(name="reserve_stock").status == StepStatus.SKIPPED
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [
        f"saga run {run.pk}: step reserve_stock succeeded after it was skipped; its effect stands unrecorded"
    ]


def _attempt_unreported(run: SagaRun, step: str, capture) -> None:
    """An attempt of ``step`` acts and its task fails before the runner can record the outcome (the database went
    away): the errback records the failure it can (`UnrecordedFailure`) and, the run executing, a retry."""
    claim = services.step_claim(run_id=run.pk, step=step, task_id=f"{step}-1")
    assert claim.outcome is Outcome.RUN
    with capture():
        services.run_on_step_failure(run_id=run.pk, step=step)
    step_run = run.steps.get(name=step)
    assert (step_run.status, step_run.failures[-1]["type"]) == (
        StepStatus.RUNNING,
        "sagas.exceptions.UnrecordedFailure",
    )


def test_a_step_whose_unreported_attempt_waits_for_its_retry_when_the_run_stops_is_settled_not_abandoned(
    django_capture_on_commit_callbacks,
) -> None:
    """What the short infrastructure soak found: a BookTrip seat was held by an attempt whose outcome a cut
    connection kept from being recorded; the errback scheduled its retry, a sibling branch was refused, and the
    retry found the run compensating and gave the step up as `run_stopped`. A failed step is never undone: the
    seat stayed held."""
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    _attempt_unreported(run, "reserve_stock", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")

    with django_capture_on_commit_callbacks() as callbacks:
        claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-2")  # the retry

    assert claim.outcome is Outcome.STOP
    reserve = run.steps.get(name="reserve_stock")
    assert reserve.status == StepStatus.RUNNING
    assert [f["code"] for f in reserve.failures][-1] == "attempt_in_doubt"
    assert len(publishes(callbacks)) == 1  # the attempt that settles it
    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-2")
    assert claim.outcome is Outcome.RUN
    assert claim.context.idempotency_key == f"{run.pk}:reserve_stock"
    with django_capture_on_commit_callbacks():
        assert services.step_succeed(run_id=run.pk, step="reserve_stock", output={"r": 1}, claim=claim) is False
    steps = dict(run.steps.values_list("name", "status"))
    assert (steps["reserve_stock"], steps["create_order"]) == (StepStatus.COMPENSATING, StepStatus.SUCCEEDED)


def test_the_reaper_settles_a_step_whose_unreported_attempt_lost_its_retry_when_the_run_stopped(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    _attempt_unreported(run, "reserve_stock", django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks():
        services.run_cancel(run_id=run.pk, reason="customer called", actor="kim")
    # The retry's message was lost: nothing happened since, and the retry is long overdue.
    history.make_stale(run, timedelta(hours=1))
    reserve = run.steps.get(name="reserve_stock")
    an_hour_ago = (timezone.now() - timedelta(hours=1)).isoformat()
    run.steps.filter(pk=reserve.pk).update(failures=[{**f, "at": an_hour_ago} for f in reserve.failures])

    with django_capture_on_commit_callbacks() as callbacks:
        (outcome,) = recovery.reap()

    reserve = run.steps.get(name="reserve_stock")
    assert reserve.status == StepStatus.RUNNING  # not failed: settled
    assert [f["code"] for f in reserve.failures][-1] == "attempt_in_doubt"
    assert len(publishes(callbacks)) == 1, outcome.action


def test_an_errback_for_an_unreported_attempt_past_the_deadline_times_the_run_out_with_the_step_in_doubt(
    django_capture_on_commit_callbacks,
) -> None:
    run = SagaRunFactory(status=RunStatus.EXECUTING, step_statuses=ORDER_CREATED)
    claim = services.step_claim(run_id=run.pk, step="reserve_stock", task_id="reserve_stock-1")
    assert claim.outcome is Outcome.RUN
    SagaRun.objects.filter(pk=run.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    with django_capture_on_commit_callbacks() as callbacks:
        services.run_on_step_failure(run_id=run.pk, step="reserve_stock")  # no retry after the deadline

    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATING
    assert run.events.filter(type=EventType.SAGA_TIMED_OUT).exists()
    reserve = run.steps.get(name="reserve_stock")
    assert (reserve.status, [f["code"] for f in reserve.failures]) == (StepStatus.RUNNING, ["", "attempt_in_doubt"])
    assert len(publishes(callbacks)) == 1
