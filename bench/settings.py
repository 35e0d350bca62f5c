"""Bench-only settings: config.settings plus the floor views' URLs and a page size limit raised to 1000."""

import os

os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mailbox_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("REDIS_PREFIX", "pmmbench")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Under ASGI each request runs its ORM calls in a thread of its own: a persistent connection (CONN_MAX_AGE > 0)
# is left behind by every request until PostgreSQL refuses new clients (measured: "too many clients" within
# seconds of 8 concurrent clients). Django's advice for ASGI is CONN_MAX_AGE = 0 (or a connection pool).
os.environ.setdefault("DB_CONN_MAX_AGE", "0")
# Per-user rate limits would refuse a benchmark's steady stream of searches and sends.
os.environ.setdefault("SEARCH_RATE_LIMIT", "1000000")
os.environ.setdefault("SEND_RATE_LIMIT", "1000000")

from config.settings import *  # noqa: F403
from config.settings import MAILBOX

ROOT_URLCONF = "bench.urls"
MAILBOX = {**MAILBOX, "PAGE_MAX_SIZE": 1000}
