"""Saga orchestration for Django + Celery: declare steps with compensations, start runs, operate them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sagas import lazy

# ``sagas.retry`` names the operator function and the module of RetryPolicy. Importing the module (it loads nothing
# else) before binding the function keeps the function in that name, whatever is imported later.
importlib.import_module("sagas.retry")
from sagas.operations import cancel, resolve, retry, signal  # noqa: E402  (ORM-free: each loads the services when called)

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)

# The public API and the module each name comes from. Django imports this package before its models are ready,
# so a name is imported on first use (PEP 562), not here: ``import sagas`` loads nothing else.
_EXPORTS = {
    "CircuitOpen": "sagas.exceptions",
    "DefinitionChanged": "sagas.exceptions",
    "IdempotencyConflict": "sagas.exceptions",
    "InvalidDefinition": "sagas.exceptions",
    "InvalidPayload": "sagas.exceptions",
    "InvalidTransition": "sagas.exceptions",
    "RateLimited": "sagas.exceptions",
    "ReasonRequired": "sagas.exceptions",
    "RunNotFound": "sagas.exceptions",
    "SagaError": "sagas.exceptions",
    "StepFailed": "sagas.exceptions",
    "TransientError": "sagas.exceptions",
    "UnknownSaga": "sagas.exceptions",
    "UnknownStep": "sagas.exceptions",
    "RetryPolicy": "sagas.retry",
    "Saga": "sagas.definitions",
    "Step": "sagas.definitions",
    "StepContext": "sagas.definitions",
    "SubSaga": "sagas.definitions",
    "Wait": "sagas.definitions",
    "get_saga": "sagas.registry",
    "SagaMessage": "sagas.choreography",
    "on": "sagas.choreography",
    "RunState": "sagas.eventlog",
    "rebuild": "sagas.eventlog",
}

__all__ = [
    "CircuitOpen",
    "DefinitionChanged",
    "IdempotencyConflict",
    "InvalidDefinition",
    "InvalidPayload",
    "InvalidTransition",
    "RateLimited",
    "ReasonRequired",
    "RetryPolicy",
    "RunNotFound",
    "RunState",
    "Saga",
    "SagaError",
    "SagaMessage",
    "Step",
    "StepContext",
    "StepFailed",
    "SubSaga",
    "TransientError",
    "UnknownSaga",
    "UnknownStep",
    "Wait",
    "cancel",
    "get_saga",
    "on",
    "rebuild",
    "resolve",
    "retry",
    "signal",
]


__getattr__, __dir__ = lazy.exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from sagas.choreography import SagaMessage, on
    from sagas.definitions import Saga, Step, StepContext, SubSaga, Wait
    from sagas.eventlog import RunState, rebuild
    from sagas.exceptions import (
        CircuitOpen,
        DefinitionChanged,
        IdempotencyConflict,
        InvalidDefinition,
        InvalidPayload,
        InvalidTransition,
        RateLimited,
        ReasonRequired,
        RunNotFound,
        SagaError,
        StepFailed,
        TransientError,
        UnknownSaga,
        UnknownStep,
    )
    from sagas.registry import get_saga
    from sagas.retry import RetryPolicy
