"""Circuit breakers per remote service, shared by every worker process and machine through Redis.

Each change is one Lua script, so concurrent workers never lose an update. Time is Redis's own clock,
so machines whose clocks differ agree on when a breaker opened.
"""

from __future__ import annotations

import logging
import os
import random
import uuid
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from sagas import logs
from sagas.celeryconf import celery_setting
from sagas.conf import sagas_settings
from sagas.exceptions import TransientError
from sagas.registry import all_sagas
from sagas.retry import FailureClass, classify

logger = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through; failures are counted in a rolling window
    OPEN = "open"  # no calls until the recovery timeout has passed
    HALF_OPEN = "half_open"  # a limited number of probe calls decide: success closes, failure reopens


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """One service's breaker; defaults in ``SAGAS["BREAKER"]``, per service in ``SAGAS["BREAKERS"]``."""

    enabled: bool = True
    failure_threshold: int = 5  # failures within `window` seconds that open the breaker
    window: float = 60.0
    recovery_timeout: float = 30.0  # seconds an open breaker waits before letting probes through
    half_open_max_calls: int = 1  # probes allowed at once while half-open
    # Calls refused by the breaker come back when it may let them through, each at a random moment within
    # this many seconds after that, so the waiters of one service do not all arrive at once.
    retry_spread: float = 5.0

    def problems(self) -> list[str]:
        problems = []
        if not isinstance(self.failure_threshold, int) or self.failure_threshold < 1:
            problems.append(f"failure_threshold must be an int >= 1, got {self.failure_threshold!r}")
        if not isinstance(self.half_open_max_calls, int) or self.half_open_max_calls < 1:
            problems.append(f"half_open_max_calls must be an int >= 1, got {self.half_open_max_calls!r}")
        for name in ("window", "recovery_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                problems.append(f"{name} must be a positive number of seconds, got {value!r}")
        if not isinstance(self.retry_spread, int | float) or self.retry_spread < 0:
            problems.append(f"retry_spread must be a number of seconds >= 0, got {self.retry_spread!r}")
        return problems

    def refusal_delay(self, wait: float, rng: random.Random | None = None) -> float:
        """When a refused call comes back: once the breaker may let it through (``wait`` seconds), plus a
        random share of ``retry_spread``."""
        return round(max(wait, 0.0) + (rng or random).uniform(0, self.retry_spread), 3)


BREAKER_FIELDS = frozenset(f.name for f in fields(BreakerSettings))

# Breaker outcome of each failure class: did the service show it is unwell?
OUTCOME_OF_CLASS = {
    FailureClass.TRANSIENT: "failure",
    FailureClass.TIMEOUT: "failure",
    FailureClass.UNKNOWN: "failure",
    FailureClass.INVALID_REQUEST: "success",  # it answered, with a no
    FailureClass.RATE_LIMITED: "neutral",  # it answered, but not with a verdict on its health
    FailureClass.CIRCUIT_OPEN: "neutral",
}

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# KEYS: state hash, failures zset, probes zset. ARGV: recovery_timeout, half_open_max_calls, token.
# Returns {decision, wait, state, change}; change is "" or "<from>><to>".
ACQUIRE = (
    _NOW
    + """
local recovery = tonumber(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local change = ''
if state == 'open' then
  local wait = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0') + recovery - now
  if wait > 0 then
    return {'deny', tostring(wait), state, change}
  end
  state = 'half_open'
  change = 'open>half_open'
  redis.call('HSET', KEYS[1], 'state', state, 'changed_at', tostring(now))
  redis.call('DEL', KEYS[3])
end
if state == 'half_open' then
  -- a probe whose worker died never reports back: it stops counting after the recovery timeout
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tostring(now - recovery))
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[2]) then
    -- busy probing: come back when the oldest probe has reported, or stopped counting at the latest
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {'deny', tostring(tonumber(oldest[2]) + recovery - now), state, change}
  end
  redis.call('ZADD', KEYS[3], tostring(now), ARGV[3])
  redis.call('EXPIRE', KEYS[3], math.ceil(recovery * 2))
  return {'probe', '0', state, change}
end
return {'allow', '0', state, change}
"""
)

# KEYS: as ACQUIRE. ARGV: outcome (success|failure|neutral), window, failure_threshold, token.
# Returns {state, change}.
RECORD = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('ZREM', KEYS[3], ARGV[4])
local function open(from)
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', tostring(now), 'changed_at', tostring(now))
  redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
  redis.call('DEL', KEYS[2], KEYS[3])
  return {'open', from .. '>open'}
end
if ARGV[1] == 'success' and state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'changed_at', tostring(now))
  redis.call('HDEL', KEYS[1], 'opened_at')
  redis.call('DEL', KEYS[2], KEYS[3])
  return {'closed', 'half_open>closed'}
end
if ARGV[1] == 'failure' then
  if state == 'half_open' then
    return open('half_open')
  end
  if state == 'closed' then
    local window = tonumber(ARGV[2])
    redis.call('ZADD', KEYS[2], tostring(now), ARGV[4])
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tostring(now - window))
    redis.call('EXPIRE', KEYS[2], math.ceil(window) + 1)
    if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
      return open('closed')
    end
  end
end
return {state, ''}
"""
)

# KEYS: as ACQUIRE. ARGV: window. Returns {state, failures in window, probes, opened_at, changed_at, times_opened, now}.
STATUS = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tostring(now - tonumber(ARGV[1])))
local h = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'changed_at', 'times_opened')
return {h[1] or 'closed', redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), h[2] or '', h[3] or '',
        h[4] or '0', tostring(now)}
"""
)


@dataclass(frozen=True, slots=True)
class Permit:
    """The breaker's answer to one call: go ahead (perhaps as a probe), or wait ``wait`` seconds: until an
    open breaker lets a probe through, or until the probe of a half-open one stops counting."""

    allowed: bool
    probe: bool
    wait: float
    token: str
    change: tuple[str, str] | None  # (from, to) when asking moved the breaker


def _change(raw: str) -> tuple[str, str] | None:
    if not raw:
        return None
    before, after = raw.split(">")
    return before, after


class CircuitBreaker:
    """The breaker of one service."""

    def __init__(self, service: str, client: redis.Redis, prefix: str, config: BreakerSettings) -> None:
        self.service = service
        self.config = config
        base = f"{prefix}:breaker:{service}"
        self.keys = [base, f"{base}:failures", f"{base}:probes"]
        self._client = client
        self._acquire = client.register_script(ACQUIRE)
        self._record = client.register_script(RECORD)
        self._status = client.register_script(STATUS)

    def acquire(self) -> Permit:
        """Ask before calling the service. If Redis cannot answer, the call goes ahead: a breaker must not
        become the outage it guards against."""
        token = uuid.uuid4().hex
        try:
            decision, wait, _, change = self._acquire(
                keys=self.keys, args=[self.config.recovery_timeout, self.config.half_open_max_calls, token]
            )
        except redis.RedisError as exc:
            logger.warning(
                "circuit breaker of %s unavailable (%s); calling without it",
                self.service,
                exc,
                extra=logs.fields(service=self.service),
            )
            return Permit(True, False, 0.0, "", None)
        return Permit(decision != "deny", decision == "probe", float(wait), token, _change(change))

    def record(self, permit: Permit, outcome: str) -> tuple[str, str] | None:
        """Report how the call went: ``success``, ``failure`` or ``neutral``; the change it caused, if any."""
        if not permit.token:
            return None  # acquired while Redis was unreachable
        try:
            _, change = self._record(
                keys=self.keys, args=[outcome, self.config.window, self.config.failure_threshold, permit.token]
            )
        except redis.RedisError as exc:
            logger.warning(
                "circuit breaker of %s unavailable (%s); outcome not recorded",
                self.service,
                exc,
                extra=logs.fields(service=self.service),
            )
            return None
        return _change(change)

    def status(self) -> dict[str, Any]:
        state, failures, probes, opened_at, changed_at, times_opened, now = self._status(
            keys=self.keys, args=[self.config.window]
        )
        retry_in = None
        if state == BreakerState.OPEN and opened_at:
            retry_in = max(0.0, float(opened_at) + self.config.recovery_timeout - float(now))
        return {
            "service": self.service,
            "state": state,
            "failures_in_window": int(failures),
            "probes": int(probes),
            "opened_at": float(opened_at) if opened_at else None,
            "changed_at": float(changed_at) if changed_at else None,
            "times_opened": int(times_opened),
            "recovery_in": retry_in,
            **{name: getattr(self.config, name) for name in sorted(BREAKER_FIELDS)},
        }

    def reset(self) -> None:
        """Close the breaker and forget its failures."""
        self._client.delete(*self.keys)


def breaker_settings(service: str) -> BreakerSettings:
    """The settings of ``service``'s breaker: SAGAS["BREAKER"] with SAGAS["BREAKERS"][service] on top."""
    values = {**sagas_settings.BREAKER, **sagas_settings.BREAKERS.get(service, {})}
    unknown = set(values) - BREAKER_FIELDS
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown circuit breaker setting(s) {', '.join(sorted(unknown))} for service {service!r}; "
            f"known: {', '.join(sorted(BREAKER_FIELDS))}."
        )
    config = BreakerSettings(**values)
    if config.problems():
        raise ImproperlyConfigured(f"Circuit breaker of service {service!r}: {'; '.join(config.problems())}.")
    return config


def redis_url() -> str | None:
    """Where breakers live: SAGAS["REDIS_URL"], else the REDIS_URL setting, else the Celery app's broker URL when
    it is Redis."""
    for url in (sagas_settings.REDIS_URL, getattr(settings, "REDIS_URL", None), celery_setting("broker_url")):
        if isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://")):
            return url
    return None


_clients: dict[tuple[int, str], redis.Redis] = {}


def redis_client(url: str) -> redis.Redis:
    """The framework's Redis client for ``url`` (replies decoded to str), one per process: a forked pool process
    must not share its parent's sockets."""
    # One client per process: a forked pool process must not share its parent's sockets.
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    return _clients[key]


def for_service(service: str) -> CircuitBreaker | None:
    """The breaker of ``service``, or None when breakers are off for it or no Redis is configured."""
    config = breaker_settings(service)
    url = redis_url()
    if not config.enabled or url is None:
        return None
    return CircuitBreaker(service, redis_client(url), sagas_settings.KEY_PREFIX, config)


def outcome_of(exc: BaseException) -> str:
    """What a failed call tells the breaker: ``failure``, ``success`` (it answered) or ``neutral``."""
    if isinstance(exc, TransientError) and not exc.service_fault:
        return "neutral"
    return OUTCOME_OF_CLASS[classify(exc)]


def known_services() -> list[str]:
    """Services named by registered sagas' steps, and any that have breaker state in Redis."""
    names = {step.service for saga in all_sagas() for step in saga.steps if step.service}
    url = redis_url()
    if url is not None:
        prefix = f"{sagas_settings.KEY_PREFIX}:breaker:"
        for key in redis_client(url).scan_iter(match=f"{prefix}*"):
            names.add(key[len(prefix) :].split(":")[0])
    return sorted(names)


def statuses() -> list[dict[str, Any]]:
    """The status of the breaker of every known service (see ``CircuitBreaker.status``), disabled ones left out."""
    found = [for_service(service) for service in known_services()]
    return [breaker.status() for breaker in found if breaker is not None]
