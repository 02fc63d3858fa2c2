"""The only writers of run and step state (ARCHITECTURE §6.3): every change is a guarded update plus an event."""

from sagas.services.operator import run_cancel, run_resolve, run_retry
from sagas.services.runs import (
    definition_sync,
    run_compensate,
    run_complete,
    run_finish_compensation,
    run_start,
    saga_for,
)
from sagas.services.steps import (
    Claim,
    ClaimOutcome,
    compensation_claim,
    compensation_fail_attempt,
    compensation_succeed,
    step_claim,
    step_fail_attempt,
    step_succeed,
)

__all__ = [
    "Claim",
    "ClaimOutcome",
    "compensation_claim",
    "compensation_fail_attempt",
    "compensation_succeed",
    "definition_sync",
    "run_cancel",
    "run_compensate",
    "run_complete",
    "run_finish_compensation",
    "run_resolve",
    "run_retry",
    "run_start",
    "saga_for",
    "step_claim",
    "step_fail_attempt",
    "step_succeed",
]
