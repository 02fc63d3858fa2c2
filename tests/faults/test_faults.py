"""Real faults on real workers: nothing lost, nothing done twice, every run ends (docs/guarantees.md).

Each test starts its own worker processes on a private Redis broker, injects one fault, lets the reaper run
as beat would, and checks the invariants in tests/faults/invariants.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django_celery_results.models import TaskResult

import sagas
from sagaproject.celery import app as celery_app
from sagas import engine, recovery
from sagas.models import SagaEvent, SagaOutbox, SagaReceipt, SagaRun
from sagas.states import EventType, RunStatus, StepStatus
from tests.faults.conftest import FaultLab, gate_name
from tests.faults.invariants import check_transfers
from tests.testapp.models import Call, Effect, Switch, calls_of
from tests.testapp.sagas import Diamond, Transfer
from tests.worker import wait_until

AMOUNT = 250


def transfer(**payload: object) -> SagaRun:
    return Transfer.start({"from": "alice", "to": "bob", "amount": AMOUNT, **payload})


def gated_transfer(lab: FaultLab, at: str) -> tuple[SagaRun, str]:
    """A transfer that stops at step ``at`` until the test opens its gate; waits until it is there."""
    gate = gate_name()
    Switch.objects.create(name=gate, on=False)
    run = transfer(gate=gate, gate_at=at)
    wait_until(
        lambda: Call.objects.filter(service="gate", key__startswith=f"{run.pk}:{at}").exists(),
        lab.workers[0],
        f"step {at} to reach its gate",
    )
    return run, gate


def open_gate(gate: str) -> None:
    Switch.objects.filter(name=gate).update(on=True)


def test_sigkill_of_a_pool_process_mid_step_redelivers_the_step(lab: FaultLab, bank: dict) -> None:
    lab.start_worker()
    run, gate = gated_transfer(lab, "debit")
    (first,) = Call.objects.filter(service="gate")

    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: Call.objects.filter(service="gate").count() == 2, lab.workers[0], "the step to be redelivered")
    open_gate(gate)
    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPLETED
    debit = run.steps.get(name="debit")
    assert debit.attempts == 2
    # The attempt that ran names the pool process that ran it. The killed one's start was never recorded (its
    # outcome would have recorded it): the redelivery took its lease over at once, and only the count shows it.
    second = Call.objects.filter(service="gate").exclude(pk=first.pk).get()
    assert second.pid != first.pid
    assert (debit.worker, debit.worker_pid) == (lab.workers[0].hostname, second.pid)
    started = SagaEvent.objects.filter(run=run, type=EventType.STEP_STARTED, step="debit")
    assert [(e.data["attempt"], e.data["worker"], e.data["pid"]) for e in started] == [
        (2, lab.workers[0].hostname, second.pid)
    ]
    check_transfers([run], bank)


def test_sigkill_of_the_whole_worker_mid_step_then_a_new_worker(lab: FaultLab, bank: dict) -> None:
    old = lab.start_worker()
    run, gate = gated_transfer(lab, "credit")

    (dead,) = Call.objects.filter(service="gate")  # the killed worker's attempt, at the gate
    old_pids = set(old.pool_pids())
    old.kill()  # its unacknowledged message is stuck in Redis until the visibility timeout
    new = lab.start_worker()
    open_gate(gate)
    (run,) = lab.settle([run])  # the reaper re-drives the step once its attempt is surely lost

    assert run.status == RunStatus.COMPLETED
    credit = run.steps.get(name="credit")
    # Whichever delivery brought it back, the new worker ran the step as attempt 2: the dead attempt is on record
    # as its call (from the killed worker's pool) and the count it took, and its start, never committed, is not.
    assert (credit.attempts, credit.worker) == (2, new.hostname)
    started = SagaEvent.objects.filter(run=run, type=EventType.STEP_STARTED, step="credit")
    assert [(e.data["attempt"], e.data["worker"]) for e in started] == [(2, new.hostname)]
    assert dead.pid in old_pids
    assert Call.objects.filter(service="gate").order_by("started_at").first() == dead
    redriven = SagaEvent.objects.filter(run=run, type=EventType.SAGA_REDRIVEN)
    if lab.broker.kind == "redis":
        # Redis keeps the killed worker's unacknowledged message until its visibility timeout: the reaper re-drives.
        assert [e.data["action"] for e in redriven] == ["run step credit again (attempt lost)"]
    else:
        # RabbitMQ gives the message back as soon as the killed worker's connection closes, and the new worker runs
        # it; the reaper may re-drive it as well, and then its copy found the step's lease held or the step done.
        assert all(e.data["action"] == "run step credit again (attempt lost)" for e in redriven)
    check_transfers([run], bank)  # the effect happened once


def test_kill_after_the_step_committed_but_before_the_ack(lab: FaultLab, bank: dict, tmp_path: Path) -> None:
    lab.start_worker(
        SAGAS_FAULT_KILL_AFTER=engine.step_task_name(Transfer.name, "debit"),
        SAGAS_FAULT_MARKER=str(tmp_path / "killed"),
    )
    run = transfer()
    (run,) = lab.settle([run])

    assert (tmp_path / "killed").exists()  # the worker really died after the commit
    assert run.status == RunStatus.COMPLETED
    debit = run.steps.get(name="debit")
    assert debit.attempts == 1  # the redelivered message found the step done and did not run it again
    check_transfers([run], bank)


def test_the_same_step_message_delivered_twice_to_two_workers_at_once(lab: FaultLab, bank: dict) -> None:
    """The duplicate finds the step's lease held: it does not run the step beside the first delivery, counts no
    attempt, and comes back; by then the step has succeeded and it does nothing."""
    first, second = lab.start_worker(concurrency=1), lab.start_worker(concurrency=1)
    run, gate = gated_transfer(lab, "debit")
    task_id = engine.step_task_id(str(run.pk), "debit", 1)

    celery_app.send_task(engine.step_task_name(Transfer.name, "debit"), args=[str(run.pk), "debit"], task_id=task_id)
    wait_until(
        lambda: TaskResult.objects.filter(task_id=task_id, status="RETRY", result__contains="StepInFlight").exists(),
        first,
        "the duplicate to be told the step is in flight",
    )
    open_gate(gate)
    (run,) = lab.settle([run])

    assert Call.objects.filter(service="gate").count() == 1  # only the first delivery ran the step
    assert run.status == RunStatus.COMPLETED
    assert run.steps.get(name="debit").attempts == 1
    check_transfers([run], bank)
    assert second.process.poll() is None


def test_broker_restart_mid_saga_loses_queued_messages_and_nothing_else(lab: FaultLab, bank: dict) -> None:
    lab.start_worker()
    run, gate = gated_transfer(lab, "debit")
    others = [transfer() for _ in range(3)]

    lab.broker.restart()  # without persistence: every queued and unacknowledged message is gone
    open_gate(gate)
    runs = lab.settle([run, *others])

    assert {r.status for r in runs} == {RunStatus.COMPLETED}
    check_transfers(runs, bank)


def test_flushdb_of_the_broker_while_messages_are_queued(lab: FaultLab, bank: dict) -> None:
    runs = [transfer() for _ in range(4)]  # no worker yet: their messages wait in Redis
    assert lab.broker.queued(celery_app.conf.task_default_queue) > 0

    lab.broker.purge()
    lab.start_worker()
    runs = lab.settle(runs)

    assert {r.status for r in runs} == {RunStatus.COMPLETED}
    assert all(SagaEvent.objects.filter(run=r, type=EventType.SAGA_REDRIVEN).exists() for r in runs)
    check_transfers(runs, bank)


def test_database_connections_terminated_during_a_step(lab: FaultLab, bank: dict) -> None:
    lab.start_worker()
    run, gate = gated_transfer(lab, "credit")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        (terminated,) = cursor.fetchone()
    assert terminated >= 1
    open_gate(gate)
    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPLETED
    assert run.steps.get(name="credit").attempts >= 2
    check_transfers([run], bank)


def test_a_compensation_that_fails_for_good_leaves_the_others_done_once(lab: FaultLab, bank: dict) -> None:
    lab.start_worker()
    run = transfer(fail_at="confirm", undo_fails="debit")
    (run,) = lab.settle([run])

    assert run.status == RunStatus.FAILED
    steps = {s.name: s for s in run.steps.all()}
    assert steps["credit"].status == StepStatus.COMPENSATED
    assert steps["debit"].status == StepStatus.COMPENSATION_FAILED
    check_transfers([run], bank)

    sagas.resolve(run.pk, step="debit", reason="refunded by bank transfer", actor="ivy")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED


def test_an_operator_retry_racing_the_reaper_redrives_once(lab: FaultLab, bank: dict) -> None:
    run = transfer()  # started, then its message dropped before any worker saw it
    lab.broker.purge()
    lab.start_worker()
    time.sleep(2.5)  # let it go stale by the lab's 2 s lease

    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def race(action) -> None:
        barrier.wait()
        try:
            outcomes.append(action())
        except sagas.InvalidTransition as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=race, args=(recovery.reap,)),
        threading.Thread(target=race, args=(lambda: sagas.retry(run.pk, reason="stuck", actor="jo"),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (run,) = lab.settle([run], reap=False)

    assert SagaEvent.objects.filter(run=run, type=EventType.SAGA_REDRIVEN).count() == 1
    assert run.status == RunStatus.COMPLETED
    check_transfers([run], bank)


def test_an_errback_that_never_ran_is_made_up_for_by_the_reaper(lab: FaultLab, bank: dict) -> None:
    lab.start_worker(SAGAS_FAULT_DROP_ERRBACKS="1")
    run = transfer(fail_at="credit")
    wait_until(
        lambda: run.steps.filter(name="credit", status=StepStatus.FAILED).exists(), lab.workers[0], "credit to fail"
    )
    time.sleep(1)  # the errback would have moved it by now; it went where nobody listens
    assert SagaRun.objects.get(pk=run.pk).status == RunStatus.EXECUTING

    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPENSATED
    assert SagaEvent.objects.get(run=run, type=EventType.SAGA_REDRIVEN).data["action"].startswith("compensate")
    check_transfers([run], bank)


def test_a_message_for_a_renamed_task_parks_the_run(lab: FaultLab, bank: dict) -> None:
    run = transfer()  # no worker yet
    lab.broker.empty_queue(celery_app.conf.task_default_queue)  # the deploy dropped what the old code had queued
    old_name = "saga.tests.transfer.withdraw"  # what the step was called before the deploy
    celery_app.send_task(old_name, args=[str(run.pk), "debit"])
    lab.start_worker()

    wait_until(lambda: SagaRun.objects.filter(pk=run.pk).exclude(parked_reason="").exists(), lab.workers[0], "parking")
    run.refresh_from_db()
    assert old_name in run.parked_reason
    assert SagaEvent.objects.filter(run=run, type=EventType.SAGA_PARKED).exists()
    time.sleep(2.5)
    assert recovery.reap() == []  # the reaper leaves a parked run to a person

    sagas.retry(run.pk, reason="the new code knows step debit", actor="kim")
    (run,) = lab.settle([run], reap=False)
    assert run.status == RunStatus.COMPLETED
    check_transfers([run], bank)


def test_a_poison_message_ends_as_a_failure_not_a_loop(lab: FaultLab, bank: dict) -> None:
    lab.start_worker()
    run = transfer(poison="debit")
    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPENSATED
    debit = run.steps.get(name="debit")
    assert debit.status == StepStatus.FAILED
    assert debit.error["code"] == "attempts_lost"
    # Bounded, not a loop: the last attempt of the budget never reported back, so it might have debited and the
    # run settled the step with a budget of its own (same key) before giving up on it; then nothing was debited.
    assert debit.attempts == 2 * Transfer.step("debit").retry.max_attempts
    assert [f["code"] for f in debit.failures][-2:] == ["attempt_in_doubt", "attempts_lost"]
    check_transfers([run], bank)


def test_a_lost_fan_in_is_completed_by_the_reaper(lab: FaultLab, tmp_path: Path) -> None:
    """The last branch to succeed commits and then fails to publish the join (what a lost chord callback is
    to a chord): the rows say the join is ready, and the reaper starts it."""
    lab.start_worker(
        SAGAS_FAULT_LOSE_PUBLISH=engine.step_task_name(Diamond.name, "join"),
        SAGAS_FAULT_MARKER=str(tmp_path / "lost"),
    )
    run = Diamond.start({"branch_sleep": 0.2})
    wait_until(lambda: (tmp_path / "lost").exists(), lab.workers[0], "the join's publish to be lost")
    time.sleep(1)
    assert run.steps.get(name="join").status == StepStatus.PENDING  # nothing else would ever start it

    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPLETED
    redriven = SagaEvent.objects.get(run=run, type=EventType.SAGA_REDRIVEN)
    assert redriven.data["action"] == "publish step join again (message lost)"
    assert all(calls_of(run, name) == 1 for name in ("screen", "north", "east", "west", "join", "last"))


@pytest.mark.parametrize(("when", "deliveries"), [("before", 1), ("after", 2)])
def test_a_worker_killed_around_the_relay_still_delivers_the_message_with_one_effect(
    lab: FaultLab, bank: dict, tmp_path: Path, when: str, deliveries: int
) -> None:
    """Killed between the commit and the relay, the message waits in the outbox for the reaper. Killed after
    publishing but before marking it published, the reaper publishes it again: the receiver gets it twice
    and its receipt skips the second."""
    lab.start_worker(
        SAGAS_FAULT_KILL_AT_RELAY=f"tests.transfer.completed {when}",
        SAGAS_FAULT_MARKER=str(tmp_path / "killed"),
    )
    (run,) = lab.settle([transfer()])
    assert run.status == RunStatus.COMPLETED
    assert (tmp_path / "killed").exists()
    message = SagaOutbox.objects.get(run=run, topic="tests.transfer.completed")
    receipt = SagaReceipt.objects.filter(receiver="tests.transfer_ledger", message_id=message.pk)

    def delivered() -> bool:
        recovery.reap()  # as beat would: relays what the killed process left unpublished
        return receipt.exists() and receipt.get().duplicates == deliveries - 1

    wait_until(delivered, lab.workers[0], f"{deliveries} deliveries of the message")
    assert SagaOutbox.objects.get(pk=message.pk).published_at is not None
    assert Effect.objects.get(key=f"transfer completed:{message.pk}").calls == 1  # the effect, exactly once
    check_transfers([run], bank)
