"""Helpers for testing sagas in a project's own pytest suite: are they compensable, do their compensations undo
exactly once, and how does a run end on a real worker when a step fails (fixtures: sagas.testing.pytest_plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagas import lazy

# Imported on first use (PEP 562): the test workers' entry point (sagas.testing.worker_main) loads this package
# before Django is set up, when the ORM these helpers use cannot be imported yet.
_EXPORTS = {
    "CompensationCheck": "sagas.testing.compensation",
    "CompensationDefect": "sagas.testing.compensation",
    "assert_compensable": "sagas.testing.compensation",
    "check_compensation": "sagas.testing.compensation",
    "step_kind": "sagas.testing.compensation",
    "SagaOutcome": "sagas.testing.runs",
    "run_saga": "sagas.testing.runs",
    "SagaWorker": "sagas.testing.worker",
}

__all__ = [
    "CompensationCheck",
    "CompensationDefect",
    "SagaOutcome",
    "SagaWorker",
    "assert_compensable",
    "check_compensation",
    "run_saga",
    "step_kind",
]


__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from sagas.testing.compensation import (
        CompensationCheck,
        CompensationDefect,
        assert_compensable,
        check_compensation,
        step_kind,
    )
    from sagas.testing.runs import SagaOutcome, run_saga
    from sagas.testing.worker import SagaWorker
