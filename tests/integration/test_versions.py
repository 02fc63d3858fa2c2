"""Versions that coexist, on a real worker: a run finishes under the version it started with."""

from __future__ import annotations

import sagas
from sagas.states import RunStatus, StepStatus
from tests.testapp.models import calls_of
from tests.testapp.sagas import Versioned, VersionedV1
from tests.worker import WorkerProcess, wait_for_run


def test_a_version_1_run_finishes_with_version_1_steps_while_version_2_starts_new_runs(worker: WorkerProcess) -> None:
    assert sagas.get_saga("tests.versioned") is Versioned  # new runs start under version 2
    old = VersionedV1.start({})  # a run stored before version 2 was deployed
    new = Versioned.start({})

    old, new = wait_for_run(old, worker), wait_for_run(new, worker)

    assert (old.version, old.status) == (1, RunStatus.COMPLETED)
    assert list(old.steps.order_by("index").values_list("name", "status")) == [
        ("first", StepStatus.SUCCEEDED),
        ("second", StepStatus.SUCCEEDED),
        ("only_in_v1", StepStatus.SUCCEEDED),
    ]
    assert old.steps.get(name="second").output == {"second_by": "version 1"}
    assert (calls_of(old, "second"), calls_of(new, "second")) == (1, 1)

    assert (new.version, new.status) == (2, RunStatus.COMPLETED)
    assert list(new.steps.order_by("index").values_list("name", flat=True)) == ["first", "second"]
    assert new.steps.get(name="second").output == {"second_by": "version 2"}
