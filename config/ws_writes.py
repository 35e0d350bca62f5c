"""Write WebSocket frames to an idle socket at once, instead of on the reactor's next turn.

Twisted buffers every `transport.write` and registers the socket with the event loop for writing; the frame goes
out when the loop reports it writable, and the socket is unregistered again. Under daphne's asyncio reactor that
costs two `epoll_ctl` calls, a loop callback and Twisted's logging context per frame: a live event fanned out to
250 sockets of a process spent about a third of its event-loop time there (profile of `make bench`'s fan-out).

`install()` gives daphne's WebSocket protocol a `sendData` that, when nothing is waiting in Twisted's or
autobahn's buffers, hands the frame to the socket directly (`writeSomeData`, Twisted's own non-blocking send) and
leaves any part the kernel did not take to the usual buffered path, so order and back-pressure stay Twisted's.
It reads Twisted's buffer attributes (`dataBuffer`, `offset`, `_tempDataBuffer`): Twisted is pinned below its next
major version in pyproject.toml, and a transport that lacks them (TLS, another reactor) takes the usual path.
"""

from __future__ import annotations


def install() -> None:
    from daphne import ws_protocol

    if getattr(ws_protocol.WebSocketFactory.protocol, "_writes_at_once", False):
        return

    class ImmediateWriteProtocol(ws_protocol.WebSocketProtocol):
        _writes_at_once = True

        def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
            if not (sync or chopsize or self.send_queue) and _idle(self.transport):
                sent = self.transport.writeSomeData(data)
                if isinstance(sent, int) and sent > 0:
                    self._count_octets(sent)
                    data = data[sent:]
                    if not data:
                        return
            super().sendData(data, sync, chopsize)

        def _count_octets(self, count: int) -> None:
            """What autobahn's `sendData` counts for the bytes it writes."""
            if self.state == self.STATE_OPEN:
                self.trafficStats.outgoingOctetsWireLevel += count
            elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
                self.trafficStats.preopenOutgoingOctetsWireLevel += count

    ws_protocol.WebSocketFactory.protocol = ImmediateWriteProtocol


def _idle(transport) -> bool:
    """A plain TCP connection, open, with nothing buffered: a direct send keeps the byte order."""
    from twisted.internet import tcp

    return (
        isinstance(transport, tcp.Connection)
        and not getattr(transport, "TLS", True)
        and transport.connected
        and not transport.disconnecting
        and not getattr(transport, "_writeDisconnected", True)
        and not getattr(transport, "_tempDataBuffer", True)
        and getattr(transport, "offset", -1) == len(getattr(transport, "dataBuffer", b"?"))
    )
