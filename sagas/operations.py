"""The operator functions of the public API: cancel, retry, resolve and signal a run, with an actor and a reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagas.models import SagaRun
    from sagas.services._core import RunId

# The package imports these functions as it loads, before Django's models are ready (``sagas.retry`` names both
# this function and a module, so it cannot wait for first use): each loads the services when called.


def cancel(run_id: RunId, *, reason: str, actor: str | None = None) -> SagaRun:
    """Cancel a ``pending`` or ``executing`` run: a pending run ends ``cancelled``; an executing one stops
    starting steps, compensates what completed and ends ``compensated``. Raises InvalidTransition otherwise,
    RunNotFound for an unknown run, ReasonRequired for a blank reason."""
    from sagas import services  # the ORM: see above

    return services.run_cancel(run_id=run_id, reason=reason, actor=actor)


def retry(run_id: RunId, *, reason: str, actor: str | None = None) -> SagaRun:
    """Re-run what a ``failed`` run gave up on with fresh attempt budgets (its failed step after the pivot, the
    run going on forward; or its failed compensations), or re-drive a run that is parked or stuck. Raises
    InvalidTransition when the run is neither, RunNotFound, ReasonRequired."""
    from sagas import services  # the ORM: see above

    return services.run_retry(run_id=run_id, reason=reason, actor=actor)


def resolve(run_id: RunId, *, step: str, reason: str, actor: str | None = None, output: Any = None) -> SagaRun:
    """Record that a person did by hand what ``step`` of a ``failed`` run gave up on. A step that failed after
    the pivot is recorded done with ``output`` (merged into later steps' payload like any output) and the run
    goes on forward; a failed compensation is recorded undone, and the run ends ``compensated`` when none is left.
    Raises UnknownStep, InvalidTransition, InvalidPayload (an output that is not JSON), RunNotFound,
    ReasonRequired."""
    from sagas import services  # the ORM: see above

    return services.run_resolve(run_id=run_id, step=step, reason=reason, actor=actor, output=output)


def signal(
    run_id: RunId, name: str, data: Mapping[str, Any] | None = None, *, actor: str | None = None, reason: str = ""
) -> SagaRun:
    """Deliver the signal ``name`` to a run whose Wait step of that name waits: ``data`` (a JSON object, default
    {}) becomes the step's output and the run goes on. The same signal again is a no-op. Raises
    InvalidTransition when the run is not waiting for ``name``, InvalidPayload for data that is not a JSON
    object, RunNotFound."""
    from sagas import services  # the ORM: see above

    return services.run_signal(run_id=run_id, name=name, data=data, actor=actor, reason=reason)
