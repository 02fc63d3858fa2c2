"""The only writers of run and step state: each change is a guarded update plus its events (docs/internals.md)."""

from sagas.services._core import saga_for
from sagas.services.circuit import record_breaker_change
from sagas.services.compensation import (
    compensation_claim,
    compensation_fail_attempt,
    compensation_succeed,
)
from sagas.services.context import Claim
from sagas.services.operator import run_cancel, run_resolve, run_retry
from sagas.services.redrive import Redrive, run_park, run_redrive
from sagas.services.runs import (
    definition_sync,
    run_check_deadline,
    run_on_step_failure,
    run_start,
    run_start_or_existing,
)
from sagas.services.steps import step_claim, step_fail_attempt, step_succeed
from sagas.services.waits import run_check_wait, run_child_settled, run_signal, wait_begin

__all__ = [
    "Claim",
    "Redrive",
    "compensation_claim",
    "compensation_fail_attempt",
    "compensation_succeed",
    "definition_sync",
    "record_breaker_change",
    "run_cancel",
    "run_check_deadline",
    "run_check_wait",
    "run_child_settled",
    "run_on_step_failure",
    "run_park",
    "run_redrive",
    "run_resolve",
    "run_retry",
    "run_signal",
    "run_start",
    "run_start_or_existing",
    "saga_for",
    "step_claim",
    "step_fail_attempt",
    "step_succeed",
    "wait_begin",
]
