"""A step whose effect was committed but whose outcome was never recorded, in a run that then compensates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sagas.models import SagaRun
from sagas.states import RunStatus, StepStatus
from tests.faults.conftest import FaultLab
from tests.testapp.models import calls_of
from tests.testapp.sagas import Diamond
from tests.worker import wait_until

# A reproduction of an open bug of issue 19, run by `make test-chaos-infra` with the soak that found it; a strict
# xfail, so it fails the day the framework is fixed, and is then to be made a plain regression test of make test.
pytestmark = pytest.mark.skipif(
    not os.environ.get("SAGAS_CHAOS_INFRA"), reason="an open issue-19 reproduction: make test-chaos-infra runs it"
)


@pytest.mark.xfail(
    strict=True,
    reason="issue 19, found by the infrastructure soak: a step whose attempt committed its effect and died before "
    "recording it stays pending; a compensation skips a pending step nobody holds, so the effect is never undone",
)
def test_a_branch_killed_after_its_effect_is_undone_when_the_run_compensates(lab: FaultLab, tmp_path: Path) -> None:
    if lab.broker.kind == "rabbitmq":
        pytest.skip("RabbitMQ gives the dead worker's message back at once, so north runs again before the refusal")
    killed = tmp_path / "killed"
    first = lab.start_worker(concurrency=1, SAGAS_FAULT_KILL_WORKER_AFTER_ACTION="north",
                             SAGAS_FAULT_MARKER=str(killed))  # fmt: skip
    run = Diamond.start({"fail_branch": "east"})
    wait_until(killed.exists, first, "north's worker to die right after north's action")
    # North's message stays unacknowledged with the dead worker; another takes east (refused) and west. No reaper
    # runs until the run compensates, so it is the refusal, not a re-drive of north, that decides.
    second = lab.start_worker()
    wait_until(lambda: SagaRun.objects.get(pk=run.pk).status != RunStatus.EXECUTING, second, "the run to compensate")
    (run,) = lab.settle([run])

    assert run.status == RunStatus.COMPENSATED
    assert calls_of(run, "north") == 1  # north's effect happened
    assert run.steps.get(name="north").status == StepStatus.COMPENSATED
    assert calls_of(run, "north", ":compensate") == 1  # and is undone
