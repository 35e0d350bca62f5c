"""One database thread per server process for live work (subscriptions, socket token checks).

`channels.db.database_sync_to_async` runs every call on asgiref's one shared thread and closes the connection
around each call, so with `CONN_MAX_AGE=0` (the ASGI setting) every call of every subscription opened a new
PostgreSQL connection. Live work instead runs on this thread, which keeps one connection for the process (checked
after an error or an idle minute, and reopened if unusable) and lets `core.live`'s per-process caches be plain
dicts: everything that touches them runs here, one call at a time.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections

P = ParamSpec("P")
R = TypeVar("R")

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-db")
# A connection idle this long is checked before use (the server or a proxy may have closed it meanwhile).
_IDLE_CHECK_SECONDS = 60.0
_last_used = 0.0


def _call(context: contextvars.Context, fn: Callable[..., R], *args, **kwargs) -> R:
    global _last_used
    connection = connections[DEFAULT_DB_ALIAS]
    now = time.monotonic()
    if connection.connection is not None and (connection.errors_occurred or now - _last_used > _IDLE_CHECK_SECONDS):
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()
    _last_used = now
    return context.run(fn, *args, **kwargs)


def live_db(fn: Callable[P, R]) -> Callable[P, asyncio.Future[R]]:
    """`await live_db(fn)(*args)`: runs `fn` on the live thread with the caller's context variables."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> asyncio.Future[R]:
        call = functools.partial(_call, contextvars.copy_context(), fn, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(_executor, call)

    return run


def _close() -> None:
    connections.close_all()


async def release_connection() -> None:
    """Closes the live thread's connection (tests do, before the test database is dropped)."""
    await live_db(_close)()
