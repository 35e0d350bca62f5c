"""Fixed-window rate limits on Django's cache (Redis when REDIS_URL is set, so every process shares them).

A limit is `(count, seconds)` in settings.MAILBOX; `hit` counts one attempt and refuses with RATE_LIMITED
once the window's count is exceeded, telling the caller how long to wait. Limits are keyed on who acts (a
user, a patient, an address) and always apply inside a request (HTTP or WebSocket). Outside one they apply
too, unless the caller says it is trusted with `exempt()` (loading demo data, a benchmark's setup, a test
arranging its data): a path that forgets to set the request is limited, never silently unlimited.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache

from core.context import has_request
from core.errors import DomainError, ErrorCode
from ops import metrics

SENDS = "SEND_RATE_LIMIT"
SEARCHES = "SEARCH_RATE_LIMIT"
TOKEN_FAILURES = "TOKEN_FAILURE_RATE_LIMIT"
LOGIN_ACCOUNT_FAILURES = "LOGIN_ACCOUNT_FAILURE_RATE_LIMIT"
LOGIN_ADDRESS_FAILURES = "LOGIN_ADDRESS_FAILURE_RATE_LIMIT"

_WHAT = {
    SENDS: "You are sending messages too quickly",
    SEARCHES: "You are searching too quickly",
    TOKEN_FAILURES: "Too many failed sign-ins with this token or from your address",
    LOGIN_ACCOUNT_FAILURES: "Too many failed sign-ins for this account",
    LOGIN_ADDRESS_FAILURES: "Too many failed sign-ins from your address",
}


_exempt: ContextVar[bool] = ContextVar("rate_limits_exempt", default=False)


@contextmanager
def exempt() -> Iterator[None]:
    """A trusted caller outside any request: no limits for what runs inside (a request inside still has them)."""
    token = _exempt.set(True)
    try:
        yield
    finally:
        _exempt.reset(token)


def _applies() -> bool:
    return has_request() or not _exempt.get()


def _window(limit_name: str) -> tuple[int, int]:
    count, seconds = settings.MAILBOX[limit_name]
    return int(count), max(1, int(seconds))


def _key(limit_name: str, who: str, window_start: int) -> str:
    # A namespace setting lets tests start from fresh counters without flushing a shared cache.
    namespace = getattr(settings, "RATE_LIMIT_NAMESPACE", "rl")
    return f"{namespace}:{limit_name}:{who}:{window_start}"


def _refusal(limit_name: str, retry_after: int) -> DomainError:
    metrics.rate_limited(limit_name)
    return DomainError(
        ErrorCode.RATE_LIMITED,
        f"{_WHAT[limit_name]}; try again in {retry_after} seconds.",
        retryAfter=retry_after,
    )


def _current(limit_name: str) -> tuple[int, int, int]:
    count, seconds = _window(limit_name)
    now = time.time()
    window_start = int(now // seconds) * seconds
    retry_after = max(1, int(window_start + seconds - now + 0.999))
    return count, window_start, retry_after


_clients: dict[tuple, object] = {}


def _redis_client(backend: RedisCache, full_key: str):
    """One client per server for the process. Django makes a cache backend per request context, each with its own
    connection pool and a new `redis.Redis` per call (~1 ms of CPU building its command tables, plus a connection
    to Redis per request); a client is thread-safe and keeps its pool."""
    where = (tuple(backend._servers), tuple(sorted((k, repr(v)) for k, v in backend._options.items())))
    client = _clients.get(where)
    if client is None:
        client = _clients.setdefault(where, backend._cache.get_client(full_key, write=True))
    return client


def _count_attempt(key: str, retry_after: int) -> int:
    """Adds one to this window's counter (created if missing) and returns the new total."""
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        # One round trip instead of three (Django's add, then incr's EXISTS and INCRBY): INCR creates the counter,
        # and the attempt that created it gives it the window's lifetime. Not a pipeline: redis-py copies its
        # ~170 response callbacks into every pipeline it makes (1.5 ms of a search's CPU). A process killed
        # between the two leaves a counter without expiry, of a window no later attempt counts in (the key
        # names its window).
        full_key = backend.make_and_validate_key(key)
        client = _redis_client(backend, full_key)
        total = int(client.incr(full_key))
        if total == 1:
            client.expire(full_key, retry_after + 1)
        return total
    cache.add(key, 0, timeout=retry_after + 1)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=retry_after + 1)
        return 1


def hit(limit_name: str, who: str) -> None:
    """Counts one attempt by `who`; raises RATE_LIMITED when this window's limit is already used up."""
    if not _applies():
        return
    count, window_start, retry_after = _current(limit_name)
    if count <= 0:
        return
    if _count_attempt(_key(limit_name, who, window_start), retry_after) > count:
        raise _refusal(limit_name, retry_after)


def check(limit_name: str, who: str) -> None:
    """Refuses when `who` has used up this window without counting an attempt (e.g. before a token check)."""
    if not _applies():
        return
    count, window_start, retry_after = _current(limit_name)
    if count <= 0:
        return
    used = cache.get(_key(limit_name, who, window_start)) or 0
    if used >= count:
        raise _refusal(limit_name, retry_after)


def record_failure(limit_name: str, who: str) -> None:
    """Counts a failed attempt without refusing this one (the caller refuses it for its own reason)."""
    if not _applies():
        return
    count, window_start, retry_after = _current(limit_name)
    if count <= 0:
        return
    _count_attempt(_key(limit_name, who, window_start), retry_after)
