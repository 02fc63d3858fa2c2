"""The Prometheus gauges read from the database and Redis at each scrape, and the registry one scrape serves.

A gauge kept in process memory would drift from the rows (a run resolved by hand, a process restarted), so each
is a query at scrape time instead. The counters and histograms they are served with live in sagas.metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.models import Count, Min, QuerySet
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from sagas import breakers
from sagas.metrics import counts_registry
from sagas.models import SagaOutbox, SagaRun
from sagas.recovery import last_reaped
from sagas.registry import all_sagas
from sagas.selectors import awaiting_person, circuit_call, stuck, waiting_on_circuit

logger = logging.getLogger(__name__)


class RunsBySagaCollector:
    """A gauge of runs by saga, one grouped COUNT query at each scrape: every registered saga is listed, at 0 when
    none of its runs counts. A gauge kept in process memory would drift from the rows (a run resolved by hand, a
    process restarted)."""

    name = ""
    documentation = ""
    what = ""  # for the log line when the database cannot answer

    def runs(self) -> QuerySet[SagaRun]:
        raise NotImplementedError

    def describe(self) -> Iterator[Metric]:
        # Registering the collector must not query the database.
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        try:
            rows = self.runs().order_by().values_list("saga_name").annotate(runs=Count("pk"))
            counts: dict[str, int] = {name: 0 for name in (saga.name for saga in all_sagas())}
            counts.update(dict(rows))
        except DatabaseError:
            logger.exception("metrics: could not count the %s; the gauge is left out", self.what)
            return
        family = self._family()
        for saga, runs in sorted(counts.items()):
            family.add_metric([saga], runs)
        yield family

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=["saga"])


class AwaitingPersonCollector(RunsBySagaCollector):
    """``sagas_runs_awaiting_person``: runs stopped for a person, by saga."""

    name = "sagas_runs_awaiting_person"
    documentation = (
        "Runs that stopped (failed) because a compensation, or a step after the pivot, gave up: a person must "
        "retry or resolve them."
    )
    what = "saga runs awaiting a person"

    def runs(self) -> QuerySet[SagaRun]:
        return awaiting_person()


class StuckRunsCollector(RunsBySagaCollector):
    """``sagas_runs_stuck``: runs that should be moving but made no progress for the lease (``selectors.stuck``:
    not a run waiting for a signal or a child), by saga. The reaper re-drives them on its next pass: a count that
    stays above 0 means it does not run, or cannot move them."""

    name = "sagas_runs_stuck"
    documentation = "Runs that should be moving but made no progress for the lease (the reaper re-drives them)."
    what = "stuck saga runs"

    def runs(self) -> QuerySet[SagaRun]:
        return stuck()


class OutboxBacklogCollector:
    """``sagas_outbox_unpublished``: outbox messages not yet handed to the broker, counted at each scrape. Rising
    means the relay fails (a broker outage) or the reaper is not running."""

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        try:
            count = SagaOutbox.objects.filter(published_at__isnull=True).count()
        except DatabaseError:
            logger.exception("metrics: could not count the unpublished outbox messages; the gauge is left out")
            return
        family = self._family()
        family.add_metric([], count)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "sagas_outbox_unpublished", "Saga messages written to the outbox but not yet published to receivers."
        )


class CircuitWaitCollector:
    """``sagas_circuit_waiting_steps`` and ``sagas_circuit_wait_longest_seconds``: steps whose action or
    compensation waits for an open circuit breaker, and the longest such wait, by kind, read at each scrape."""

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        try:
            rows = (
                waiting_on_circuit()
                .order_by()
                .values_list("status")
                .annotate(steps=Count("pk"), since=Min("circuit_waiting_since"))
            )
            waits = {"action": (0, None), "compensation": (0, None)}
            for status, steps, since in rows:
                kind = circuit_call(status)
                count, earliest = waits[kind]
                waits[kind] = (count + steps, since if earliest is None or since < earliest else earliest)
        except DatabaseError:
            logger.exception("metrics: could not count the steps waiting on a circuit; the gauges are left out")
            return
        now = timezone.now()
        waiting, longest = self._families()
        for kind, (count, earliest) in sorted(waits.items()):
            waiting.add_metric([kind], count)
            longest.add_metric([kind], (now - earliest).total_seconds() if earliest else 0.0)
        yield waiting
        yield longest

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "sagas_circuit_waiting_steps",
                "Steps of active runs whose action or compensation waits for its service's open circuit breaker.",
                labels=["kind"],
            ),
            GaugeMetricFamily(
                "sagas_circuit_wait_longest_seconds",
                "How long the longest current wait on an open circuit breaker has lasted (0: none waits).",
                labels=["kind"],
            ),
        )


class ReaperCollector:
    """``sagas_reaper_last_run_timestamp_seconds``: when the periodic reaper last finished a pass (Unix time),
    read from Redis at each scrape; absent until it first runs. Alert on ``time() - it`` above a few intervals."""

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        try:
            last = last_reaped()
        except (redis.RedisError, ImproperlyConfigured):
            logger.exception("metrics: could not read when the reaper last ran; the gauge is left out")
            return
        if last is None:
            return
        family = self._family()
        family.add_metric([], last.timestamp())
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "sagas_reaper_last_run_timestamp_seconds", "When the periodic reaper last finished a pass (Unix time)."
        )


class BreakerStateCollector:
    """``sagas_circuit_breaker_state``: each known service's breaker, 1 for its current state (closed, open or
    half_open) and 0 for the others, read from Redis at each scrape."""

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        try:
            states = {str(status["service"]): str(status["state"]) for status in breakers.statuses()}
        except (redis.RedisError, ImproperlyConfigured):
            logger.exception("metrics: could not read the circuit breakers; the gauge is left out")
            return
        family = self._family()
        for service, current in sorted(states.items()):
            for state in breakers.BreakerState:
                family.add_metric([service, str(state)], 1.0 if state == current else 0.0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "sagas_circuit_breaker_state",
            "The state of each service's circuit breaker: 1 for the current one of closed, open and half_open.",
            labels=["service", "state"],
        )


def register_collectors(registry: CollectorRegistry = REGISTRY) -> None:
    """Register the gauges read at scrape time (runs awaiting a person, stuck runs, outbox backlog, circuit waits,
    breaker states, the reaper's last pass) on ``registry``: for a project that serves its own /metrics
    (django-prometheus reads the default registry), call it once, say in an AppConfig's ``ready``."""
    for collector in (
        AwaitingPersonCollector(),
        StuckRunsCollector(),
        OutboxBacklogCollector(),
        CircuitWaitCollector(),
        ReaperCollector(),
        BreakerStateCollector(),
    ):
        registry.register(collector)


def scrape_registry() -> CollectorRegistry:
    """What one scrape of ``sagas.views.metrics_view`` serves: the counts, and the gauges read now."""
    registry = counts_registry()
    register_collectors(registry)
    return registry
