"""Settings come from the environment (DESIGN §3); defaults are safe for a local run."""

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from agent33.observability.logs import log_format_from_env, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=True)
HTTPS = env_bool("HTTPS", default=False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG=0 (for example: "
            "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))'))."
        )
    SECRET_KEY = "django-insecure-local-development-only-" + "x" * 20

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")

INSTALLED_APPS = [
    "agent33.admin_site.Agent33AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by this service (no CDN)
    "guardian",
    "axes",
    "agent33.tenancy",
    "django_tasks_db",  # the database queue's table (Django's tasks framework)
    "agent33.jobs",
    "operations",
    "multimodal",
    "outcomes",
    "webhooks",  # on top of the three: listens to their signals, none imports it
]

MIDDLEWARE = [
    "agent33.observability.middleware.RequestContextMiddleware",
    "agent33.observability.metrics.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "agent33.api.middleware.NoStoreMiddleware",
    "agent33.api.middleware.BodySizeLimitMiddleware",
    "agent33.tenancy.middleware.TenantContextMiddleware",
    "agent33.api.idempotency.IdempotencyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "agent33.tenancy.middleware.StaffTenantScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "agent33.urls"
WSGI_APPLICATION = "agent33.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "agent33" / "templates"],
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

# SQLite file in the project folder by default, so a newcomer needs no server.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Under pytest (which sets PYTEST_VERSION), live-server threads must not keep
        # connections open, or the test database cannot be dropped afterwards.
        conn_max_age=int(
            os.environ.get("DB_CONN_MAX_AGE", "0" if os.environ.get("PYTEST_VERSION") else "60")
        ),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the dev server, eager tasks and tests write concurrently.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    if os.environ.get("PYTEST_VERSION"):
        # The tests' database is a file, not Django's shared-cache in-memory default: there a
        # write fails at once ("database table is locked") while another connection (the live
        # hub's broker, a live server's request thread) reads the table, and Django's live
        # server shares one connection between its request threads. A file in WAL mode lets
        # readers and a writer run together, as `make run` does. pytest-xdist suffixes the
        # name per worker; Django deletes it when the run ends.
        DATABASES["default"]["TEST"] = {"NAME": str(
            Path(tempfile.gettempdir()) / f"agent33-tests-{os.getpid()}.sqlite3")}
elif os.environ.get("DB_POOL_SIZE"):
    # A pool of PostgreSQL connections per process (psycopg_pool), for the ASGI server: there
    # each request's synchronous view runs in a thread of its own, so a connection kept per
    # thread (CONN_MAX_AGE) would be one more connection per request until PostgreSQL
    # refuses. Connections go back to the pool when the request ends.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1, "max_size": int(os.environ["DB_POOL_SIZE"]), "timeout": 10,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # staff login rate limit (django-axes)
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Staff login: after 5 failures for one username from one address, locked for 15 minutes.
# Attempts are kept in the database, so every worker sees them.
AXES_ENABLED = env_bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.25"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# The lock-out keys on the same client address as the throttles: X-Forwarded-For only from
# AGENT33_TRUSTED_PROXIES (agent33/auth/proxies.py).
AXES_CLIENT_IP_CALLABLE = "agent33.auth.proxies.client_address"
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; only staff get object perms

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True  # admin static works without collectstatic in a local run

# One limit for every request body; larger bodies get a 413 JSON error before they are read.
AGENT33_MAX_BODY_BYTES = int(os.environ.get("AGENT33_MAX_BODY_BYTES", str(20 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = AGENT33_MAX_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000
DATA_UPLOAD_MAX_NUMBER_FILES = 100

# Cache: Redis when configured (shared by all workers: the auth generation, and the rate
# counters of throttles and allowances), else local memory, which those never use: without
# Redis they live in a file and in the database (agent33/auth/revocation.py, counters.py).
REDIS_URL = os.environ.get("REDIS_URL", os.environ.get("CACHE_URL", ""))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "agent33"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# HTTPS hardening only when HTTPS=1, so a plain-HTTP run with DEBUG=0 keeps working.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["agent33.auth.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["agent33.auth.permissions.HasRequiredScopes"],
    "DEFAULT_THROTTLE_CLASSES": ["agent33.auth.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("AGENT33_THROTTLE_RATE", "6000/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if env_bool("BROWSABLE_API") else []),
    "DEFAULT_PARSER_CLASSES": [
        "agent33.api.parsers.SafeJSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "agent33.api.pagination.LinkHeaderCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "agent33.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "STRICT_JSON": True,
    "COERCE_DECIMAL_TO_STRING": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AGENT33 control plane API",
    "DESCRIPTION": "Operations hub, multimodal requests and outcomes. Every error body is "
    '`{"detail", "code"}` (validation errors add `errors`).',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/v1",
    # /v1/docs/ loads Swagger UI from this service's static files: it works offline, and no
    # third-party script runs on a page staff open with an admin session.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TraceStatusEnum": "operations.choices.TraceStatus",
        "TraceCompletionStatusEnum": "operations.choices.TraceCompletionStatus",
        "WorkflowStartStatusEnum": "operations.choices.WorkflowStartStatus",
        "BudgetStatusEnum": "operations.choices.BudgetStatus",
        "IntakeStatusEnum": "operations.choices.IntakeStatus",
        "WorkflowRunStatusEnum": "operations.choices.WorkflowRunStatus",
        # Batches (DESIGN §8.4) added a second "action" and "state" choice set; these keep
        # the names the history's action and a multimodal request's state always had.
        "ActionEnum": "operations.choices.HistoryAction.values",
        "StateEnum": "multimodal.choices.RequestState",
        "BatchActionEnum": "operations.choices.ControlActionChoice",
        "BatchStateEnum": "operations.models.BatchState",
        "ModalityEnum": "multimodal.choices.Modality",
        "WebhookDeliveryStateEnum": "webhooks.choices.DeliveryState",
        "WebhookEventTypeEnum": "webhooks.choices.EventType",
        "WebhookDisabledReasonEnum": "webhooks.choices.DisabledReason",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "agent33.api.schema.add_error_responses",
        "agent33.api.schema.add_object_links",
    ],
}

# Background jobs (agent33/jobs): one `enqueue` call, two modes. Embedded (no
# CELERY_BROKER_URL): a durable queue in the database, run by `manage.py worker` together
# with the schedule below. Scaled out: Celery workers and beat on the broker.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
TASKS = {
    "default": {
        "BACKEND": "agent33.jobs.backends.CeleryBackend" if CELERY_BROKER_URL
        else "agent33.jobs.backends.DatabaseBackend",
    }
}
# Every periodic job, in both modes (Celery beat reads it as CELERY_BEAT_SCHEDULE).
AGENT33_SCHEDULE = {
    "reap-timed-out-multimodal-requests": {"job": "multimodal.tasks.reap_timeouts", "every": 30},
    "expire-autonomy-budgets": {"job": "operations.tasks.expire_budgets", "every": 30},
    "purge-idempotency-records": {"job": "agent33.purge_idempotency_records", "every": 3600},
    "prune-finished-jobs": {"job": "agent33.prune_jobs", "every": 3600},
    "purge-rate-counters": {"job": "agent33.purge_rate_counters", "every": 3600},
    "compact-row-counts": {"job": "agent33.compact_row_counts", "every": 60},
    "purge-expired-outcome-events": {"job": "outcomes.purge_expired_events", "every": 600},
    "sweep-webhook-deliveries": {"job": "webhooks.sweep", "every": 30},
    "prune-hub-events": {"job": "operations.tasks.prune_hub_events", "every": 60},
}
# Finished jobs are kept this long for staff to read, then pruned (hourly): successful ones
# a day, failed ones (listed in the hub's "Needs attention") two weeks.
AGENT33_JOBS_KEEP_SUCCEEDED_HOURS = float(os.environ.get("AGENT33_JOBS_KEEP_SUCCEEDED_HOURS",
                                                         "24"))
AGENT33_JOBS_KEEP_FAILED_DAYS = float(os.environ.get("AGENT33_JOBS_KEEP_FAILED_DAYS", "14"))
# A worker whose heartbeat is older than this is gone: its running jobs are queued again.
AGENT33_WORKER_STALE_SECONDS = float(os.environ.get("AGENT33_WORKER_STALE_SECONDS", "15"))

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", None)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE = {
    name: {"task": entry["job"], "schedule": float(entry["every"])}
    for name, entry in AGENT33_SCHEDULE.items()
}

# A multimodal create or execute waits this long (at most) for the worker's result before
# answering with the request as it is (`?wait=` per call, 0 to answer at once).
AGENT33_MULTIMODAL_WAIT_SECONDS = float(os.environ.get("AGENT33_MULTIMODAL_WAIT_SECONDS", "10"))
# Waiting requests each hold a server thread: at most this many wait at once per process
# (the others answer `processing` at once), so the rest of its threads serve everyone else.
AGENT33_MULTIMODAL_MAX_WAITING = int(os.environ.get("AGENT33_MULTIMODAL_MAX_WAITING", "2"))

# The live hub stream (operations/stream.py, DESIGN §8.4): a comment every this many seconds
# keeps idle connections open through proxies; the change log keeps this long for catch-up
# (`Last-Event-ID`); a stream ends after AGENT33_HUB_STREAM_MAX_SECONDS (the browser
# reconnects with its last id). Open streams per server process: an ASGI server holds no
# thread per stream; a threaded server (gunicorn gthread, runserver) holds one each, so keep
# AGENT33_HUB_STREAMS_THREADED below its threads. More: 503 `stream_capacity`.
AGENT33_HUB_STREAM_KEEPALIVE_SECONDS = float(
    os.environ.get("AGENT33_HUB_STREAM_KEEPALIVE_SECONDS", "15"))
AGENT33_HUB_STREAM_KEEP_SECONDS = float(os.environ.get("AGENT33_HUB_STREAM_KEEP_SECONDS", "600"))
AGENT33_HUB_STREAM_MAX_SECONDS = float(os.environ.get("AGENT33_HUB_STREAM_MAX_SECONDS", "3600"))
AGENT33_HUB_STREAM_POLL_SECONDS = float(os.environ.get("AGENT33_HUB_STREAM_POLL_SECONDS", "0.25"))
AGENT33_HUB_STREAM_RETRY_MS = int(os.environ.get("AGENT33_HUB_STREAM_RETRY_MS", "2000"))
AGENT33_HUB_STREAMS_MAX = int(os.environ.get("AGENT33_HUB_STREAMS_MAX", "500"))
AGENT33_HUB_STREAMS_THREADED = int(os.environ.get("AGENT33_HUB_STREAMS_THREADED", "8"))

# How long a worker trusts a token it looked up when nothing says it changed. Revocation,
# tenant deactivation and every token or tenant saved through the application bump the
# auth generation (agent33/auth/revocation.py), which every request checks, so they apply
# at once; this bound is for rows edited behind the application's back (psql). 0: no cache.
AGENT33_TOKEN_CACHE_SECONDS = float(os.environ.get("AGENT33_TOKEN_CACHE_SECONDS", "10"))
# Where processes on one host without a shared cache (REDIS_URL) keep the auth generation.
AGENT33_AUTH_STAMP_DIR = os.environ.get("AGENT33_AUTH_STAMP_DIR", "")

# Reverse proxies whose X-Forwarded-For is believed (comma-separated CIDRs); empty: the
# client is the connection's address, whatever headers it sends (agent33/auth/proxies.py).
AGENT33_TRUSTED_PROXIES = os.environ.get("AGENT33_TRUSTED_PROXIES", "")

# Encryption keys for stored provider credentials (comma-separated; first encrypts).
AGENT33_SECRET_KEYS = env_list("AGENT33_SECRET_KEYS")

# Outcome events one tenant may send through the API per minute (single, bulk, CTRF), shared
# by every process (agent33/auth/counters.py); 0: no limit (outcomes/limits.py).
AGENT33_EVENTS_PER_MINUTE = int(os.environ.get("AGENT33_EVENTS_PER_MINUTE", "60000"))

# Raw outcome events older than this many days are removed by the worker, in bounded batches
# (outcomes.services.events_purge_expired); rollups stay, so series over old periods still
# answer. Unset or empty: keep every event.
_retention = os.environ.get("AGENT33_EVENT_RETENTION_DAYS", "").strip()
if _retention and not (_retention.isdigit() and int(_retention) >= 1):
    raise ImproperlyConfigured(
        f"AGENT33_EVENT_RETENTION_DAYS must be a whole number of days, at least 1, or unset "
        f"(got {_retention[:20]!r})."
    )
AGENT33_EVENT_RETENTION_DAYS = int(_retention) if _retention else None

# A request that touched more trend keys than this has their decline evaluation queued as
# background jobs instead of evaluated before it answers (outcomes/services.py).
AGENT33_DECLINES_INLINE_KEYS = int(os.environ.get("AGENT33_DECLINES_INLINE_KEYS", "100"))

# Networks the server's outbound calls (provider base_urls, webhook URLs) may point into
# although they are private, loopback, ... (comma-separated CIDRs, e.g. a self-hosted
# OpenAI-compatible server or a receiver on the LAN). Empty: public addresses only
# (agent33/networks.py). The old name, AGENT33_PROVIDER_PRIVATE_NETWORKS, is still read: the
# networks of both are allowed.
AGENT33_OUTBOUND_PRIVATE_NETWORKS = os.environ.get("AGENT33_OUTBOUND_PRIVATE_NETWORKS", "")
AGENT33_PROVIDER_PRIVATE_NETWORKS = os.environ.get("AGENT33_PROVIDER_PRIVATE_NETWORKS", "")

# Seconds between a webhook delivery's tries (comma-separated; each gets ±20 % jitter); the
# delivery fails after the last. Empty: the Standard Webhooks schedule, 5 s, 5 min, 30 min,
# 2 h, 5 h, 10 h, 24 h (webhooks/delivery.py).
AGENT33_WEBHOOK_RETRY_SCHEDULE = os.environ.get("AGENT33_WEBHOOK_RETRY_SCHEDULE", "")
# The service's public base URL ("https://agent33.example.com"): alert payloads' links to the
# API and the staff pages start with it. Empty: the links are paths ("/v1/...").
AGENT33_PUBLIC_URL = os.environ.get("AGENT33_PUBLIC_URL", "")

# Platform default cloud provider settings.
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "")
ELEVENLABS_API_KEY = os.environ.get("ELEVENLABS_API_KEY", "")
ELEVENLABS_BASE_URL = os.environ.get("ELEVENLABS_BASE_URL", "")
OPENAI_COMPATIBLE_API_KEY = os.environ.get("OPENAI_COMPATIBLE_API_KEY", "")
OPENAI_COMPATIBLE_BASE_URL = os.environ.get("OPENAI_COMPATIBLE_BASE_URL", "")

# Other processes' PROMETHEUS_MULTIPROC_DIRs whose series GET /metrics merges with this
# service's own (e.g. the Celery workers' on the same host or a shared volume).
AGENT33_METRICS_MERGE_DIRS = env_list("AGENT33_METRICS_MERGE_DIRS")

# Logs: one JSON object per line in production, readable text in development (DEBUG=1).
# Every line carries the request id, tenant, token prefix, method and path of its request
# (agent33.observability.logs).
AGENT33_LOG_FORMAT = log_format_from_env()
if AGENT33_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(
        f"AGENT33_LOG_FORMAT must be 'json' or 'text', not {AGENT33_LOG_FORMAT!r}."
    )
LOGGING = logging_config(
    log_format=AGENT33_LOG_FORMAT,
    level=os.environ.get("LOG_LEVEL", "INFO"),
    quiet={
        "django.request": "ERROR",
    },
)
