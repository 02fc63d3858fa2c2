"""Settings for the saga project, read from the environment (see .env.example)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str | None = None) -> str:
    # An empty value counts as unset: `DJANGO_SECRET_KEY=` must not become an empty key.
    value = os.environ.get(name) or default
    if value is None:
        raise ImproperlyConfigured(f"Set the environment variable {name} (see .env.example).")
    return value


def env_bool(name: str, default: bool) -> bool:
    return env(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


# Off unless asked for: a process started with no environment (`docker run` of the image) is a production one.
# `make demo`, `make web`/`worker` and the tests set DJANGO_DEBUG=1 themselves.
DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback key exists only in debug mode; without it a process refuses to start until DJANGO_SECRET_KEY is set.
SECRET_KEY = env("DJANGO_SECRET_KEY", "insecure-development-key" if DEBUG else None)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, not a CDN on the admin's origin
    "axes",
    "sagas",
    "participants.orders",
    "participants.inventory",
    "participants.payments",
    "participants.shipping",
    "participants.notifications",
    "participants.checkout",
    "participants.loyalty",
    "participants.analytics",
    "participants.fraud",
    "participants.airline",
    "participants.hotels",
    "participants.cars",
    "participants.travel",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: locks out a user and address after too many failed logins.
    "axes.middleware.AxesMiddleware",
]

# django-axes checks every login attempt first; the model backend then authenticates as usual.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = int(env("AXES_FAILURE_LIMIT", "5"))  # failed logins of one user from one address
AXES_COOLOFF_TIME = float(env("AXES_COOLOFF_HOURS", "1"))  # hours until a lockout lifts by itself
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Behind a proxy REMOTE_ADDR is the proxy's: name the header that carries the client's address there.
AXES_IPWARE_META_PRECEDENCE_ORDER = env_list("AXES_IP_HEADERS", "REMOTE_ADDR")

# Throttle counts of the API (and anything else cached). Set CACHE_URL (redis://...) so every web process shares
# them; without it each process counts on its own.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "sagas-web"}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

ROOT_URLCONF = "sagaproject.urls"
WSGI_APPLICATION = "sagaproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite (WAL, immediate transactions) is the zero-set-up default for `make demo`;
# PostgreSQL through DATABASE_URL is what production and the test suite use.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(env("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker processes write at once: WAL lets readers go on while one writes, and
    # IMMEDIATE takes the write lock at BEGIN so two writers never deadlock mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"].endswith("postgresql") and env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # Server-side parameter binding, and psycopg prepares a statement the connection sends a second time: workers
    # keep their connections (CELERY_DB_REUSE_MAX), so a step's statements are planned once per connection instead
    # of on every call (bench/README.md). Set DATABASE_PREPARED_STATEMENTS=0 behind a pooler in transaction mode
    # that does not track prepared statements (PgBouncer before 1.21, or without max_prepared_statements).
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 2}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development WhiteNoise serves straight from the apps' static folders; production runs collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# One console handler on the root logger: web processes log request errors even with DEBUG off, and
# Celery workers replace it with their own, so nothing is printed twice.
# SAGAS_LOG_FORMAT=json writes one JSON object per line instead (python-json-logger), with the fields the
# framework puts on its records (saga, run_id, step, attempt, task_id, ...: docs/configuration.md#logging).
LOG_FORMAT = env("SAGAS_LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"SAGAS_LOG_FORMAT must be 'plain' or 'json', got {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"sagas": {"level": env("SAGAS_LOG_LEVEL", "INFO")}},
}

# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (compose behind nginx, a PaaS router).
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# HSTS and the redirect to HTTPS usually belong to the proxy in front; set these where Django must do them.
SECURE_HSTS_SECONDS = int(env("DJANGO_HSTS_SECONDS", "0"))
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", False)

# --- Celery (docs/internals.md#publishing-after-commit-and-celery-settings): the database is the truth, messages
# are only triggers ---
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", "django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# With JSON logs, workers keep the root handler above instead of installing Celery's plain one.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
# Prefork is the pool that enforces time limits; the sagas app refuses pools that cannot (sagas.E001).
CELERY_WORKER_POOL = env("CELERY_WORKER_POOL", "prefork")
# A hard limit on every task; steps with their own `timeout` get tighter limits.
CELERY_TASK_TIME_LIMIT = int(env("CELERY_TASK_TIME_LIMIT", "300"))
CELERY_TASK_SOFT_TIME_LIMIT = int(env("CELERY_TASK_SOFT_TIME_LIMIT", "270"))
if CELERY_BROKER_URL.split("://", 1)[0] in ("amqp", "amqps", "pyamqp"):  # RabbitMQ (docs/rabbitmq.md)
    # Publisher confirms: a publish returns once RabbitMQ has taken the message, and raises when it did not, so a
    # step's commit is never followed by a message that silently went nowhere (the outbox and reaper take over).
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"confirm_publish": True}
    # Quorum queues as an option (`CELERY_QUEUE_TYPE=quorum`): replicated, and a message redelivered more than
    # RABBITMQ_DELIVERY_LIMIT times (it kills every worker that takes it) is dropped by the broker. Celery then
    # delays countdown messages in the broker (native delayed delivery), which needs topic exchanges.
    CELERY_TASK_DEFAULT_QUEUE_TYPE = env("CELERY_QUEUE_TYPE", "classic")
    CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = CELERY_TASK_DEFAULT_QUEUE_TYPE
    if CELERY_TASK_DEFAULT_QUEUE_TYPE == "quorum":
        CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
        CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = "topic"
        CELERY_TASK_QUEUES = {
            CELERY_TASK_DEFAULT_QUEUE: {
                "exchange": CELERY_TASK_DEFAULT_QUEUE,
                "exchange_type": "topic",
                "routing_key": CELERY_TASK_DEFAULT_QUEUE,
                "queue_arguments": {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": int(env("RABBITMQ_DELIVERY_LIMIT", "10")),
                },
            }
        }
else:
    # Redis redelivers anything unacked after this many seconds; it must exceed the longest
    # step hard limit plus the longest retry countdown, or a slow step runs twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": int(env("CELERY_VISIBILITY_TIMEOUT", "3600")),
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_SEND_TASK_EVENTS = True
# Celery's Django fixup closes the worker's database connections around every task unless this is set:
# a new PostgreSQL connection per saga step. Reused, a connection is closed after this many tasks (and
# whenever Django finds it unusable or older than CONN_MAX_AGE).
CELERY_DB_REUSE_MAX = int(env("CELERY_DB_REUSE_MAX", "1000"))
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# --- The REST API (sagas.api, mounted at /api/): token or session login, its schema at /api/schema/ ---
REST_FRAMEWORK = {
    # Token first: a request without credentials is answered 401 with a `WWW-Authenticate: Token` challenge.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Requests per client: by user (token or session), else by address. 429 with Retry-After beyond them.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("API_THROTTLE_ANON", "60/min"),
        "user": env("API_THROTTLE_USER", "1200/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Saga runs API",
    "VERSION": "1.0.0",
    "DESCRIPTION": (
        "Start sagas, read their runs (steps and event log, secrets masked), and retry, cancel or resolve them "
        "as an operator. Authenticate with a token (`Authorization: Token <key>`) or an admin session; each "
        "endpoint requires one of the saga run permissions the admin uses."
    ),
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI are for signed-in users (a token or an admin session), like the API itself.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies get their own components, so required fields and lengths are documented as enforced.
    "COMPONENT_SPLIT_REQUEST": True,
    # Three status enums share field names; name their components after what they are.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "sagas.states.RunStatus",
        "StepStatusEnum": "sagas.states.StepStatus",
        "EventTypeEnum": "sagas.states.EventType",
    },
}

# --- The saga framework (every key and its default is listed in sagas/conf.py) ---
SAGAS: dict[str, object] = {
    "LEASE_SECONDS": int(env("SAGAS_LEASE_SECONDS", "60")),
    "REAPER_INTERVAL": int(env("SAGAS_REAPER_INTERVAL", "15")),
    # Seconds before the reaper publishes a message again to a receiver with no receipt (the broker lost it).
    "OUTBOX_REDELIVER_AFTER": int(env("SAGAS_OUTBOX_REDELIVER_AFTER", "900")),
    # Where the admin links each step's task: Flower as the browser reaches it.
    "FLOWER_URL": env("SAGAS_FLOWER_URL", "http://127.0.0.1:5555"),
    # Who may read /metrics besides loopback: Prometheus sends `Authorization: Bearer <token>`.
    "METRICS_TOKEN": os.environ.get("SAGAS_METRICS_TOKEN") or None,
    # A worker's own metrics endpoint (its processes' counts), when a port is given: compose serves it on 9808.
    "WORKER_METRICS_PORT": int(env("SAGAS_WORKER_METRICS_PORT", "0")) or None,
    "WORKER_METRICS_ADDRESS": env("SAGAS_WORKER_METRICS_ADDRESS", "127.0.0.1"),
    # Retention: finished runs older than this age (e.g. `30d`) are purged every hour; unset, none are.
    "PURGE_AFTER": os.environ.get("SAGAS_PURGE_AFTER") or None,
    # OpenTelemetry spans (the `tracing` extra, and an SDK with an exporter the project configures).
    "TRACING": env_bool("SAGAS_TRACING", False),
}
