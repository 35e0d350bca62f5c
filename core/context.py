"""Who is asking and from where, set once per request or WebSocket by the transport layer."""

from __future__ import annotations

import ipaddress
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True)
class RequestInfo:
    ip: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


_current: ContextVar[RequestInfo | None] = ContextVar("request_info", default=None)


def current_request() -> RequestInfo:
    info = _current.get()
    if info is None:
        info = RequestInfo(request_id="")
    return info


def has_request() -> bool:
    """True inside an HTTP request or WebSocket operation (the transport set who is asking)."""
    return _current.get() is not None


def set_current_request(info: RequestInfo):
    """Returns a token for `reset_current_request`."""
    return _current.set(info)


def reset_current_request(token) -> None:
    _current.reset(token)


def client_address(remote_addr: str | None, forwarded_for: str | None) -> str | None:
    """The caller's address: the socket's peer, or behind `TRUSTED_PROXY_COUNT` reverse proxies the address the
    outermost of them was reached from.

    Each proxy appends the address it was reached from to X-Forwarded-For, so that address is the entry
    `TRUSTED_PROXY_COUNT` places from the right; entries further left were written by the caller and would let
    anyone pick the address their failures are counted against. A header shorter than that, or an entry that is
    no IP address, means the request did not come through the proxies as configured: the peer address stands.
    """
    proxies = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    if proxies <= 0 or not forwarded_for:
        return remote_addr or None
    entries = [entry.strip() for entry in forwarded_for.split(",")]
    if len(entries) < proxies:
        return remote_addr or None
    try:
        return str(ipaddress.ip_address(entries[-proxies]))
    except ValueError:
        return remote_addr or None
