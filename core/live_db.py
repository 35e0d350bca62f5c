"""One database thread per server process for live work (subscriptions, socket token checks).

`channels.db.database_sync_to_async` runs every call on asgiref's one shared thread and closes the connection
around each call, so with `CONN_MAX_AGE=0` (the ASGI setting) every call of every subscription opened a new
PostgreSQL connection. Live work instead runs on this thread, which keeps one connection for the process (checked
after an error or an idle minute, and reopened if unusable) and lets `core.live`'s per-process caches be plain
dicts: everything that touches them runs here, one call at a time.

Work that no event waits for (the live-delivery audit rows, the sockets' credential re-checks) runs on a second
such thread (`live_db_background`), with its own kept connection: on the live thread it made the event that
arrived meanwhile wait for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections

P = ParamSpec("P")
R = TypeVar("R")

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-db")
_background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-db-background")
# A connection idle this long is checked before use (the server or a proxy may have closed it meanwhile).
_IDLE_CHECK_SECONDS = 60.0
_used = threading.local()  # when this thread's connection was last used


def _call(context: contextvars.Context, fn: Callable[..., R], *args, **kwargs) -> R:
    connection = connections[DEFAULT_DB_ALIAS]
    now = time.monotonic()
    idle = now - getattr(_used, "at", 0.0) > _IDLE_CHECK_SECONDS
    if connection.connection is not None and (connection.errors_occurred or idle):
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()
    _used.at = now
    return context.run(fn, *args, **kwargs)


def _on(executor: ThreadPoolExecutor, fn: Callable[P, R]) -> Callable[P, asyncio.Future[R]]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> asyncio.Future[R]:
        call = functools.partial(_call, contextvars.copy_context(), fn, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(executor, call)

    return run


def live_db(fn: Callable[P, R]) -> Callable[P, asyncio.Future[R]]:
    """`await live_db(fn)(*args)`: runs `fn` on the live thread with the caller's context variables."""
    return _on(_executor, fn)


def live_db_background(fn: Callable[P, R]) -> Callable[P, asyncio.Future[R]]:
    """`await live_db_background(fn)(*args)`: as `live_db`, on the thread for work no event waits for. It must not
    touch `core.live`'s caches (they belong to the live thread)."""
    return _on(_background, fn)


def _close() -> None:
    connections.close_all()


async def release_connection() -> None:
    """Closes the live threads' connections (tests do, before the test database is dropped)."""
    await live_db(_close)()
    await live_db_background(_close)()
