"""shopbus settings, read from the environment through django-environ.

With no variables set you get the local stack: SQLite under .local/, moto's server on 127.0.0.1 as the
AWS endpoint, and demo-safe defaults. Every variable is listed, with its default, in the README.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):
    """django-environ's, refusing a value it cannot read by its variable's name. The value itself is not
    repeated: a variable may hold a secret."""

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(cast, f"a {getattr(cast, '__name__', cast)}")
            raise environ.ImproperlyConfigured(f"{var} must be {kind}.") from None


env = _Env()
# The local stack's state: its SQLite database, its API key, what `make run` announced, logs. Test and
# benchmark stacks get their own, so they never replace the key a developer's `make run` keeps.
LOCAL_DIR = Path(env("LOCAL_DIR", default=str(BASE_DIR / ".local")))
LOCAL_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)

_INSECURE_LOCAL_KEY = "django-insecure-local-only-shopbus-key-never-used-outside-a-laptop"
SECRET_KEY = env("SECRET_KEY", default=_INSECURE_LOCAL_KEY if DEBUG else None)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# shopbus's own apps: the plumbing, the services, and the rooms built on the plumbing.
SHOPBUS_APPS = [
    "eventbus",
    "inventory",
    "orders",
    "payments",
    "notifications",
    "analytics",
    "audit",
    "observability",
    "sagas",
]
INSTALLED_APPS = [
    # The composition root first, so its templates (the admin index) take precedence: it holds the
    # dev-stack command and the admin helpers every app shares.
    "shopbus_site",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Its Swagger UI assets, so /api/docs works with no internet access.
    "ninja",
    *SHOPBUS_APPS,
]

MIDDLEWARE = [
    # First: health probes come by IP over plain HTTP and must not meet host checks or redirects.
    "observability.middleware.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files answered from memory before sessions and auth are touched (whitenoise's place).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # The API's protocol edges (413, 415, JSON errors) before anything reads the body.
    "orders.api.middleware.JsonApiMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shopbus_site.urls"
WSGI_APPLICATION = "shopbus_site.wsgi.application"

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

# --- Database -----------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{LOCAL_DIR / 'db.sqlite3'}")}
if not DATABASES["default"].get("ENGINE"):
    # Set but empty (an .env line left blank, a secret that did not resolve): never the local SQLite
    # file instead.
    raise environ.ImproperlyConfigured(
        "DATABASE_URL is set but is not a database URL: unset it for the local SQLite database, or give one "
        "such as postgres://user:password@host:5432/shopbus"
    )
# Kept open between requests and between a worker's receives, on SQLite too: opening one runs the
# PRAGMAs below and registers Django's SQL functions, a fifth of the web server's CPU under `make bench`
# when every request and every receive opened its own.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend with its per-statement conversions memoised (eventbus/sqlite_backend).
    DATABASES["default"]["ENGINE"] = "eventbus.sqlite_backend"
    # The local stack runs web, worker threads and beat against one file: WAL lets readers and the
    # single writer overlap, IMMEDIATE takes the write lock up front so no transaction dies upgrading
    # its read lock, and the timeout makes writers queue instead of failing. temp_store=MEMORY keeps the
    # statement journal that a multi-row write inside a transaction opens in memory, not in a temporary
    # file on disk created, written and unlinked for that one statement (docs/performance.md, item 31).
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Named here: pytest-django knows SQLite only by Django's own ENGINE name, and would otherwise name
    # a parallel worker's test database after a directory that does not exist.
    DATABASES["default"]["TEST"] = {"NAME": str(LOCAL_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Behind PgBouncer in transaction mode a server-side cursor cannot outlive its pooled transaction.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool(
        "DATABASE_DISABLE_SERVER_SIDE_CURSORS", default=False
    )
    # For worker processes (README, "Running in production"): parameters sent apart from the SQL, and
    # each statement prepared once per connection after psycopg's default of 5 runs, so the server
    # stops parsing and planning the same few statements every delivery and psycopg stops quoting
    # parameters into SQL text in Python; a delivery costs 17–19% less
    # (docs/performance.md, "Handler capacity"). Off by default, as in Django: a migration that
    # changes a column's type makes a connection's prepared statements that read it fail until a
    # rollback drops them; a worker's delivery fails once and is retried, but a web request outside a
    # transaction would fail until its connection is recycled. Behind PgBouncer in transaction mode it
    # needs PgBouncer 1.21+ with max_prepared_statements set.
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=False):
        DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["shopbus_site.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` gathers the files the web process serves (whitenoise reads them at start-up).
STATIC_ROOT = env("STATIC_ROOT", default=str(LOCAL_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names, so the files can be cached for ever; gzip copies, so they are sent compressed.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Error reports (the DEBUG 500 page, error emails) hide every setting and META value that can carry a
# secret, connection strings included.
DEFAULT_EXCEPTION_REPORTER_FILTER = "shopbus_site.debug.SecretMaskingExceptionReporterFilter"

# --- Security (only matters with DEBUG off; `manage.py check --deploy` is clean then) -------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env.bool("BEHIND_TLS_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- AWS ----------------------------------------------------------------------------------------
AWS_REGION = env("AWS_REGION", default=env("AWS_DEFAULT_REGION", default="us-east-1"))
LOCAL_AWS_PORT = env.int("LOCAL_AWS_PORT", default=4566)
WEB_PORT = env.int("WEB_PORT", default=8000)

_has_real_credentials = any(
    os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE")
)
if "AWS_ENDPOINT_URL" in os.environ:
    # Explicitly empty means real AWS with whatever credential chain the machine has (an IAM role).
    AWS_ENDPOINT_URL = os.environ["AWS_ENDPOINT_URL"] or None
elif _has_real_credentials:
    AWS_ENDPOINT_URL = None
else:
    AWS_ENDPOINT_URL = f"http://127.0.0.1:{LOCAL_AWS_PORT}"
USES_LOCAL_AWS = AWS_ENDPOINT_URL is not None
# moto's server accepts any credentials, but botocore needs some to sign with. They are handed to
# boto3 directly, never written into os.environ, where child processes would take them for real ones.
LOCAL_AWS_CREDENTIALS = (
    {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    if USES_LOCAL_AWS and not _has_real_credentials
    else {}
)

AWS_RESOURCE_PREFIX = env("AWS_RESOURCE_PREFIX", default="")
EVENT_BUS_NAME = env("EVENT_BUS_NAME", default="ecommerce-events")
RESOURCE_TAGS = {
    "Environment": env("ENVIRONMENT_NAME", default="local"),
    "Project": env("PROJECT_TAG", default="shopbus"),
    "Owner": env("OWNER_TAG", default="platform-team"),
}
SQS_MAX_RECEIVE_COUNT = env.int("SQS_MAX_RECEIVE_COUNT", default=5)
EVENT_ARCHIVE_RETENTION_DAYS = env.int("EVENT_ARCHIVE_RETENTION_DAYS", default=90)

# --- Event plumbing -----------------------------------------------------------------------------
OUTBOX_RELAY_INTERVAL_SECONDS = env.int("OUTBOX_RELAY_INTERVAL_SECONDS", default=10)
# How long a relay's claim on the rows it publishes lasts unless renewed. A live relay renews it every
# third of the lease while it publishes; a dead one's rows wait this long, or not at all when a relay on
# the same host sees the process gone (docs/architecture.md, "Publishing").
OUTBOX_CLAIM_LEASE_SECONDS = env.int("OUTBOX_CLAIM_LEASE_SECONDS", default=15)
OUTBOX_MAX_BACKOFF_SECONDS = env.int("OUTBOX_MAX_BACKOFF_SECONDS", default=300)
# Whether a web process publishes what its requests commit itself (relay threads of its own, which
# need events:PutEvents) or kicks a worker's relay through the broker (docs/architecture.md).
OUTBOX_RELAY_IN_WEB = env.bool("OUTBOX_RELAY_IN_WEB", default=True)
# Comma-separated services whose queues this worker consumes; empty means every service.
EVENT_CONSUMERS = env.list("EVENT_CONSUMERS", default=[])
EVENT_CONSUMER_WAIT_SECONDS = env.int("EVENT_CONSUMER_WAIT_SECONDS", default=5)
# How long analytics' and audit's pollers let events gather after a receive that was not full: their
# figures and trail lag by up to this much, and take a fraction of the receives, deletes and statements.
EVENT_BATCHING_WINDOW_MS = env.int("EVENT_BATCHING_WINDOW_MS", default=1000)
# A failed message becomes visible again after base * 2^(receives-1) seconds, capped at the queue's
# visibility timeout, instead of always waiting out the whole timeout.
EVENT_RETRY_BASE_SECONDS = env.int("EVENT_RETRY_BASE_SECONDS", default=2)

# --- The order saga's coordinator (docs/sagas.md) ------------------------------------------------
# choreography: each service reacts to the others' events (orders is the process manager).
# stepfunctions: the <prefix>order-saga state machine commands each step and compensates failures.
ORDER_SAGA = env("ORDER_SAGA", default="choreography")
if ORDER_SAGA not in {"choreography", "stepfunctions"}:
    raise environ.ImproperlyConfigured(f"ORDER_SAGA must be choreography or stepfunctions, not {ORDER_SAGA!r}")
# A step that gets no answer in this long fails with States.Timeout and the order is compensated
# (TIMEOUT); this replaces the beat-driven stuck-order sweep in that mode.
SAGA_STEP_TIMEOUT_SECONDS = env.int("SAGA_STEP_TIMEOUT_SECONDS", default=300)
# Transient step failures (a gateway error, a failed PutEvents) are retried this many times.
SAGA_STEP_RETRY_ATTEMPTS = env.int("SAGA_STEP_RETRY_ATTEMPTS", default=3)
SAGA_STEP_RETRY_INTERVAL_SECONDS = env.int("SAGA_STEP_RETRY_INTERVAL_SECONDS", default=2)

# --- Metrics, alarms and tracing (docs/observability.md) -----------------------------------------
# Each worker aggregates per-delivery metrics in memory and flushes them this often: to the database
# (the event-flow dashboard) and, where enabled, to CloudWatch (ECommerce/EventDriven).
METRICS_FLUSH_SECONDS = env.float("METRICS_FLUSH_SECONDS", default=10)
METRICS_CLOUDWATCH = env.bool("METRICS_CLOUDWATCH", default=not USES_LOCAL_AWS)
METRICS_RETENTION_DAYS = env.int("METRICS_RETENTION_DAYS", default=14)
METRICS_HEARTBEAT_LOG_SECONDS = env.int("METRICS_HEARTBEAT_LOG_SECONDS", default=60)
# Alarm thresholds: one definition drives CloudWatch on AWS and the dashboard's own evaluation.
ALARM_DLQ_MESSAGES = env.int("ALARM_DLQ_MESSAGES", default=0)
ALARM_QUEUE_AGE_SECONDS = env.int("ALARM_QUEUE_AGE_SECONDS", default=300)
ALARM_OUTBOX_AGE_SECONDS = env.int("ALARM_OUTBOX_AGE_SECONDS", default=120)
ALARM_FAILURE_RATE = env.float("ALARM_FAILURE_RATE", default=0.05)
ALARM_PERIOD_SECONDS = env.int("ALARM_PERIOD_SECONDS", default=300)
ALARM_SNS_TOPIC_ARN = env("ALARM_SNS_TOPIC_ARN", default="")

# --- Shop ---------------------------------------------------------------------------------------
SHOP_CURRENCY = env("SHOP_CURRENCY", default="USD")
ORDER_MAX_ITEMS = env.int("ORDER_MAX_ITEMS", default=50)
ORDER_MAX_QUANTITY = env.int("ORDER_MAX_QUANTITY", default=1000)
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
# Orders still PLACED or RESERVED after this long are cancelled with reason TIMEOUT.
ORDER_TIMEOUT_MINUTES = env.int("ORDER_TIMEOUT_MINUTES", default=15)

# --- Payments -----------------------------------------------------------------------------------
PAYMENT_GATEWAY = env("PAYMENT_GATEWAY", default="payments.gateways.SimulatedGateway")
PAYMENT_SIMULATED_LATENCY_MS = env.int("PAYMENT_SIMULATED_LATENCY_MS", default=0)
PAYMENT_SIMULATED_DECLINE_RATE = env.float("PAYMENT_SIMULATED_DECLINE_RATE", default=0.0)
# A gateway answer in a receive's set waits up to this long (and one more call) for the set's next
# answers, to be recorded with them in one transaction; after a call this slow, the answers in hand
# are recorded before the next call (docs/architecture.md, "Payments and the gateway").
PAYMENT_ANSWER_HOLD_MS = env.int("PAYMENT_ANSWER_HOLD_MS", default=50)
# A charge whose gateway call fails (timeout, 5xx) this many times, one call per delivery, ends as
# Payment Failed (GATEWAY_ERROR), so the order cancels now. Keep it below SQS_MAX_RECEIVE_COUNT, or the
# message reaches the DLQ first (checked at start-up; docs/architecture.md, "Payments and the gateway").
PAYMENT_MAX_GATEWAY_ATTEMPTS = env.int("PAYMENT_MAX_GATEWAY_ATTEMPTS", default=3)

# --- Notifications ------------------------------------------------------------------------------
# consolemail:// prints emails, filemail:////absolute/path writes them (django-environ drops a slash),
# smtp://user:pass@host:587 sends them (for SES, its SMTP endpoint: smtp://KEY:SECRET@email-smtp.<region>.amazonaws.com:587/?tls=True).
# django-environ's documented idiom: sets EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, … from one URL.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="shopbus <orders@shopbus.localhost>")
STAFF_ALERT_EMAIL = env("STAFF_ALERT_EMAIL", default="staff@shopbus.localhost")
NOTIFICATION_MAX_RETRIES = env.int("NOTIFICATION_MAX_RETRIES", default=5)

# --- Celery (internal tasks only: relay kicks, notification sends, periodic jobs) ---------------
if USES_LOCAL_AWS:
    from urllib.parse import urlsplit

    _endpoint = urlsplit(AWS_ENDPOINT_URL)
    _key = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
    _secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
    _default_broker = f"sqs://{_key}:{_secret}@{_endpoint.hostname}:{_endpoint.port or 80}"
else:
    _default_broker = "sqs://"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=_default_broker)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "region": AWS_REGION,
    # Celery's queues get their own names so they can never be mistaken for an event queue:
    # Celery deletes messages it does not understand.
    "queue_name_prefix": f"{AWS_RESOURCE_PREFIX}shopbus-tasks-",
    "wait_time_seconds": 5,
    "polling_interval": 0.2,
    "visibility_timeout": 300,
}
if USES_LOCAL_AWS and CELERY_BROKER_URL.startswith("sqs://"):
    CELERY_BROKER_TRANSPORT_OPTIONS["is_secure"] = AWS_ENDPOINT_URL.startswith("https")
CELERY_TASK_ACKS_LATE = True
# Celery's default window of four tasks per pool thread. With one, each slot held until its task is
# acknowledged (acks are late), the worker often had no room to fetch, and a relay kick took 0.7 s at
# the median from the web server's send to the worker under `make bench`; 0.13 s with four
# (docs/performance.md).
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# What a task prints (the console email backend's emails) is information, not a warning.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_BEAT_SCHEDULE_FILENAME = env("CELERY_BEAT_SCHEDULE_FILENAME", default=str(LOCAL_DIR / "celerybeat-schedule"))
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE = {
    "relay-outbox": {"task": "eventbus.tasks.relay_outbox", "schedule": OUTBOX_RELAY_INTERVAL_SECONDS},
    "purge-idempotency-keys": {"task": "orders.tasks.purge_expired_idempotency_keys", "schedule": 3600},
    "cancel-stuck-orders": {"task": "orders.tasks.cancel_stuck_orders", "schedule": 60},
    "prune-metrics": {"task": "eventbus.tasks.prune_metrics", "schedule": 3600},
    "send-saga-replies": {"task": "sagas.tasks.send_saga_replies", "schedule": 15},
    "send-stuck-notifications": {"task": "notifications.tasks.send_stuck_notifications", "schedule": 300},
}

# --- Logging ------------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# `json` writes one JSON object per line, for log shippers; `plain` is for people.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "shopbus_site.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {app: {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False} for app in SHOPBUS_APPS},
}
