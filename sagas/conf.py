"""The ``SAGAS`` settings namespace: every key, its default, and a lazy reader that refuses typos."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from sagas.retry import RetryPolicy

DEFAULTS: dict[str, Any] = {
    # RetryPolicy fields for steps that declare no `retry`.
    "DEFAULT_RETRY": {"max_attempts": 3, "backoff": 1.0, "multiplier": 2.0, "backoff_max": 60.0, "jitter": True},
    # RetryPolicy fields for compensations that declare no `compensation_retry`. Compensations
    # must not give up easily: a give-up leaves the run waiting for a person.
    "DEFAULT_COMPENSATION_RETRY": {
        "max_attempts": 8,
        "backoff": 2.0,
        "multiplier": 2.0,
        "backoff_max": 300.0,
        "jitter": True,
    },
    # The largest start payload, in bytes of compact JSON; a bigger one is refused (InvalidPayload, an API 400)
    # before anything is written. Payloads carry ids and amounts: a document belongs in storage, its id here.
    "MAX_PAYLOAD_BYTES": 256 * 1024,
    # The admin's run page shows this many of a run's latest events, with links to the earlier ones.
    "ADMIN_TIMELINE_EVENTS": 200,
    # Every this many events a run's folded state is stored as a snapshot (sagas.rebuild starts from the
    # latest one); 0 turns snapshots off.
    "SNAPSHOT_EVERY": 100,
    # The reaper relays outbox messages still unpublished this many seconds after they were written.
    "OUTBOX_RELAY_AFTER": 10,
    # A published message that some receiver has no receipt for this many seconds after its last publish (the
    # broker lost the delivery: a Redis restarted without its data, a worker killed holding it) is published
    # again to those receivers, at most OUTBOX_REDELIVER_MAX times. Longer than a receiver's retry schedule
    # (the default one spans about 14 minutes), so a delivery still being retried is rarely sent twice.
    "OUTBOX_REDELIVER_AFTER": 900,
    "OUTBOX_REDELIVER_MAX": 3,
    # Seconds between a step's soft time limit (its `timeout`) and the hard limit that kills it.
    "TIME_LIMIT_GRACE": 5,
    # Queue for every saga task; None uses Celery's routing (task_routes, then the default queue).
    "QUEUE": None,
    # Circuit breaker of every service a step names (Step(service=...)); see sagas/breakers.py.
    "BREAKER": {
        "enabled": True,
        "failure_threshold": 5,  # failures (transient, timeout, unknown) within `window` seconds open it
        "window": 60.0,
        "recovery_timeout": 30.0,  # an open breaker lets probes through after this many seconds
        "half_open_max_calls": 1,  # probes at once while half-open
        "retry_spread": 5.0,  # refused calls come back spread at random over this many seconds
    },
    # Seconds a forward step waits for its service's open circuit before it fails with circuit_open (the run
    # compensates); Step(circuit_wait=...) overrides it. Compensations wait for their circuit without limit.
    "CIRCUIT_WAIT": 300.0,
    # Per-service changes to BREAKER, e.g. {"payments": {"failure_threshold": 3}}.
    "BREAKERS": {},
    # Redis that holds breaker state; None: the REDIS_URL setting, else the broker if it is Redis.
    "REDIS_URL": None,
    # Prefix of every Redis key the framework writes.
    "KEY_PREFIX": "sagas",
    # How run and step state is written: "auto" (one statement per change on PostgreSQL, the portable ORM path on
    # other databases) or "portable" (the ORM path everywhere; the test suite runs it on PostgreSQL too).
    "WRITE_PATH": "auto",
    # Eager dispatch for every saga whose steps form a sequence (a saga's own `eager` attribute wins): the worker
    # that recorded a step's success runs the next step itself when it goes to the same queue (sagas/eager.py).
    "EAGER": False,
    # A run that made no progress for this many seconds is examined by the reaper. A running step is
    # re-driven only once its hard time limit, and any retry delay it waits out, have also passed.
    "LEASE_SECONDS": 60,
    # How often the reaper runs (seconds), on django-celery-beat's database schedule.
    "REAPER_INTERVAL": 15,
    # At most this many stuck runs are re-driven per tick; the rest wait for the next one.
    "REAPER_BATCH": 500,
    # The scheduled purge (sagas.retention): runs completed, compensated or cancelled longer ago than this (seconds,
    # a timedelta, or an age such as "30d"; at least an hour) are deleted with their rows. None: no scheduled purge.
    "PURGE_AFTER": None,
    # How often the scheduled purge runs (seconds), and how many top-level runs each of its transactions deletes.
    "PURGE_INTERVAL": 3600,
    "PURGE_BATCH": 200,
    # The health report (admin page, manage.py saga_health): its window and when it raises an alert.
    "HEALTH_WINDOW_HOURS": 24,
    "ALERT_FAILURE_RATE": 0.05,  # share of finished runs that ended failed (a person must act)
    "ALERT_COMPENSATION_RATE": 0.20,  # share of finished runs that were compensated
    "ALERT_STUCK_SECONDS": 300,  # any run with no progress for this long
    # Payload and output keys whose values the admin and the CLI show masked (case-insensitive substrings).
    "MASKED_KEYS": ["password", "secret", "token", "card", "cvv", "iban", "authorization", "api_key"],
    # Where the admin links a step's task id: Flower's task page ("" shows no link).
    "FLOWER_URL": "http://127.0.0.1:5555",
    # Who may read /metrics (sagas.views.metrics_view): a list of IP addresses and networks ("10.0.0.0/8"),
    # matched against REMOTE_ADDR (behind a proxy, the proxy's); loopback only by default. None serves every address.
    "METRICS_ALLOWED_IPS": ["127.0.0.1", "::1"],
    # A scraper that presents `Authorization: Bearer <METRICS_TOKEN>` may read /metrics from any address.
    "METRICS_TOKEN": None,
    # A worker's own Prometheus endpoint (port; None: none), serving the counts of its processes: with the prefork
    # pool it needs PROMETHEUS_MULTIPROC_DIR. It listens on WORKER_METRICS_ADDRESS ("0.0.0.0" in a container).
    "WORKER_METRICS_PORT": None,
    "WORKER_METRICS_ADDRESS": "127.0.0.1",
    # OpenTelemetry spans of runs, attempts and receivers, with the trace context carried in saga messages
    # (docs/tracing.md); needs the tracing extra (check sagas.E006).
    "TRACING": False,
}


class SagaSettings:
    """Reads ``settings.SAGAS`` lazily, filling in DEFAULTS; an unknown key is a configuration error."""

    @cached_property
    def _user(self) -> dict[str, Any]:
        user = getattr(settings, "SAGAS", {}) or {}
        unknown = sorted(set(user) - set(DEFAULTS))
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown SAGAS setting(s): {', '.join(unknown)}. Known: {', '.join(sorted(DEFAULTS))}."
            )
        return dict(user)

    def __getattr__(self, key: str) -> Any:
        if key not in DEFAULTS:
            raise AttributeError(f"Unknown SAGAS setting {key!r}.")
        return self._user.get(key, DEFAULTS[key])

    @cached_property
    def default_retry(self) -> RetryPolicy:
        return RetryPolicy.from_settings({**DEFAULTS["DEFAULT_RETRY"], **self.DEFAULT_RETRY})

    @cached_property
    def default_compensation_retry(self) -> RetryPolicy:
        return RetryPolicy.from_settings({**DEFAULTS["DEFAULT_COMPENSATION_RETRY"], **self.DEFAULT_COMPENSATION_RETRY})

    def reload(self) -> None:
        for cached in ("_user", "default_retry", "default_compensation_retry"):
            self.__dict__.pop(cached, None)


sagas_settings = SagaSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "SAGAS":
        sagas_settings.reload()


setting_changed.connect(_reload)
