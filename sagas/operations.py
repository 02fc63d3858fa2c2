"""The operator functions of the public API, loading the ORM only when called."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagas.models import SagaRun
    from sagas.services._core import RunId


def cancel(run_id: RunId, *, reason: str, actor: str | None = None) -> SagaRun:
    """Cancel a run that has not started executing; raises InvalidTransition otherwise."""
    from sagas import services

    return services.run_cancel(run_id=run_id, reason=reason, actor=actor)


def retry(run_id: RunId, *, reason: str, actor: str | None = None) -> SagaRun:
    """Re-run the failed compensations of a ``failed`` run; raises InvalidTransition otherwise."""
    from sagas import services

    return services.run_retry(run_id=run_id, reason=reason, actor=actor)


def resolve(run_id: RunId, *, step: str, reason: str, actor: str | None = None) -> SagaRun:
    """Mark a failed compensation as done by hand; the run is ``compensated`` when none is left."""
    from sagas import services

    return services.run_resolve(run_id=run_id, step=step, reason=reason, actor=actor)
