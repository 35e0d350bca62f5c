"""Bench-only settings: config.settings plus the floor views' URLs and a page size limit raised to 1000."""

import os

os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mailbox_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("REDIS_PREFIX", "pmmbench")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Per-user rate limits would refuse a benchmark's steady stream of searches and sends.
os.environ.setdefault("SEARCH_RATE_LIMIT", "1000000")
os.environ.setdefault("SEND_RATE_LIMIT", "1000000")

from config.settings import *  # noqa: F403
from config.settings import MAILBOX

ROOT_URLCONF = "bench.urls"
MAILBOX = {**MAILBOX, "PAGE_MAX_SIZE": 1000}
