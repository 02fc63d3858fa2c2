"""Prometheus metrics of the framework: declared once here, counted by the services when their transaction commits.

Labels name sagas, steps, outcomes, failure classes and re-drive actions: bounded sets fixed by the code. Never a
run id, a payload value or an error message: each distinct label value is a new time series.

Counters and histograms live on prometheus-client's default registry. In the client's documented multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR`` set in the environment before any process starts: gunicorn workers, Celery's
prefork pool) every process writes them to files in that directory, named by pid; each host or container needs a
directory of its own. The gauges are read from the database and Redis at scrape time (sagas.collectors), so
no gauge file goes stale. ``sagas.views.metrics_view`` serves both; a worker serves its own counts on
``SAGAS["WORKER_METRICS_PORT"]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

from django.db import transaction
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from sagas.failures import Failure
from sagas.states import AWAITING_PERSON_STATES, TERMINAL_RUN_STATES

logger = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The statuses a run is counted as finished in: final, or failed (stopped for a person).
OUTCOMES = TERMINAL_RUN_STATES | AWAITING_PERSON_STATES

# Steps call other services: from milliseconds up to the longest step timeouts.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def multiprocess_dir() -> str | None:
    """The directory every process writes its counts to, or None: each process keeps its own."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


# A run lasts from its start to its outcome: seconds for a quick saga, hours or days when one waits for a person.
RUN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0)

RUNS_STARTED = Counter("sagas_runs_started", "Saga runs started (stored, steps dispatched).", ["saga"])
RUNS_FINISHED = Counter(
    "sagas_runs_finished",
    "Runs that reached an outcome: completed, compensated, cancelled, or failed (awaiting a person). A failed run "
    "that a person retries or resolves counts again under its next outcome.",
    ["saga", "outcome"],
)
RUN_DURATION = Histogram(
    "sagas_run_duration_seconds",
    "Time from a run's start to its outcome (completed, compensated, cancelled, or failed: awaiting a person), by "
    "saga and outcome. A failed run that a person retries or resolves is observed again at its next outcome.",
    ["saga", "outcome"],
    buckets=RUN_BUCKETS,
)
STEP_DURATION = Histogram(
    "sagas_step_duration_seconds",
    "Duration of the successful attempt of a step: the call of its action.",
    ["saga", "step"],
    buckets=STEP_BUCKETS,
)
ATTEMPT_FAILURES = Counter(
    "sagas_attempt_failures",
    'Failed attempts of step actions (kind="action") and compensations (kind="compensation") by failure class; '
    'retried="true" for those tried again (retries), "false" where the policy gave up.',
    ["saga", "step", "kind", "failure_class", "retried"],
)
COMPENSATION_FAILURES = Counter(
    "sagas_compensation_failures",
    "Compensations that gave up: the step is compensation_failed and its run waits for a person.",
    ["saga", "step"],
)
REDRIVES = Counter(
    "sagas_redrives",
    "Runs re-driven from their rows after they stopped moving (by the reaper, saga_recover or an operator's retry "
    "of a stuck run), by what was done.",
    ["saga", "action"],
)
CIRCUIT_REFUSALS = Counter(
    "sagas_circuit_refusals",
    'Calls of step actions (kind="action") and compensations (kind="compensation") that an open circuit breaker '
    "refused: not attempts, they spend no retry budget; the call is asked again once the breaker may let it through.",
    ["saga", "step", "kind"],
)
RECEIVER_DELIVERIES = Counter(
    "sagas_receiver_deliveries",
    'Saga messages delivered to receivers (@sagas.on), by what became of each delivery: "received" (the effect '
    'committed), "duplicate" (already received, skipped), "retried" (it failed and will be tried again), "gave_up".',
    ["receiver", "outcome"],
)


def receiver_delivery(receiver: str, outcome: str) -> None:
    """Counted at once: a delivery's outcome is known after its transaction ended."""
    RECEIVER_DELIVERIES.labels(receiver=receiver, outcome=outcome).inc()


def _on_commit(count: Callable[[], None]) -> None:
    # Counted only once the change is committed: a rolled-back transition counts nothing. robust: a count that
    # cannot be written (say, a missing directory) is logged, never raised into a caller whose work committed.
    transaction.on_commit(count, robust=True)


def run_started(saga: str) -> None:
    def count_run_started() -> None:
        RUNS_STARTED.labels(saga=saga).inc()

    _on_commit(count_run_started)


def run_finished(saga: str, outcome: str, seconds: float) -> None:
    """A run moved to ``outcome``, ``seconds`` after it started; statuses that are not an outcome (executing,
    compensating...) count nothing."""
    if outcome not in OUTCOMES:
        return

    def count_run_finished() -> None:
        RUNS_FINISHED.labels(saga=saga, outcome=str(outcome)).inc()
        RUN_DURATION.labels(saga=saga, outcome=str(outcome)).observe(max(0.0, seconds))

    _on_commit(count_run_finished)


def step_succeeded(saga: str, step: str, seconds: float) -> None:
    def observe_step_duration() -> None:
        STEP_DURATION.labels(saga=saga, step=step).observe(seconds)

    _on_commit(observe_step_duration)


def attempt_failed(saga: str, step: str, *, kind: str, failure: Failure, retried: bool) -> None:
    """A failed attempt of a step's action or compensation (``kind``), tried again or not, counted by the class
    of its ``failure``."""
    failure_class = failure.failure_class.value

    def count_attempt_failure() -> None:
        labels = {"saga": saga, "step": step, "kind": kind, "failure_class": failure_class}
        ATTEMPT_FAILURES.labels(**labels, retried="true" if retried else "false").inc()

    _on_commit(count_attempt_failure)


def circuit_refused(saga: str, step: str, kind: str) -> None:
    """A call of a step's action or compensation (``kind``) refused by its service's open breaker."""

    def count_circuit_refusal() -> None:
        CIRCUIT_REFUSALS.labels(saga=saga, step=step, kind=kind).inc()

    _on_commit(count_circuit_refusal)


def compensation_gave_up(saga: str, step: str) -> None:
    def count_compensation_failure() -> None:
        COMPENSATION_FAILURES.labels(saga=saga, step=step).inc()

    _on_commit(count_compensation_failure)


def redriven(saga: str, action: str) -> None:
    """A stuck run was moved on; ``action`` is a fixed word for what was done (``publish``, ``complete``...)."""

    def count_redrive() -> None:
        REDRIVES.labels(saga=saga, action=action).inc()

    _on_commit(count_redrive)


class _Forward:
    """What another registry collects, served through a per-scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        return iter(self.registry.collect())


def counts_registry() -> CollectorRegistry:
    """The framework's counters and histograms: of every process writing to the multiprocess directory, or of
    this one."""
    registry = CollectorRegistry()
    directory = multiprocess_dir()
    if directory:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    return registry


def start_worker_exporter(port: int, address: str = "127.0.0.1") -> bool:
    """Serve this worker's counts (its pool processes' too, through the multiprocess directory) on ``port``, from
    a thread of the worker's main process; False, with the reason logged, when they could not be seen."""
    if not multiprocess_dir():
        logger.error(
            "SAGAS['WORKER_METRICS_PORT'] is set but %s is not: the pool processes' counts would stay in their own "
            "memory. Set %s to a directory of this worker's own in its environment.",
            MULTIPROC_DIR_ENV,
            MULTIPROC_DIR_ENV,
        )
        return False
    start_http_server(port, addr=address, registry=counts_registry())
    logger.info("worker metrics served on http://%s:%d/metrics", address, port)
    return True


def forget_process(pid: int) -> None:
    """A process that wrote to the multiprocess directory ended: the client's documented clean-up of its live
    gauge files (the framework keeps none; the host's own may)."""
    if multiprocess_dir():
        mark_process_dead(pid)  # type: ignore[no-untyped-call]
