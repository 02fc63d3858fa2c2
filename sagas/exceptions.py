"""Exceptions of the saga framework: what steps raise and what the framework refuses."""

from __future__ import annotations


class SagaError(Exception):
    """Base class of every error the framework raises to application code."""


class UnknownSaga(SagaError, LookupError):
    """No saga class is registered under the requested name (and version)."""


class InvalidDefinition(SagaError, TypeError):
    """A saga class or one of its steps is declared wrongly; raised when the class is defined."""


class DefinitionChanged(SagaError):
    """The steps of a saga changed in code while its name and version stayed the same."""


class InvalidPayload(SagaError, ValueError):
    """A start payload that cannot be stored as JSON or does not match the saga's ``payload_schema`` (or a step
    output that cannot be stored, or data from outside a run that it refuses: a signal's, a resolve's output).
    ``errors``: what is wrong, by field ("lines.0.sku"; "" for the value itself), when a schema or a check said.
    ``field``: the request field that held the value ("payload", "data", "output")."""

    def __init__(
        self, message: str = "", *, errors: dict[str, list[str]] | None = None, field: str = "payload"
    ) -> None:
        super().__init__(message)
        self.errors = dict(errors or {})
        self.field = field


class IdempotencyConflict(SagaError):
    """An idempotency key was reused for a different saga or a different payload."""


class InvalidTransition(SagaError):
    """The run or step is not in a state that allows the requested change."""


class UnknownStep(InvalidTransition, LookupError):
    """The run has no step of that name; ``steps`` lists the ones it has. (An InvalidTransition too, which is
    what earlier versions raised.)"""

    def __init__(self, message: str, *, step: str, steps: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.step = step
        self.steps = steps


class ReasonRequired(SagaError, ValueError):
    """An operator action came without a reason: the audit trail needs one. (A ValueError too, which is what
    earlier versions raised.)"""


class RunNotFound(SagaError, LookupError):
    """No saga run exists with the given id."""


class StepFailed(Exception):
    """A business refusal or an invalid request: asked again, the answer stays no. Never retried; the saga
    compensates its completed steps now.

    ``code`` is a short machine-readable reason (``"card_declined"``) kept with the step's error.
    """

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TransientError(Exception):
    """A failure worth retrying (a timeout, a 503): retried with backoff per the step's RetryPolicy.

    It counts against the service's circuit breaker unless ``service_fault=False``: the service is well
    but this one request cannot get through yet (say, one customer's bank is offline).
    """

    def __init__(self, message: str = "", *, code: str = "", service_fault: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.service_fault = service_fault


class RateLimited(TransientError):
    """The called service asked to slow down; the next attempt waits at least ``retry_after`` seconds."""

    def __init__(self, message: str = "", *, retry_after: float = 0.0, code: str = "") -> None:
        super().__init__(message, code=code, service_fault=False)
        self.retry_after = float(retry_after)


class AttemptsExhausted(SagaError):
    """A step's attempts were all used up by attempts that never reported back (worker lost each time)."""


class CircuitOpen(Exception):
    """The breaker of ``service`` is open: the call was not made. Retried after ``retry_after`` seconds."""

    code = "circuit_open"

    def __init__(self, service: str, *, retry_after: float) -> None:
        super().__init__(f"The circuit breaker of service {service!r} is open; not calling it for {retry_after:.1f}s.")
        self.service = service
        self.retry_after = float(retry_after)


class StepInFlight(Exception):
    """Another delivery of the step holds its lease (or the run is being stopped): this one did not start an
    attempt and comes back after ``retry_after`` seconds."""

    code = "step_in_flight"

    def __init__(self, step: str, holder: str, *, retry_after: float) -> None:
        super().__init__(f"Step {step!r} is being run by {holder}; asking again in {retry_after:.1f}s.")
        self.step = step
        self.retry_after = float(retry_after)


class StartDelayed(Exception):
    """The run was started with a countdown or an eta that has not come: this message comes back after
    ``retry_after`` seconds, with no attempt used."""

    code = "start_delayed"

    def __init__(self, run_id: str, start_at: str, *, retry_after: float) -> None:
        super().__init__(f"Saga run {run_id} starts at {start_at}; asking again in {retry_after:.1f}s.")
        self.retry_after = float(retry_after)


class UnrecordedFailure(SagaError):
    """A step's task failed before the runner could record why (see the worker log)."""


class MaskedFailure(SagaError):
    """Stands in for a step's exception whose message held a masked value and could not be masked in place."""
