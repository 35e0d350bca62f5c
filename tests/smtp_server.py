"""A real SMTP server in the test process (aiosmtpd), recording what it accepted; it can refuse or act on a mail."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class Received:
    to: list[str]
    subject: str
    message_id: str
    body: str
    raw: str


@dataclass
class MailSink:
    """`on_data(n)` is called for the n-th mail (1-based) before it is accepted; returning an SMTP reply refuses it."""

    on_data: Callable[[int], str | None] | None = None
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.attempts += 1
            attempt = self.attempts
        if self.on_data is not None:
            refusal = self.on_data(attempt)
            if refusal:
                return refusal
        raw = envelope.content.decode("utf-8", errors="replace")
        parsed = email.message_from_string(raw)
        payload = parsed.get_payload(decode=True) or b""
        with self.lock:
            self.received.append(
                Received(
                    to=list(envelope.rcpt_tos),
                    subject=str(email.header.make_header(email.header.decode_header(parsed["Subject"] or ""))),
                    message_id=parsed["Message-ID"] or "",
                    body=payload.decode(parsed.get_content_charset() or "utf-8", errors="replace"),
                    raw=raw,
                )
            )
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    def __init__(self, sink: MailSink | None = None, port: int | None = None) -> None:
        self.sink = sink or MailSink()
        self.port = port or free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
