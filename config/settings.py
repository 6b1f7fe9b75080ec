"""Settings for auditlog. Every knob comes from the environment (or an optional `.env`).

See docs/configuration.md and docs/connections.md for what each one does.
"""

import logging
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Real environment variables win over the file: read_env only fills in what is unset.
ENV_FILE = env.str("DJANGO_ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE)

DEBUG = env.bool("DJANGO_DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="django-insecure-dev-only-key-do-not-deploy")
else:
    try:
        SECRET_KEY = env.str("DJANGO_SECRET_KEY")
    except ImproperlyConfigured:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it in the environment or in .env "
            "(`make .env` writes one with a fresh random key), or set DJANGO_DEBUG=true "
            "for a development-only default."
        ) from None
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "auditlog.apps.AuditlogConfig",
]

# API requests (/api/, the probes) skip the middleware only the admin needs: Django's own,
# wrapped to pass them straight through (auditlog.http.site_middleware). They keep those whose work
# is a few attribute reads for them and which system checks look for by name: security, CSRF
# (the API views are csrf_exempt), X-Frame-Options, axes.
MIDDLEWARE = [
    # Outermost: a request id for every request, in every answer and log line; metrics and the
    # request's log line see the final status (auditlog.monitoring.requests).
    "auditlog.monitoring.requests.RequestObservationMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "auditlog.http.site_middleware.WhiteNoiseMiddleware",
    "auditlog.http.middleware.ApiErrorMiddleware",
    "auditlog.http.site_middleware.SessionMiddleware",
    "auditlog.http.site_middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "auditlog.http.site_middleware.AuthenticationMiddleware",
    # Who changes access (users, groups, permissions, API keys), for their audit events.
    "auditlog.admin.access.ActingRequestMiddleware",
    "auditlog.http.site_middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
# The connection setup is the point of this service: see docs/connections.md, and for the
# facts about Django it relies on, docs/django-connections.md. `python manage.py
# auditlog_dbcheck` prints what is in effect.

# Two roles on PostgreSQL (docs/roles.md): DATABASE_URL is the runtime role the service connects
# as; DATABASE_MAINTENANCE_URL, when set, the role that owns the tables, which the commands that
# change the schema or the trail's tables use (manage.py sets AUDITLOG_DATABASE_ROLE=maintenance
# for them). The runtime role is DATABASE_URL's user unless DATABASE_RUNTIME_ROLE says otherwise:
# migrate grants it its privileges, and checks read what it can do.
AUDITLOG_DATABASE_ROLE = env.str("AUDITLOG_DATABASE_ROLE", default="runtime")
if AUDITLOG_DATABASE_ROLE not in ("runtime", "maintenance"):
    raise ImproperlyConfigured(
        f"AUDITLOG_DATABASE_ROLE={AUDITLOG_DATABASE_ROLE!r}: use runtime (the default) or maintenance"
    )
_runtime_database = env.db_url("DATABASE_URL", default="sqlite:///db.sqlite3")
AUDITLOG_RUNTIME_ROLE = env.str("DATABASE_RUNTIME_ROLE", default=_runtime_database.get("USER", ""))
# PgBouncer in transaction mode between the web processes and PostgreSQL (docs/pgbouncer.md):
# DATABASE_URL names PgBouncer and DATABASE_POOLER=pgbouncer-transaction says so; manage.py's
# commands, which keep session state (their own timeouts, advisory locks, migrations), connect
# to PostgreSQL itself with DATABASE_DIRECT_URL (manage.py sets AUDITLOG_DATABASE_ROUTE=direct),
# or as the maintenance role with DATABASE_MAINTENANCE_URL.
DATABASE_POOLER = env.str("DATABASE_POOLER", default="")
if DATABASE_POOLER not in ("", "pgbouncer-transaction"):
    raise ImproperlyConfigured(f"DATABASE_POOLER={DATABASE_POOLER!r}: pgbouncer-transaction, or unset")
if AUDITLOG_DATABASE_ROLE == "maintenance" and env.str("DATABASE_MAINTENANCE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_MAINTENANCE_URL")}
    DATABASE_POOLER = ""
elif env.str("AUDITLOG_DATABASE_ROUTE", default="") == "direct" and env.str(
    "DATABASE_DIRECT_URL", default=""
):
    DATABASES = {"default": env.db_url("DATABASE_DIRECT_URL")}
    DATABASE_POOLER = ""
else:
    DATABASES = {"default": _runtime_database}
DATABASE = DATABASES["default"]
DATABASE.setdefault("OPTIONS", {})

CONN_MAX_AGE = env.int("CONN_MAX_AGE", default=600)
CONN_HEALTH_CHECKS = env.bool("CONN_HEALTH_CHECKS", default=True)
DATABASE_POOL = env.bool("DATABASE_POOL", default=False)
SQLITE_BUSY_TIMEOUT = env.float("SQLITE_BUSY_TIMEOUT", default=5.0)
# PostgreSQL bounds, in seconds (docs/timeouts.md justifies each default). The client timeout
# is the last resort for a server that accepts and never answers (the kernel keeps
# acknowledging, so only the client can give up): above the statement timeout, so the server's
# own error, which keeps the connection usable, normally comes first.
DATABASE_STATEMENT_TIMEOUT = env.float("DATABASE_STATEMENT_TIMEOUT", default=3.0)
DATABASE_LOCK_TIMEOUT = env.float("DATABASE_LOCK_TIMEOUT", default=2.0)
DATABASE_IDLE_IN_TRANSACTION_TIMEOUT = env.float("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", default=10.0)
DATABASE_CLIENT_TIMEOUT = env.float("DATABASE_CLIENT_TIMEOUT", default=DATABASE_STATEMENT_TIMEOUT + 1.0)
DATABASE_TCP_USER_TIMEOUT = env.float("DATABASE_TCP_USER_TIMEOUT", default=4.0)
# All the database waits of one request together (the client sending its body not counted).
DATABASE_REQUEST_TIMEOUT = env.float("DATABASE_REQUEST_TIMEOUT", default=8.0)
# /readyz answers within this many seconds whatever the database does.
AUDITLOG_READYZ_TIMEOUT = env.float("AUDITLOG_READYZ_TIMEOUT", default=2.0)

if DATABASE["ENGINE"] == "django.db.backends.sqlite3":
    # Django's, creating the database file (and so its -wal and -shm) readable by its owner only.
    DATABASE["ENGINE"] = "auditlog.db.sqlite3"
    if DATABASE["NAME"] != ":memory:" and not Path(DATABASE["NAME"]).is_absolute():
        DATABASE["NAME"] = str(BASE_DIR / DATABASE["NAME"])
    DATABASE["OPTIONS"].update(
        {
            # Writers wait for the lock (busy timeout) instead of failing at once, and a
            # transaction takes the write lock at BEGIN, so read-then-write cannot deadlock.
            "timeout": SQLITE_BUSY_TIMEOUT,
            "transaction_mode": "IMMEDIATE",
            # WAL: readers never block the writer. NORMAL is durable against app crashes.
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
        }
    )
    # A file test database, so tests run with WAL and real locking, like production.
    DATABASE["TEST"] = {"NAME": env.str("SQLITE_TEST_NAME", default=str(BASE_DIR / ".test-db.sqlite3"))}
    DATABASE["CONN_MAX_AGE"] = CONN_MAX_AGE
    DATABASE["CONN_HEALTH_CHECKS"] = CONN_HEALTH_CHECKS
elif DATABASE["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a health check that needs no round trip (auditlog/db/postgresql).
    DATABASE["ENGINE"] = "auditlog.db.postgresql"
    # Every wait on the server is bounded (docs/timeouts.md): a stalled database costs a request
    # a few seconds and a 503, never a hung worker thread.
    DATABASE["OPTIONS"].setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3))
    DATABASE["OPTIONS"].setdefault("application_name", "auditlog")
    # Server-side, set at connect (no round trip): a statement, a lock wait, a session left
    # idle inside a transaction. Commands that run long set their own (auditlog.db.timeouts).
    # PgBouncer refuses this startup parameter: its connect_query sets the same bounds on every
    # server connection it opens (deploy/pgbouncer.ini), and auditlog_dbcheck reads them back.
    if DATABASE_POOLER == "pgbouncer-transaction":
        # Each transaction may run on another server connection: no server-side cursor may
        # outlive one (Django's iterator() uses them), no statement prepared in one session.
        DATABASE["DISABLE_SERVER_SIDE_CURSORS"] = True
    else:
        DATABASE["OPTIONS"].setdefault(
            "options",
            f"-c statement_timeout={round(DATABASE_STATEMENT_TIMEOUT * 1000)}"
            f" -c lock_timeout={round(DATABASE_LOCK_TIMEOUT * 1000)}"
            f" -c idle_in_transaction_session_timeout={round(DATABASE_IDLE_IN_TRANSACTION_TIMEOUT * 1000)}",
        )
    # The network: keepalives find a dead peer of an idle connection; tcp_user_timeout ends a
    # connection whose sent data goes unacknowledged (a partition, a vanished host).
    DATABASE["OPTIONS"].setdefault("keepalives", 1)
    DATABASE["OPTIONS"].setdefault("keepalives_idle", env.int("DATABASE_KEEPALIVES_IDLE", default=10))
    DATABASE["OPTIONS"].setdefault("keepalives_interval", env.int("DATABASE_KEEPALIVES_INTERVAL", default=2))
    DATABASE["OPTIONS"].setdefault("keepalives_count", env.int("DATABASE_KEEPALIVES_COUNT", default=3))
    DATABASE["OPTIONS"].setdefault("tcp_user_timeout", round(DATABASE_TCP_USER_TIMEOUT * 1000))
    # The ingest INSERT runs as a prepared statement, prepared on its first use per connection
    # and row count: the server skips parsing and planning, a quarter of its CPU per insert.
    # Django's own queries bind client-side (psycopg's ClientCursor), which never prepares.
    # Off behind PgBouncer in transaction mode (before 1.21, or without
    # max_prepared_statements): a statement prepared in one server session is missing in the
    # next one PgBouncer hands out.
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=not DATABASE_POOLER):
        DATABASE["OPTIONS"].setdefault("prepare_threshold", 5)  # psycopg's own default
    DATABASE["CONN_HEALTH_CHECKS"] = CONN_HEALTH_CHECKS
    if DATABASE_POOL:
        DATABASE["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=8),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=2.0),
        }
        # Django's pool requires it: a request returns its connection to the pool when it ends.
        DATABASE["CONN_MAX_AGE"] = 0
    else:
        DATABASE["CONN_MAX_AGE"] = CONN_MAX_AGE
else:
    raise ImproperlyConfigured(
        f"DATABASE_URL: unsupported engine {DATABASE['ENGINE']}; use sqlite:// or postgres://"
    )

# A streaming replica for reads (docs/replicas.md): the admin, the API's GETs and the exports
# read the events there while it is up and at most DATABASE_REPLICA_MAX_LAG_SECONDS behind (10 s:
# a few health checks' worth above the millisecond lag of a healthy replica, well below what an
# auditor looking for what just happened would notice); the primary otherwise, and always for
# writes, idempotency and sealing. The alias is default's as built above (timeouts, keepalives,
# pool, pooler), with the replica's address and a short connect timeout (2 s, libpq's least).
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
DATABASE_REPLICA_MAX_LAG_SECONDS = env.float("DATABASE_REPLICA_MAX_LAG_SECONDS", default=10.0)
DATABASE_REPLICA_CHECK_SECONDS = env.float("DATABASE_REPLICA_CHECK_SECONDS", default=2.0)
if DATABASE_REPLICA_URL:
    _replica = env.db_url_config(DATABASE_REPLICA_URL)
    if "postgresql" not in DATABASE["ENGINE"] or _replica["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_REPLICA_URL is for PostgreSQL streaming replicas: DATABASE_URL and it must both be "
            "postgres:// URLs. SQLite has no replicas: unset DATABASE_REPLICA_URL."
        )
    DATABASES["replica"] = {
        **DATABASE,
        **{name: _replica[name] for name in ("NAME", "USER", "PASSWORD", "HOST", "PORT")},
        "OPTIONS": {
            **DATABASE["OPTIONS"],
            "connect_timeout": env.int("DATABASE_REPLICA_CONNECT_TIMEOUT", default=2),
            **_replica.get("OPTIONS", {}),
        },
        "TEST": {"MIRROR": "default"},  # tests read their own test database through it
    }
    DATABASE_ROUTERS = ["auditlog.db.replica.ReplicaRouter"]

# How many copies of this service share the database: the connection budget check multiplies.
AUDITLOG_APP_INSTANCES = env.int("AUDITLOG_APP_INSTANCES", default=1)

# Each POST is its own short transaction where it needs one; never the whole request.
DATABASE["ATOMIC_REQUESTS"] = False

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out user or address
    "django.contrib.auth.backends.ModelBackend",
]
# Admin login hardening: after N failures for one username, or from one address, further
# attempts are refused for a while. Lockouts show in the admin under "Axes".
AXES_FAILURE_LIMIT = env.int("AUDITLOG_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AUDITLOG_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# How many reverse proxies in front of this service append to X-Forwarded-For: the client is the
# address the outermost one added. 0: the header is ignored (REMOTE_ADDR). See auditlog/http/client_ip.py.
AUDITLOG_TRUSTED_PROXIES = env.int("AUDITLOG_TRUSTED_PROXIES", default=0)
AXES_CLIENT_IP_CALLABLE = "auditlog.http.client_ip.client_ip"
# 429 with Retry-After and "Try again in 15 minutes." instead of axes' bare message.
AXES_LOCKOUT_CALLABLE = "auditlog.admin.lockout.lockout_response"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve the admin's files straight from the apps, so `collectstatic` is optional.
WHITENOISE_USE_FINDERS = True

# --- HTTPS, for deployments behind a TLS-terminating proxy ----------------------------------
# Off by default so `make run` works on plain http://127.0.0.1; DJANGO_HTTPS=true in production.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=HTTPS)
if env.bool("DJANGO_BEHIND_PROXY", default=HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers probe over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])

# --- Limits of the API ------------------------------------------------------------------------
AUDITLOG_MAX_EVENT_BYTES = env.int("AUDITLOG_MAX_EVENT_BYTES", default=64 * 1024)
AUDITLOG_MAX_BATCH_BYTES = env.int("AUDITLOG_MAX_BATCH_BYTES", default=8 * 1024 * 1024)
AUDITLOG_MAX_BATCH_EVENTS = 1000
# The API reads the body itself, against the limits above.
DATA_UPLOAD_MAX_MEMORY_SIZE = AUDITLOG_MAX_BATCH_BYTES
AUDITLOG_RETRY_AFTER_SECONDS = env.int("AUDITLOG_RETRY_AFTER_SECONDS", default=1)
# Seconds a request body may take to arrive under gunicorn alone (behind nginx it arrives
# whole): a client that trickles it gets 408 instead of holding a worker thread.
AUDITLOG_BODY_TIMEOUT = env.float("AUDITLOG_BODY_TIMEOUT", default=10.0)
# Seconds an API key is cached per process: a revoked key stops working within this time.
AUDITLOG_API_KEY_CACHE_SECONDS = env.float("AUDITLOG_API_KEY_CACHE_SECONDS", default=5.0)
# PostgreSQL: events are partitioned by received_at, one partition per day, week or month
# (auditlog.db.partitions; docs/scale.md measures why a month), made AUDITLOG_PARTITIONS_AHEAD
# periods ahead by migrate, auditlog_partitions and auditlog_seal --follow (check auditlog.W005).
AUDITLOG_PARTITION_INTERVAL = env.str("AUDITLOG_PARTITION_INTERVAL", default="month")
if AUDITLOG_PARTITION_INTERVAL not in ("day", "week", "month"):
    raise ImproperlyConfigured(
        f"AUDITLOG_PARTITION_INTERVAL={AUDITLOG_PARTITION_INTERVAL!r}: use day, week or month"
    )
AUDITLOG_PARTITIONS_AHEAD = env.int("AUDITLOG_PARTITIONS_AHEAD", default=2)
# Tamper evidence (docs/trail-format.md): how old an event must be to be sealed (every
# transaction that could still commit a lower id has ended: a request's database work is bounded
# by DATABASE_REQUEST_TIMEOUT and the server's timeouts, seconds).
AUDITLOG_SEAL_DELAY_SECONDS = env.int("AUDITLOG_SEAL_DELAY_SECONDS", default=30)
# auditlog_seal --follow seals every AUDITLOG_SEAL_INTERVAL_SECONDS and signs a checkpoint at
# least every AUDITLOG_CHECKPOINT_INTERVAL_SECONDS, even when nothing arrived, so silence shows.
# auditlog_verify fails when an event older than AUDITLOG_SEAL_BOUND_SECONDS is not sealed, or
# when checkpoints are further apart (or the latest older) than AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS
# (0: not checked; sealing from cron every few minutes needs a larger one).
AUDITLOG_SEAL_INTERVAL_SECONDS = env.float("AUDITLOG_SEAL_INTERVAL_SECONDS", default=10.0)
AUDITLOG_CHECKPOINT_INTERVAL_SECONDS = env.int("AUDITLOG_CHECKPOINT_INTERVAL_SECONDS", default=60)
AUDITLOG_SEAL_BOUND_SECONDS = env.int("AUDITLOG_SEAL_BOUND_SECONDS", default=60)
AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS = env.int("AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS", default=150)
# The trail's Merkle tree (docs/trail-format.md): the Ed25519 key that signs its checkpoints, as
# `manage.py auditlog_keygen` writes it (PRIVATE+KEY+...), or a file holding it; and verifier
# keys (C2SP vkeys) accepted besides the signer key's own: earlier keys after a rotation, or
# every key, where auditlog_verify runs without the signer key.
AUDITLOG_TRAIL_KEY = env.str("AUDITLOG_TRAIL_KEY", default="")
AUDITLOG_TRAIL_KEY_FILE = env.str("AUDITLOG_TRAIL_KEY_FILE", default="")
AUDITLOG_TRAIL_VERIFIER_KEYS = env.list("AUDITLOG_TRAIL_VERIFIER_KEYS", default=[])
# Receipts (auditlog/trail/receipt.py): the Ed25519 key that signs the receipts a producer asks
# for with `Prefer: receipt` (held by the web processes: never the trail key), or a file holding
# it; unset, no receipts. Earlier receipt keys' verifier keys, published after a rotation.
AUDITLOG_RECEIPT_KEY = env.str("AUDITLOG_RECEIPT_KEY", default="")
AUDITLOG_RECEIPT_KEY_FILE = env.str("AUDITLOG_RECEIPT_KEY_FILE", default="")
AUDITLOG_RECEIPT_VERIFIER_KEYS = env.list("AUDITLOG_RECEIPT_VERIFIER_KEYS", default=[])
# Retention: auditlog_purge's default --older-than, in days (unset: no default).
AUDITLOG_RETENTION_DAYS = env.int("AUDITLOG_RETENTION_DAYS", default=None)
# Mounts /bench/empty, the framework-only baseline of `make bench`. Never in production.
AUDITLOG_BENCH_ENDPOINT = env.bool("AUDITLOG_BENCH_ENDPOINT", default=False)

# --- Logging: to stderr, where gunicorn and the live tests read it --------------------------
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
# Monitoring (docs/monitoring.md): Prometheus metrics at GET /metrics (a `metrics` key), one
# JSON log line per request, and sources gone silent.
AUDITLOG_METRICS = env.bool("AUDITLOG_METRICS", default=True)
AUDITLOG_REQUEST_LOG = env.bool("AUDITLOG_REQUEST_LOG", default=True)
AUDITLOG_LOG_FORMAT = env.str("AUDITLOG_LOG_FORMAT", default="json")
if AUDITLOG_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"AUDITLOG_LOG_FORMAT={AUDITLOG_LOG_FORMAT!r}: json or text")
# A write key's source is silent after this long without an event, unless its key says otherwise
# (auditlog.monitoring.silence says why a day).
AUDITLOG_SILENCE_AFTER_SECONDS = env.int("AUDITLOG_SILENCE_AFTER_SECONDS", default=86400)

# Every request writes a log line: skip what no line here uses (the logging HOWTO's
# "Optimization"): the caller's file and line, thread and multiprocessing names.
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "auditlog.monitoring.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": AUDITLOG_LOG_FORMAT}},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": "WARNING"},
        # 4xx answers are the client's business (and costly to log under load); 5xx still log.
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        "auditlog": {"handlers": ["stderr"], "level": LOG_LEVEL},
    },
}
