"""A delayed start on real workers: it survives the loss of the worker holding its first message."""

from __future__ import annotations

import time

from django.utils import timezone

from sagas.models import SagaRun
from sagas.states import RunStatus
from tests.faults.conftest import FaultLab
from tests.faults.invariants import check_transfers
from tests.testapp.sagas import Transfer

AMOUNT = 125


def test_a_delayed_start_survives_a_worker_killed_before_its_time(lab: FaultLab, bank: dict) -> None:
    first = lab.start_worker()
    run = Transfer.start({"from": "alice", "to": "bob", "amount": AMOUNT}, countdown=10)
    start_at = SagaRun.objects.get(pk=run.pk).start_at
    time.sleep(1.5)  # the worker holds the first step's message, unacknowledged, until the run's time
    assert timezone.now() < start_at  # still before it: the kill below comes first
    assert SagaRun.objects.get(pk=run.pk).status == RunStatus.PENDING
    first.kill()  # SIGKILL: the held message is neither run nor acknowledged
    lab.start_worker()

    (run,) = lab.settle([run])  # the reaper re-drives it once its time and the lease have passed

    assert run.status == RunStatus.COMPLETED
    assert run.start_at == start_at
    assert run.started_at >= start_at  # no step ran before its time
    check_transfers([run], bank)
