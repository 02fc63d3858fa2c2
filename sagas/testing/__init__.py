"""Helpers for testing sagas in a project's own pytest suite: are they compensable, do their compensations undo
exactly once, and how does a run end on a real worker when a step fails (fixtures: sagas.testing.pytest_plugin)."""

from sagas.testing.compensation import (
    CompensationCheck,
    CompensationDefect,
    assert_compensable,
    check_compensation,
    step_kind,
)
from sagas.testing.runs import SagaOutcome, run_saga
from sagas.testing.worker import SagaWorker

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
