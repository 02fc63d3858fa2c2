"""A step whose effect was committed but whose outcome was never recorded, in a run that then compensates."""

from __future__ import annotations

from pathlib import Path

import pytest

import sagas
from sagas import leases
from sagas.conf import sagas_settings
from sagas.models import SagaEvent, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.faults.conftest import FaultLab
from tests.testapp.models import calls_of
from tests.testapp.sagas import Diamond, RetriedLate, Traced
from tests.worker import wait_until


def _north_killed_after_its_action(lab: FaultLab, tmp_path: Path) -> SagaRun:
    """A Diamond run whose east branch will be refused, and whose north branch's worker died right after north's
    action committed, before its outcome was recorded."""
    if lab.broker.kind == "rabbitmq":
        pytest.skip("RabbitMQ gives the dead worker's message back at once, so north runs again before the refusal")
    killed = tmp_path / "killed"
    first = lab.start_worker(concurrency=1, SAGAS_FAULT_KILL_WORKER_AFTER_ACTION="north",
                             SAGAS_FAULT_MARKER=str(killed))  # fmt: skip
    run = Diamond.start({"fail_branch": "east"})
    wait_until(killed.exists, first, "north's worker to die right after north's action")
    return run


def test_a_branch_killed_after_its_effect_is_undone_when_the_run_compensates(lab: FaultLab, tmp_path: Path) -> None:
    run = _north_killed_after_its_action(lab, tmp_path)
    # North's message stays unacknowledged with the dead worker; another takes east (refused) and west. No reaper
    # runs until the run compensates, so it is the refusal, not a re-drive of north, that decides.
    second = lab.start_worker()
    wait_until(lambda: SagaRun.objects.get(pk=run.pk).status != RunStatus.EXECUTING, second, "the run to compensate")
    (run,) = lab.settle([run])

    # North's effect happened in the killed attempt; the run, compensating, ran it once more with the same key to
    # learn its outcome (what the participant contract's idempotency makes harmless), then undid it.
    _north_settled_then_undone(run)
    events = list(run.events.filter(step="north").order_by("seq").values_list("type", flat=True))
    assert events[:4] == ["StepStarted", "StepAttemptFailed", "StepStarted", "StepSucceeded"]  # attempts 1 and 2


def test_a_branch_killed_after_its_effect_is_undone_although_redis_then_lost_its_count(
    lab: FaultLab, tmp_path: Path
) -> None:
    run = _north_killed_after_its_action(lab, tmp_path)
    # Redis (the leases' store) restarts empty: north's lease and attempt count are gone, and so is the mark of
    # when it began keeping them. Nothing in Redis shows that an attempt of north ever started.
    store = leases.client()
    store.delete(leases.memory_key(), *store.scan_iter(match=f"{sagas_settings.KEY_PREFIX}:run:{{{run.pk}}}:*"))
    assert leases.started(run.pk, ["north"]) == {"north": 0}
    lab.start_worker()
    (run,) = lab.settle([run])

    # North was published before the loss, so the compensation could not tell it never ran: in doubt, it ran once
    # more with the same key and was undone.
    _north_settled_then_undone(run)
    # No success came back for a step already skipped (logged as an error when it does): in no worker's whole log.
    logs = [worker.log_path.read_text(errors="replace") for worker in lab.workers]
    assert any(str(run.pk) in log for log in logs)  # these are the logs of the workers that ran it
    assert not [log for log in logs if "succeeded after it was skipped" in log]


def test_a_step_killed_after_its_effect_on_its_last_attempt_is_undone_not_failed(lab: FaultLab, tmp_path: Path) -> None:
    """What the infrastructure soak found (seed of CI run 28): a step's first two attempts failed (retried), its
    third and last acted, and its worker died before recording it. The budget is spent, but the last attempt may
    have acted: the step is in doubt, not failed, so the run compensates it too."""
    killed = tmp_path / "killed"
    first = lab.start_worker(concurrency=1, SAGAS_FAULT_KILL_WORKER_AFTER_ACTION="second",
                             SAGAS_FAULT_MARKER=str(killed))  # fmt: skip
    run = Traced.start({"fail_times": 2})  # `second` allows 3 attempts
    wait_until(killed.exists, first, "second's worker to die right after its third attempt acted")
    lab.start_worker()
    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPENSATED
    assert (run.error["step"], run.error["code"]) == ("second", "attempts_lost")
    second = run.steps.get(name="second")
    assert second.status == StepStatus.COMPENSATED
    assert [(f["code"], f["attempt"]) for f in second.failures] == [
        ("", 1),
        ("", 2),
        ("attempt_in_doubt", 3),
    ]
    # Attempt 4 ran with the same key to learn what attempt 3 did (the participant answers from its record),
    # then the compensation undid it, once; `third` never started.
    assert calls_of(run, "second") == 4
    assert calls_of(run, "second", ":compensate") == 1
    assert calls_of(run, "first", ":compensate") == 1
    assert calls_of(run, "third") == 0


def test_a_step_whose_outcome_went_unrecorded_is_undone_when_its_run_stops_before_its_retry(
    lab: FaultLab, tmp_path: Path
) -> None:
    """What the short infrastructure soak found on the compensation-lease fix: a BookTrip seat was held by an
    attempt whose success a cut connection kept from being recorded. The errback, the run still executing, recorded
    the failure it could see and scheduled a retry; then a sibling branch was refused, and the retry found the run
    compensating and gave the step up (`run_stopped`). A failed step is never undone: the seat stayed held."""
    worker = lab.start_worker(SAGAS_FAULT_LOSE_OUTCOME_OF="second", SAGAS_FAULT_MARKER=str(tmp_path / "lost"))
    run = RetriedLate.start({})
    reported = SagaEvent.objects.filter(run=run, type=EventType.STEP_ATTEMPT_FAILED, step="second")
    wait_until(reported.exists, worker, "the errback to report second's first attempt")
    assert reported.get().data["failure"]["type"] == "sagas.exceptions.UnrecordedFailure"
    sagas.cancel(run.pk, reason="customer called", actor="kim")  # before the retry, due in 3 s
    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPENSATED
    second = run.steps.get(name="second")
    assert second.status == StepStatus.COMPENSATED
    assert [f["code"] for f in second.failures] == ["", "attempt_in_doubt"]
    # Attempt 2 ran with the same key to learn what attempt 1 did, then the compensation undid it, once.
    assert calls_of(run, "second") == 2
    assert calls_of(run, "second", ":compensate") == 1
    assert calls_of(run, "first", ":compensate") == 1
    assert calls_of(run, "third") == 0


def _north_settled_then_undone(run: SagaRun) -> None:
    assert run.status == RunStatus.COMPENSATED
    assert calls_of(run, "north") == 2
    north = run.steps.get(name="north")
    assert north.status == StepStatus.COMPENSATED
    assert [f["code"] for f in north.failures] == ["attempt_in_doubt"]
    assert calls_of(run, "north", ":compensate") == 1
