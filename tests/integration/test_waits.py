"""Durable waits on a real worker: a Wait holds no worker until its signal, fails after its timeout."""

from __future__ import annotations

from datetime import timedelta

import pytest

import sagas
from sagas.conf import sagas_settings
from sagas.diagnose import diagnose
from sagas.models import SagaRun
from sagas.selectors import stuck
from sagas.states import EventType, RunStatus, StepStatus
from tests.testapp.models import calls_of
from tests.testapp.sagas import Approval, QuickApproval, VettedApproval
from tests.worker import WorkerProcess, wait_for_run, wait_until


def _waiting(run: SagaRun, worker: WorkerProcess, step: str = "approved") -> SagaRun:
    wait_until(lambda: run.steps.get(name=step).status == StepStatus.WAITING, worker, f"step {step} to wait")
    run.refresh_from_db()
    return run


def test_a_wait_completed_by_a_signal_gives_its_data_to_the_steps_after_it(worker: WorkerProcess) -> None:
    run = _waiting(Approval.start({"order": 5}), worker)
    assert run.status == RunStatus.EXECUTING
    assert not stuck(SagaRun.objects.filter(pk=run.pk)).exists()

    sagas.signal(run.pk, "approved", {"tracking": "APPROVED-BY-ANN"}, actor="ann", reason="looks fine")

    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPLETED
    approved = run.steps.get(name="approved")
    assert (approved.status, approved.output, approved.attempts) == (
        StepStatus.SUCCEEDED,
        {"tracking": "APPROVED-BY-ANN"},
        0,
    )
    assert run.steps.get(name="after").output == {"notified_with": "APPROVED-BY-ANN"}
    received = run.events.get(type=EventType.SIGNAL_RECEIVED)
    assert (received.actor, received.data["reason"]) == ("ann", "looks fine")

    # The same signal again is a no-op; another one is refused.
    assert sagas.signal(run.pk, "approved", {"tracking": "APPROVED-BY-ANN"}, actor="ann").status == RunStatus.COMPLETED
    with pytest.raises(sagas.InvalidTransition, match="not waiting for signal 'approved'"):
        sagas.signal(run.pk, "approved", {"tracking": "ANOTHER"}, actor="bob")
    assert run.events.filter(type=EventType.SIGNAL_RECEIVED).count() == 1


def test_a_duplicate_signal_while_the_run_goes_on_is_a_no_op(worker: WorkerProcess) -> None:
    run = _waiting(Approval.start({}), worker)
    sagas.signal(run.pk, "approved", actor="ann")
    sagas.signal(run.pk, "approved", actor="ann")  # the same: a retry of a webhook, say

    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPLETED
    assert calls_of(run, "after") == 1
    assert run.steps.get(name="approved").output == {}


def test_a_misdirected_signal_is_refused_and_changes_nothing(worker: WorkerProcess) -> None:
    run = _waiting(Approval.start({}), worker)
    events = run.events.count()
    with pytest.raises(sagas.InvalidTransition, match="has no Wait step 'rejected'"):
        sagas.signal(run.pk, "rejected", actor="ann")
    with pytest.raises(sagas.InvalidTransition, match="has no Wait step 'reserve'"):
        sagas.signal(run.pk, "reserve", actor="ann")
    with pytest.raises(sagas.InvalidPayload, match="must be a JSON object"):
        sagas.signal(run.pk, "approved", ["not", "an", "object"], actor="ann")
    assert run.events.count() == events
    assert run.steps.get(name="approved").status == StepStatus.WAITING
    sagas.cancel(run.pk, reason="not needed", actor="ann")  # a waiting run can be cancelled
    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPENSATED
    assert run.steps.get(name="approved").status == StepStatus.SKIPPED
    assert calls_of(run, "reserve", ":compensate") == 1


def test_a_wait_past_its_timeout_fails_and_the_run_compensates(worker: WorkerProcess) -> None:
    run = wait_for_run(QuickApproval.start({}), worker)

    assert run.status == RunStatus.COMPENSATED
    approved = run.steps.get(name="approved")
    assert (approved.status, approved.error["code"]) == (StepStatus.FAILED, "wait_timeout")
    assert calls_of(run, "reserve", ":compensate") == 1
    assert calls_of(run, "after") == 0
    with pytest.raises(sagas.InvalidTransition, match="not waiting for signal"):
        sagas.signal(run.pk, "approved", actor="late")


def test_a_waiting_run_is_not_diagnosed_as_stuck(worker: WorkerProcess, settings) -> None:
    settings.SAGAS = {**settings.SAGAS, "LEASE_SECONDS": 1}
    run = _waiting(Approval.start({}), worker)
    later = run.updated_at + timedelta(seconds=30)
    assert not [f for f in diagnose(run, now=later, check_workers=False) if f.cause == "lease_expired"]
    assert not stuck(SagaRun.objects.filter(pk=run.pk), later).exists()
    sagas.cancel(run.pk, reason="done with it", actor="ann")
    wait_for_run(run, worker)


def test_signal_data_is_checked_before_anything_changes(worker: WorkerProcess) -> None:
    """A signal that sets a key the run was started with, one that fails the Wait's schema and one over the size
    limit are each refused, with the run still waiting and nothing written; then a good one completes it."""
    run = _waiting(VettedApproval.start({"order": 5, "account_id": 1}), worker)
    written = run.lock_version
    too_big = {"tracking": "APPROVED-1", "notes": "x" * sagas_settings.MAX_PAYLOAD_BYTES}
    refused = [
        ({"tracking": "APPROVED-1", "account_id": 666}, "account_id", "may not set 'account_id'"),
        ({"tracking": "maybe"}, "tracking", "does not match its schema"),
        (too_big, None, "over the limit"),
    ]
    for data, field, message in refused:
        with pytest.raises(sagas.InvalidPayload, match=message) as caught:
            sagas.signal(run.pk, "approved", data, actor="webhook")
        assert caught.value.field == "data"
        assert list(caught.value.errors) == ([field] if field else [])
        run.refresh_from_db()
        assert (run.status, run.lock_version) == (RunStatus.EXECUTING, written)
        assert run.steps.get(name="approved").status == StepStatus.WAITING

    sagas.signal(run.pk, "approved", {"tracking": "APPROVED-BY-ANN", "note": "ok"}, actor="webhook")

    run = wait_for_run(run, worker)
    assert run.status == RunStatus.COMPLETED
    assert run.payload == {"order": 5, "account_id": 1}
    assert run.steps.get(name="after").output == {"notified_with": "APPROVED-BY-ANN"}
