"""Graceful shutdown under daphne: on SIGTERM (or SIGINT) a process stops being ready (`/readyz` answers 503),
closes every open WebSocket with 4503 (the Workbench's client, and any graphql-ws client, reconnects and
resumes after its last cursor, so nothing is lost), lets HTTP requests in progress finish, and
only then lets daphne cancel what is left, at most `SHUTDOWN_GRACE_SECONDS` later.

daphne itself cancels every application instance at once on shutdown (`Server.kill_all_applications`): sockets
were cut without a close frame and requests in flight were lost. That method is wrapped so the drain runs first;
it is daphne's internal, which is why pyproject.toml pins daphne below 5.
"""

from __future__ import annotations

import asyncio
import atexit
import time

from django.conf import settings

from ops import logs, metrics

# "The server is restarting; reconnect and resume": RFC 6455's 1012 says so, but daphne's WebSocket library
# (autobahn) only sends 1000 or 3000-4999, so it is the application code 4503 (HTTP 503's number). graphql-ws
# clients retry on it (it is none of their fatal codes), and so does the Workbench's (web/static/web/js/ws.js
# gives up only on 4401/4403), resubscribing with `after:` its last cursor.
SERVICE_RESTART = 4503
RESTART_REASON = "Server restarting; reconnect and resume after your last cursor"
log = logs.get_logger("mailbox.shutdown")

_state = {"draining": False}
sockets: set = set()  # ops.asgi.ObservedSocket, accepted and not yet closed
http_in_flight = [0]


def draining() -> bool:
    return _state["draining"]


async def drain(grace: float) -> None:
    _state["draining"] = True
    started = time.monotonic()
    open_sockets, requests = len(sockets), http_in_flight[0]
    for socket in list(sockets):
        try:
            await socket.close(SERVICE_RESTART, RESTART_REASON)
        except Exception as error:  # the peer is gone already
            log.info("socket already gone at shutdown", error=str(error)[:200])
    while (sockets or http_in_flight[0]) and time.monotonic() - started < grace:
        await asyncio.sleep(0.05)
    log.info(
        "shutdown drained",
        sockets_closed=open_sockets,
        requests_in_flight=requests,
        sockets_left=len(sockets),
        requests_left=http_in_flight[0],
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )


def install() -> None:
    """Wraps daphne's shutdown once per process; drops this process's live gauges from the totals at exit."""
    atexit.register(metrics.mark_process_dead)
    try:
        from daphne.server import Server
    except ImportError:  # served by another ASGI server: its own shutdown applies
        return
    original = Server.kill_all_applications
    if getattr(original, "graceful", False):
        return

    def kill_all_applications(self):
        from twisted.internet import defer

        grace = float(getattr(settings, "SHUTDOWN_GRACE_SECONDS", 10))
        drained = defer.Deferred.fromFuture(asyncio.ensure_future(drain(grace)))
        drained.addErrback(lambda failure: log.error("shutdown drain failed", error=str(failure.value)))
        drained.addBoth(lambda _: original(self))
        return drained

    kill_all_applications.graceful = True
    Server.kill_all_applications = kill_all_applications
