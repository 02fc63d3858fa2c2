"""Circuit gates of claims: a step's service breaker is asked before an attempt starts, and a call it refuses
is recorded as a refusal, which is not an attempt and spends no retry budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from sagas import breakers, logs, metrics
from sagas.exceptions import CircuitOpen, RunNotFound
from sagas.failures import NO_SECRETS, Failure, with_refusal
from sagas.models import SagaRun, SagaStepRun
from sagas.services import _contract
from sagas.services._core import RunId, append_event, failure_entry, lock_run
from sagas.states import CIRCUIT_REFUSAL, EventType

logger = logging.getLogger(__name__)

BREAKER_EVENT = {
    "open": EventType.BREAKER_OPENED,
    "half_open": EventType.BREAKER_HALF_OPENED,
    "closed": EventType.BREAKER_CLOSED,
}


@dataclass(frozen=True, slots=True)
class Gate:
    """What a step's service breaker answered before an attempt: nothing to ask (no service, breakers off),
    a permit to call (reported back after the call), or a refusal."""

    service: str | None = None
    breaker: breakers.CircuitBreaker | None = None
    permit: breakers.Permit | None = None

    @property
    def refused(self) -> bool:
        return self.permit is not None and not self.permit.allowed

    def report(self, run_id: RunId, step: str, outcome: str) -> None:
        """Tell the breaker how the permitted call went (``success``, ``failure`` or ``neutral``)."""
        if self.breaker is None or self.permit is None or not self.permit.allowed:
            return
        change = self.breaker.record(self.permit, outcome)
        if change is not None:
            assert self.service is not None
            record_breaker_change(run_id=run_id, step=step, service=self.service, before=change[0], after=change[1])

    def refusal_delay(self) -> float:
        """When a refused call asks again: once the breaker may let it through, spread at random."""
        assert self.breaker is not None
        assert self.permit is not None
        return self.breaker.config.refusal_delay(self.permit.wait)


OPEN_GATE = Gate()


def ask(run: SagaRun, step: str, service: str | None) -> Gate:
    """Ask ``service``'s breaker whether an attempt of ``step`` may call it (caller holds the run lock). An
    open breaker moving to half-open on this question is recorded in the caller's transaction."""
    breaker = breakers.for_service(service) if service else None
    if breaker is None:
        return OPEN_GATE
    permit = breaker.acquire()
    if permit.change is not None:
        append_breaker_event(run, step, breaker.service, *permit.change)
    return Gate(breaker.service, breaker, permit)


def refusal_error(gate: Gate, attempt: int) -> Failure:
    """The failure of a refused call (class ``circuit_open``)."""
    assert gate.service is not None
    assert gate.permit is not None
    return Failure.from_exception(
        CircuitOpen(gate.service, retry_after=gate.permit.wait), attempt=attempt, secrets=NO_SECRETS
    )


def record_refusal(
    run: SagaRun, step_run: SagaStepRun, gate: Gate, *, call: str, retry_in: float, now: datetime
) -> None:
    """Record that the breaker refused the next ``call`` ("action" or "compensation") of a step: one more
    refusal on the step, the wait's start kept, and a CircuitRefused event (caller holds the run lock)."""
    attempts = step_run.attempts if call == "action" else step_run.compensation_attempts
    error = refusal_error(gate, attempts + 1)  # the attempt that waits: it has not started
    entry = {**failure_entry(CIRCUIT_REFUSAL, error, retry_in), "call": call, "service": gate.service}
    since = step_run.circuit_waiting_since or now
    failures = with_refusal(step_run.failures, entry)
    values = {"failures": failures, "circuit_waiting_since": since}
    append_event(
        run,
        EventType.CIRCUIT_REFUSED,
        step=step_run.name,
        data={"failure": entry, "waiting_since": since.isoformat(), "retry_in": retry_in},
        at=now,
        step_change=_contract.StepChange(step_run.pk, step_run.status, values, increment="circuit_refusals"),
    )
    step_run.failures, step_run.circuit_waiting_since = failures, since
    step_run.circuit_refusals += 1
    metrics.circuit_refused(run.saga_name, step_run.name, call)
    logger.info(
        "saga run %s: %s of step %s refused by the open circuit of %s; asking again in %.1fs",
        run.pk,
        call,
        step_run.name,
        gate.service,
        retry_in,
        extra=logs.fields(run, step=step_run.name, service=gate.service),
    )


def waited(step_run: SagaStepRun, now: datetime) -> float:
    """Seconds the step has waited on its circuit (0 when it is not waiting)."""
    since = step_run.circuit_waiting_since
    return (now - since).total_seconds() if since else 0.0


def append_breaker_event(run: SagaRun, step: str, service: str, before: str, after: str) -> None:
    """Record in the run's log that an attempt of ``step`` moved ``service``'s breaker (caller holds the lock)."""
    append_event(run, BREAKER_EVENT[after], step=step, data={"service": service, "from": before, "to": after})
    log = logger.warning if after == "open" else logger.info
    log(
        "circuit breaker of service %s: %s -> %s (saga run %s, step %s)",
        service,
        before,
        after,
        run.pk,
        step,
        extra=logs.fields(run, step=step, service=service),
    )


def record_breaker_change(*, run_id: RunId, step: str, service: str, before: str, after: str) -> None:
    """Record in the run's log that this attempt moved the breaker of ``service``."""
    with transaction.atomic():
        try:
            run = lock_run(run_id)
        except RunNotFound:
            return
        append_breaker_event(run, step, service, before, after)
