"""Helpers for testing sagas in a project's own pytest suite: are they compensable, do their compensations
undo exactly once."""

from sagas.testing.compensation import (
    CompensationCheck,
    CompensationDefect,
    assert_compensable,
    check_compensation,
    step_kind,
)

__all__ = ["CompensationCheck", "CompensationDefect", "assert_compensable", "check_compensation", "step_kind"]
