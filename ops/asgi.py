"""The outermost ASGI layer: counts open WebSockets and HTTP requests in flight, logs one line per closed socket,
and lets graceful shutdown (`ops.shutdown`) close every socket with 4503 (reconnect and resume)."""

from __future__ import annotations

import time

import structlog

from ops import logs, metrics, shutdown

log = logs.get_logger("mailbox.requests")


class ObservedSocket:
    def __init__(self, send) -> None:
        self._send = send
        self.accepted = False
        self.closing = False
        self.close_code: int | None = None
        self.opened = time.perf_counter()

    async def send(self, message: dict) -> None:
        kind = message.get("type")
        if self.closing and kind == "websocket.send":
            return  # closed by shutdown: the consumer's last frames would go to a closing socket
        if kind == "websocket.accept" and not self.accepted:
            self.accepted = True
            metrics.WEBSOCKETS_OPEN.inc()
            shutdown.sockets.add(self)
        elif kind == "websocket.close":
            if self.closing:
                return
            self.closing = True
            self.close_code = message.get("code", 1000)
        await self._send(message)

    async def close(self, code: int, reason: str) -> None:
        await self.send({"type": "websocket.close", "code": code, "reason": reason})


def observed(application):
    async def app(scope, receive, send):
        if scope["type"] == "http":
            shutdown.http_in_flight[0] += 1
            try:
                return await application(scope, receive, send)
            finally:
                shutdown.http_in_flight[0] -= 1
        if scope["type"] != "websocket":
            return await application(scope, receive, send)
        socket = ObservedSocket(send)

        async def observed_receive():
            message = await receive()
            if message.get("type") == "websocket.disconnect" and socket.close_code is None:
                socket.close_code = message.get("code")
            return message

        try:
            return await application(scope, observed_receive, socket.send)
        finally:
            if socket.accepted:
                metrics.WEBSOCKETS_OPEN.dec()
                shutdown.sockets.discard(socket)
                structlog.contextvars.clear_contextvars()
                log.info(
                    "websocket closed",
                    transport="ws",
                    path=scope.get("path"),
                    close_code=socket.close_code,
                    duration_ms=round((time.perf_counter() - socket.opened) * 1000, 1),
                )

    return app
