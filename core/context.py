"""Who is asking and from where, set once per request or WebSocket by the transport layer."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field


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
