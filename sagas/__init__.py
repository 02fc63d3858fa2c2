"""Saga orchestration for Django + Celery: declare steps with compensations, start runs, operate them."""

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)

from sagas.choreography import SagaMessage, on
from sagas.definitions import Saga, Step, StepContext
from sagas.eventlog import RunState, rebuild
from sagas.exceptions import (
    CircuitOpen,
    DefinitionChanged,
    IdempotencyConflict,
    InvalidDefinition,
    InvalidPayload,
    InvalidTransition,
    RateLimited,
    RunNotFound,
    SagaError,
    StepFailed,
    TransientError,
    UnknownSaga,
)
from sagas.operations import cancel, resolve, retry
from sagas.registry import get_saga
from sagas.retry import RetryPolicy

__all__ = [
    "CircuitOpen",
    "DefinitionChanged",
    "IdempotencyConflict",
    "InvalidDefinition",
    "InvalidPayload",
    "InvalidTransition",
    "RateLimited",
    "RetryPolicy",
    "RunNotFound",
    "RunState",
    "Saga",
    "SagaError",
    "SagaMessage",
    "Step",
    "StepContext",
    "StepFailed",
    "TransientError",
    "UnknownSaga",
    "cancel",
    "get_saga",
    "on",
    "rebuild",
    "resolve",
    "retry",
]
