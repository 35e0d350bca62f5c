"""Settings, all read from the environment so one code base runs as the demo, in CI and in production."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import dj_email_url

from ops import logs as ops_logs

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on", "t"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


DEBUG = env_flag("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "insecure-development-key-set-SECRET_KEY-in-production" if DEBUG or os.environ.get("PYTEST_VERSION") else ""
)
if not SECRET_KEY:
    # Production never falls back to a development key. This is the first thing a new deployment (daphne, a
    # manage.py command) meets, so it is one line saying what to set, not a traceback.
    raise SystemExit("SECRET_KEY is not set: set SECRET_KEY (production), or DEBUG=1 for development.")

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
# How many reverse proxies in front of the service append to X-Forwarded-For (0: the header is ignored, the
# socket's peer is the caller). Rate limits and the audit trail count callers by this address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "strawberry_django",
    "core",
    "web",
]

MIDDLEWARE = [
    "ops.requests.RequestLogMiddleware",  # outermost: request id, SQL count, duration, one log line per request
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files (the Workbench) with DEBUG off
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.sessions.SessionTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        # Under ASGI each request's sync code may run on a fresh thread, so persistent per-thread connections
        # pile up ("too many clients"): close them per request, or set DB_POOL_MAX_SIZE for a psycopg pool.
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
# Lets several checkouts or engineers run the suite at once on one machine without sharing test databases.
TEST_DB_SUFFIX = os.environ.get("TEST_DB_SUFFIX", "")
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" and TEST_DB_SUFFIX:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}{TEST_DB_SUFFIX}"}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that does not answer fails a request (and /readyz) after this, not after minutes.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 5)
    # No JIT: every statement here is short, and a big table's estimates pass jit_above_cost (measured: 300 ms
    # compiling the message search's GIN probe, which then ran in 40 ms).
    DATABASES["default"]["OPTIONS"]["options"] = "-c jit=off"
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_int("DB_POOL_MAX_SIZE", 0):
    # Production option: a psycopg pool per server process instead of a connection per request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN_SIZE", 1),
        "max_size": env_int("DB_POOL_MAX_SIZE", 20),
        "timeout": env_int("DB_POOL_TIMEOUT", 10),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so two concurrent writers queue instead of deadlocking.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db{TEST_DB_SUFFIX}.sqlite3")}
    DATABASES["default"]["ENGINE"] = "core.sqlite"  # Django's, with SQLite's real parameter limit

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "core.User"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/login/"

REDIS_URL = os.environ.get("REDIS_URL", "")
# Parallel test workers share one Redis: keep their groups and cache keys apart.
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "pmm") + TEST_DB_SUFFIX + os.environ.get("PYTEST_XDIST_WORKER", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer: no blocking pops that time out on idle consumers (channels_redis#422).
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": REDIS_PREFIX},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env_int("CHANNEL_CAPACITY", 1000)},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # `collectstatic` fills it; WhiteNoise expects it to exist
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {
        "BACKEND": os.environ.get("ATTACHMENT_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {
            "location": str(MEDIA_ROOT / "attachments"),
            # Protected health information: readable by the service account only.
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        }
        if "ATTACHMENT_STORAGE_BACKEND" not in os.environ
        else {},
    },
    # Compressed copies (gzip) made by `collectstatic`; without it WhiteNoise serves the apps' files as they are.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve the apps' static files without `collectstatic` too (a checkout, the test suite); collected files win.
WHITENOISE_USE_FINDERS = True

# Product limits (SPEC §2), overridable per deployment.
MAILBOX = {
    # Live streams decide a viewer's access again when an access-changing event concerns them (core.live); this
    # is the safety net for changes made outside the actions (raw SQL). Tokens, sessions and disabled accounts
    # are re-checked for every socket every LIVE_RECHECK_SECONDS (4 s default, in the live settings).
    "LIVE_ACCESS_RECHECK_SECONDS": env_int("LIVE_ACCESS_RECHECK_SECONDS", 30),
    "ATTACHMENT_MAX_BYTES": env_int("ATTACHMENT_MAX_BYTES", 25 * 1024 * 1024),
    "ATTACHMENTS_PER_MESSAGE": env_int("ATTACHMENTS_PER_MESSAGE", 10),
    # Office files (zip) past these are refused unopened: parts, declared expanded size, and its ratio to the file.
    "OFFICE_MAX_ENTRIES": env_int("OFFICE_MAX_ENTRIES", 5_000),
    "OFFICE_MAX_EXPANDED_BYTES": env_int("OFFICE_MAX_EXPANDED_BYTES", 512 * 1024 * 1024),
    "OFFICE_MAX_COMPRESSION_RATIO": env_int("OFFICE_MAX_COMPRESSION_RATIO", 100),
    # How long daphne waits for a request (headers and body) to arrive: idle, and in all (config/http_limits.py).
    "HTTP_REQUEST_IDLE_SECONDS": env_int("HTTP_REQUEST_IDLE_SECONDS", 15),
    "HTTP_REQUEST_TIMEOUT_SECONDS": env_int("HTTP_REQUEST_TIMEOUT_SECONDS", 300),
    "MESSAGE_MAX_CHARS": 20_000,
    "SEARCH_MAX_RESULTS": 50,
    # Message search on PostgreSQL: a lexeme in at least this many messages gets bitmaps over message ids
    # (`manage.py search_bits`, docs/search.md), 1 KB per 8,192 messages; the search uses them while at most
    # SEARCH_BITS_MAX_LAG messages are newer than the last run.
    "SEARCH_BITS_MIN_MESSAGES": env_int("SEARCH_BITS_MIN_MESSAGES", 100_000),
    "SEARCH_BITS_MAX_LAG": env_int("SEARCH_BITS_MAX_LAG", 20_000),
    # A read's audit rows (searchMessages) wait for the disk flush like every commit. Only an operator who accepts
    # that a database crash may lose the last ~0.6 s of them turns this off (core.audit.record_read).
    "AUDIT_READ_SYNCHRONOUS_COMMIT": env_flag("AUDIT_READ_SYNCHRONOUS_COMMIT", True),
    "PAGE_MAX_SIZE": env_int("PAGE_MAX_SIZE", 100),
    # Estimated rows one operation may load (page sizes multiplied through nesting, graph/cost.py), and the
    # largest encoded answer sent (bodies are up to 20,000 characters, so rows alone do not bound bytes).
    "QUERY_MAX_COST": env_int("QUERY_MAX_COST", 10_000),
    "RESPONSE_MAX_BYTES": env_int("RESPONSE_MAX_BYTES", 8 * 1024 * 1024),
    "TOKEN_TTL_HOURS": env_int("TOKEN_TTL_HOURS", 24 * 30),
    "TOKEN_IDLE_MINUTES": env_int("TOKEN_IDLE_MINUTES", 0),
    "EVENT_RETENTION_DAYS": env_int("EVENT_RETENTION_DAYS", 30),
    "GRAPHQL_INTROSPECTION": env_flag("GRAPHQL_INTROSPECTION", DEBUG),
    # Rate limits as (attempts, window seconds): sends and searches per user or patient, failed tokens per
    # address and per token prefix, failed password sign-ins per account and per address.
    "SEND_RATE_LIMIT": (env_int("SEND_RATE_LIMIT", 60), 60),
    "SEARCH_RATE_LIMIT": (env_int("SEARCH_RATE_LIMIT", 120), 60),
    "TOKEN_FAILURE_RATE_LIMIT": (env_int("TOKEN_FAILURE_RATE_LIMIT", 20), 60),
    "LOGIN_ACCOUNT_FAILURE_RATE_LIMIT": (env_int("LOGIN_ACCOUNT_FAILURE_RATE_LIMIT", 10), 900),
    "LOGIN_ADDRESS_FAILURE_RATE_LIMIT": (env_int("LOGIN_ADDRESS_FAILURE_RATE_LIMIT", 50), 900),
    # New-message notices by email (core.notices, `manage.py notify_worker`): one per conversation per cooldown,
    # failed sends retried after NOTIFY_RETRY_SECONDS doubling up to NOTIFY_RETRY_MAX_SECONDS, a send left
    # unfinished by a stopped worker taken up again after NOTIFY_CLAIM_TIMEOUT_SECONDS.
    "NOTIFY_COOLDOWN_MINUTES": env_int("NOTIFY_COOLDOWN_MINUTES", 15),
    "NOTIFY_RETRY_SECONDS": env_float("NOTIFY_RETRY_SECONDS", 30.0),
    "NOTIFY_RETRY_MAX_SECONDS": env_float("NOTIFY_RETRY_MAX_SECONDS", 3600.0),
    "NOTIFY_CLAIM_TIMEOUT_SECONDS": env_float("NOTIFY_CLAIM_TIMEOUT_SECONDS", 120.0),
    "NOTIFY_MAX_AGE_HOURS": env_int("NOTIFY_MAX_AGE_HOURS", 24),
    "NOTIFY_POLL_SECONDS": env_float("NOTIFY_POLL_SECONDS", 1.0),
    # The link a notice carries (the portal's sign-in page).
    "NOTIFY_PORTAL_URL": os.environ.get("NOTIFY_PORTAL_URL", "http://127.0.0.1:8000/portal/"),
}

# Mail (the notices): EMAIL_URL as dj-email-url reads it (`smtp://user:password@host:25`, `submission://…` for
# STARTTLS on 587, `smtps://…`, `console://`); unset, mail is printed on the worker's stdout.
EMAIL_CONFIG = dj_email_url.parse(os.environ.get("EMAIL_URL") or "console://")
vars().update(EMAIL_CONFIG)
EMAIL_TIMEOUT = EMAIL_CONFIG.get("EMAIL_TIMEOUT") or env_int("EMAIL_TIMEOUT_SECONDS", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "no-reply@localhost")
# Browser sessions follow the token rules: they last TOKEN_TTL_HOURS from sign-in (core.sessions enforces it
# from the sign-in time, since Django's expiry moves on every save) and end after TOKEN_IDLE_MINUTES idle.
SESSION_COOKIE_AGE = MAILBOX["TOKEN_TTL_HOURS"] * 3600

# Operating it (SPEC §7, docs/operations.md): JSON log lines in production, readable lines with DEBUG.
LOG_FORMAT = os.environ.get("LOG_FORMAT") or ("console" if DEBUG else "json")
LOGGING = ops_logs.logging_config(json=LOG_FORMAT == "json", level=os.environ.get("LOG_LEVEL", "INFO"))
# /metrics answers these addresses or networks (the caller's address as TRUSTED_PROXY_COUNT decides) or the token.
METRICS_ALLOWED_IPS = [
    ip.strip() for ip in os.environ.get("METRICS_ALLOWED_IPS", "127.0.0.1,::1").split(",") if ip.strip()
]
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_MAX_OPERATION_NAMES = env_int("METRICS_MAX_OPERATION_NAMES", 200)
READINESS_TIMEOUT_SECONDS = float(os.environ.get("READINESS_TIMEOUT_SECONDS", "2"))
SHUTDOWN_GRACE_SECONDS = float(os.environ.get("SHUTDOWN_GRACE_SECONDS", "10"))

# HTTPS deployments (the production profile, deploy/production.env): `manage.py check --deploy` is clean with these.
SECURE_SSL_REDIRECT = env_flag("SECURE_SSL_REDIRECT")
# Probes and scrapes come over plain HTTP from the load balancer and Prometheus.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_flag("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = env_flag("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = env_flag("CSRF_COOKIE_SECURE")
if env_flag("SECURE_PROXY_SSL_HEADER"):
    # Only behind a proxy that sets X-Forwarded-Proto itself, overwriting what the client sent.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
