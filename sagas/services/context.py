"""What a claim hands the runner: the outcome, and the context a step's function receives."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sagas.definitions import StepContext
from sagas.models import SagaRun, SagaStepRun
from sagas.services._core import FORWARD_DONE

if TYPE_CHECKING:
    from sagas.definitions import Saga


class ClaimOutcome(StrEnum):
    RUN = "run"  # call the user's function with the claim's context
    DONE = "done"  # already done (a redelivery): skip the body, let the chain go on
    STOP = "stop"  # the run is no longer in a state for this: skip the body and stop the chain
    GAVE_UP = "gave_up"  # the attempt budget was spent by attempts that never reported back


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    saga: type[Saga] | None = None
    context: StepContext | None = None
    error: dict[str, Any] | None = None


def step_context(run: SagaRun, step_run: SagaStepRun, *, compensation: bool) -> StepContext:
    """The context of one attempt: payload merged with the outputs of completed steps, and the key."""
    results = dict(run.steps.filter(status__in=FORWARD_DONE).order_by("index").values_list("name", "output"))
    payload = dict(run.payload)
    for output in results.values():
        if isinstance(output, dict):
            payload.update(output)
    key = f"{run.pk}:{step_run.name}"
    return StepContext(
        saga_id=run.pk,
        saga_name=run.saga_name,
        step=step_run.name,
        payload=payload,
        results=results,
        idempotency_key=f"{key}:compensate" if compensation else key,
        attempt=step_run.compensation_attempts if compensation else step_run.attempts,
        result=step_run.output if compensation else None,
    )


def lost_attempts_error(step_run: SagaStepRun, attempts: int, what: str) -> dict[str, Any]:
    """The error of a step whose attempts all vanished (worker killed or message lost each time)."""
    return {
        "type": "sagas.WorkerLost",
        "message": f"The {what} of step {step_run.name!r} was started {attempts} times and never reported "
        "back (worker killed or message lost each time); giving up instead of trying again.",
        "class": "unknown",
        "code": "attempts_lost",
        "attempt": attempts,
        "traceback": "",
    }
