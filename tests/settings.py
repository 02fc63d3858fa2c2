"""Test settings: the project settings on PostgreSQL and a private Redis database and queue."""

import atexit
import os
import shutil
import tempfile

# The suite runs the development settings, explicitly (the project's default is production: DEBUG off, a key needed).
os.environ.setdefault("DJANGO_DEBUG", "1")
# The schema fuzzer sends hundreds of requests as one user; tests of throttling set their own rates.
os.environ.setdefault("API_THROTTLE_USER", "100000/min")
os.environ.setdefault("API_THROTTLE_ANON", "100000/min")
# Tests always run on PostgreSQL and real Redis, whatever DATABASE_URL a developer has exported.
os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ["CELERY_BROKER_URL"] = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/14")
# A test session (each pytest-xdist worker is one) has its own queue, Redis key prefix (the queue's name) and
# Prometheus directory, so two suites on one machine, or two xdist workers of one suite, never take each other's
# messages or counts. Worker subprocesses inherit the variables, so they consume exactly what their session sends;
# an xdist worker inherits its controller's and makes its own (the session's name ends with the xdist worker's id).
if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("SAGAS_TEST_SESSION", "").endswith(
    f"-{os.environ['PYTEST_XDIST_WORKER']}"
):
    os.environ.pop("SAGAS_TEST_SESSION", None)  # the controller's
if not os.environ.get("SAGAS_TEST_SESSION"):
    os.environ["SAGAS_TEST_SESSION"] = "-".join(filter(None, [str(os.getpid()), os.environ.get("PYTEST_XDIST_WORKER")]))
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = f"sagas-test-{os.environ['SAGAS_TEST_SESSION']}"
    # Prometheus counts of this session in one directory (multiprocess mode), set before anything imports
    # prometheus_client: /metrics in a test sums what the session's worker subprocesses counted.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"sagas-metrics-{os.getpid()}-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

from sagaproject.settings import *  # noqa: F403
from sagaproject.settings import DATABASES, INSTALLED_APPS

# One test database per session, so two suites on one machine (a developer's and CI's) never drop each other's.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", f"test_sagas_{os.getpid()}")}
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Fast compensation budgets keep failure scenarios short; sagas may still set their own.
SAGAS = {
    "LEASE_SECONDS": int(os.environ.get("SAGAS_LEASE_SECONDS", "60")),
    "REAPER_INTERVAL": int(os.environ.get("SAGAS_REAPER_INTERVAL", "15")),
    "DEFAULT_RETRY": {"max_attempts": 3, "backoff": 0.1, "backoff_max": 1.0},
    "DEFAULT_COMPENSATION_RETRY": {"max_attempts": 3, "backoff": 0.1, "backoff_max": 1.0},
    # A step's hard limit comes a second after its soft limit, so hard-kill tests stay short.
    "TIME_LIMIT_GRACE": 1,
    # `make test-faults-eager` runs the fault suite with every sequence eager (sagas/eager.py).
    "EAGER": os.environ.get("SAGAS_EAGER") == "1",
    # `make test-portable` runs the service tests on the portable write path, on PostgreSQL too.
    "WRITE_PATH": os.environ.get("SAGAS_WRITE_PATH", "auto"),
    # Breaker keys of this session only (the queue name is per session and shared with its workers).
    "KEY_PREFIX": os.environ["CELERY_TASK_DEFAULT_QUEUE"],
    # The test services' breakers open and recover quickly; the example services keep the defaults.
    "BREAKERS": {
        "svc-x": {
            "failure_threshold": 3,
            "window": 60,
            "recovery_timeout": 3,
            "half_open_max_calls": 1,
            "retry_spread": 0.5,
        },
        "svc-y": {"failure_threshold": 3, "window": 60, "recovery_timeout": 1, "retry_spread": 0.5},
    },
    # Snapshots often, so the rebuild check after every test (tests/rebuild_check.py) compares many of them.
    "SNAPSHOT_EVERY": 7,
    # A worker started by a test may serve its own metrics (tests/integration/test_worker_metrics.py).
    "WORKER_METRICS_PORT": int(os.environ.get("SAGAS_WORKER_METRICS_PORT") or 0) or None,
    # A worker started by a test may trace, and send what it publishes to that test's queue
    # (tests/integration/test_tracing.py).
    "TRACING": os.environ.get("SAGAS_TRACING") == "1",
    "QUEUE": os.environ.get("SAGAS_QUEUE") or None,
}

# The fault suite drops errbacks by routing them to a queue no worker consumes.
if os.environ.get("SAGAS_FAULT_DROP_ERRBACKS"):
    CELERY_TASK_ROUTES = {"sagas.on_step_failure": {"queue": "errbacks-nobody-consumes"}}
# ... and loses a receiver's deliveries after they were published the same way (tests/faults/test_receivers.py):
# the broker took them, and then nobody will ever get them, as when Redis restarts without its data.
if os.environ.get("SAGAS_FAULT_LOSE_DELIVERIES"):
    CELERY_TASK_ROUTES = {
        f"sagas.receiver.{os.environ['SAGAS_FAULT_LOSE_DELIVERIES']}": {"queue": "deliveries-nobody-consumes"}
    }
