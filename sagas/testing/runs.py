"""run_saga: start a saga on the test's real worker, optionally with planned failures, and wait for its end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import transaction

from sagas.models import SagaEvent, SagaRun, SagaStepRun
from sagas.states import FINISHED_RUN_STATES
from sagas.testing import faults

if TYPE_CHECKING:
    from sagas.definitions import Saga
    from sagas.testing.worker import SagaWorker

# States a run stays in until a person acts: where run_saga stops waiting.
RUN_TIMEOUT = 120.0  # generous: only keeps a broken run from hanging a suite

# The worker the saga_worker fixture started, whose log a timeout quotes.
current_worker: list[SagaWorker] = []


@dataclass
class SagaOutcome:
    """A run as run_saga left it: the run row, its steps in order and its event log."""

    run: SagaRun
    steps: list[SagaStepRun] = field(default_factory=list)
    events: list[SagaEvent] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.run.status

    def step(self, name: str) -> SagaStepRun:
        return next(step for step in self.steps if step.name == name)

    def event_types(self) -> list[tuple[str, str]]:
        """(type, step) of every event, in order: what a test compares with the log it expects."""
        return [(event.type, event.step) for event in self.events]


def wait_for_run(
    run_id: Any,
    *,
    statuses: frozenset[str] = FINISHED_RUN_STATES,
    timeout: float = RUN_TIMEOUT,
    worker: SagaWorker | None = None,
) -> SagaRun:
    """Poll the run until its status is one of ``statuses``; AssertionError with the end of the worker's log
    (``worker``, else the saga_worker fixture's) if it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        current = SagaRun.objects.get(pk=run_id)
        if current.status in statuses:
            return current
        if time.monotonic() > deadline:
            worker = worker or (current_worker[-1] if current_worker else None)
            log = worker.log_tail() if worker else "(no saga_worker fixture: is one running?)"
            raise AssertionError(f"saga run {run_id} is still {current.status} after {timeout}s. Worker log:\n{log}")
        time.sleep(0.05)


def run_saga(
    saga: type[Saga],
    payload: Mapping[str, Any] | None = None,
    *,
    fail: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    timeout: float = RUN_TIMEOUT,
) -> SagaOutcome:
    """Start ``saga`` with ``payload`` and wait until its run settles on the real worker of the ``saga_worker``
    fixture (the test needs committed transactions: ``transactional_db``, which that fixture requests).

    ``fail`` plans failures by step: ``"business"`` (the step refuses: it fails without retry and the run
    compensates), ``"transient:N"`` (its first N attempts fail with a TransientError, then its action runs, as
    retried by its RetryPolicy) or ``"timeout"`` (every attempt runs past its time limit). Raises
    AssertionError, with the worker's log, if the run does not settle within ``timeout`` seconds.
    """
    plan = faults.validate(saga, fail or {})
    with transaction.atomic():  # published when this commits: after the plan is where the worker looks
        run = saga.start(payload, idempotency_key=idempotency_key)
        faults.plan(run.pk, plan)
    current = wait_for_run(run.pk, timeout=timeout)
    return SagaOutcome(
        run=current,
        steps=list(current.steps.order_by("index")),
        events=list(current.events.order_by("seq")),
    )
