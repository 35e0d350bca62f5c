"""Bound how long daphne waits for a request to arrive.

Daphne hands a request to the application only once its body has fully arrived, and its own `--http-timeout`
counts from that moment: a client that sends headers and then a slow or stalled multipart body holds a connection
(and its buffered bytes) for as long as it likes. Daphne offers no setting for this phase, so `install()` gives its
HTTP protocol a request class that closes such a connection with `408 Request Timeout` when the request:
- sends nothing for `HTTP_REQUEST_IDLE_SECONDS` (a stalled body), or
- has not fully arrived `HTTP_REQUEST_TIMEOUT_SECONDS` after its first line (a trickled one).
Daphne's server checks every connection every 2 seconds, so a connection is closed up to 2 seconds after its bound.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

logger = logging.getLogger(__name__)

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)


def install() -> None:
    """Make daphne's HTTP factory build requests with read bounds (both `daphne` and `runserver` import the ASGI
    application, hence this module, before the server starts)."""
    from daphne import http_protocol

    if getattr(http_protocol.WebRequest, "_read_bounded", False):
        return

    class BoundedWebRequest(http_protocol.WebRequest):
        _read_bounded = True

        def __init__(self, *args, **kwargs) -> None:
            self._first_line_at = self._last_bytes_at = time.monotonic()
            super().__init__(*args, **kwargs)

        def handleContentChunk(self, data: bytes) -> None:
            self._last_bytes_at = time.monotonic()
            super().handleContentChunk(data)

        def check_timeouts(self) -> None:
            if not hasattr(self, "request_start") and self._arrival_overdue():  # still arriving: not yet processed
                self._refuse_slow_request()
                return
            super().check_timeouts()

        def _arrival_overdue(self) -> bool:
            now, limits = time.monotonic(), settings.MAILBOX
            return (
                now - self._last_bytes_at > limits["HTTP_REQUEST_IDLE_SECONDS"]
                or now - self._first_line_at > limits["HTTP_REQUEST_TIMEOUT_SECONDS"]
            )

        def _refuse_slow_request(self) -> None:
            transport = self.channel.transport if self.channel is not None else None
            if transport is None:
                return
            logger.warning("Closed a request that did not arrive in time from %s", self.getClientAddress())
            body = b"The request did not arrive in time; send it again on a faster connection.\n"
            transport.write(_TIMEOUT_RESPONSE % (len(body), body))
            transport.loseConnection()

    http_protocol.WebRequest = BoundedWebRequest
