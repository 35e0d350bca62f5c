"""One log line (and the metrics) per HTTP request and per WebSocket operation.

The transport opens a `RequestStats` for the request or operation; the GraphQL schema extension
(`graph.observe`) fills in what only execution knows (operation name and type, who asked, error codes); the
line is written when the request or operation ends: request id, operation, user or patient id (ids only, never
names or message text), duration, SQL count, outcome code.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from ops import metrics
from ops.logs import get_logger

log = get_logger("mailbox.requests")


@dataclass
class RequestStats:
    request_id: str
    transport: str  # "http" or "ws"
    operation: str | None = None  # the GraphQL operation name (None: not GraphQL, or unnamed)
    operation_type: str | None = None  # query, mutation, subscription
    user_id: int | None = None
    patient_id: int | None = None
    codes: list[str] = field(default_factory=list)  # extensions.code of every error answered
    sql_count: int = 0
    events: int = 0  # live events a subscription sent
    streaming: bool = False  # a subscription (counted in mailbox_subscriptions_active)
    graphql: bool = False

    def record_result(self, *, name, kind, user_id, patient_id, codes) -> None:
        self.graphql = True
        self.operation = name or self.operation
        self.operation_type = kind or self.operation_type
        self.user_id = user_id if user_id is not None else self.user_id
        self.patient_id = patient_id if patient_id is not None else self.patient_id
        self.codes.extend(codes)

    def outcome(self, status: int | None = None) -> str:
        if self.codes:
            return self.codes[0]
        if status is not None and status >= 400:
            return f"HTTP_{status}"
        return "OK"


_current: ContextVar[RequestStats | None] = ContextVar("request_stats", default=None)


def current() -> RequestStats | None:
    return _current.get()


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-ID (printable, 64 characters at most), else a new one."""
    value = (header or "")[:64]
    return value if value and value.isprintable() else uuid.uuid4().hex


class _QueryCounter:
    def __init__(self, stats: RequestStats) -> None:
        self.stats = stats

    def __call__(self, execute, sql, params, many, context):
        self.stats.sql_count += 1
        return execute(sql, params, many, context)


@contextlib.contextmanager
def counting_queries(stats: RequestStats) -> Iterator[None]:
    """Counts the SQL statements this thread's connection runs meanwhile."""
    with connections[DEFAULT_DB_ALIAS].execute_wrapper(_QueryCounter(stats)):
        yield


def _codes_in_body(response) -> list[str]:
    """Error codes of an answer the schema extension did not see (refused before GraphQL ran: bad body, GET, CSRF)."""
    if getattr(response, "streaming", False) or b'"errors"' not in response.content[:1_000_000]:
        return []
    try:
        body = json.loads(response.content)
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [str((e.get("extensions") or {}).get("code", "")) for e in errors or [] if isinstance(e, dict)]


def _session_user_id(request) -> int | None:
    user = getattr(request, "_cached_user", None)  # set by AuthenticationMiddleware once something asked
    return user.pk if user is not None and user.is_authenticated else None


class RequestLogMiddleware:
    """Outermost middleware: request id, SQL count, duration, the log line and the HTTP metrics."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        stats = RequestStats(request_id=request_id_from(request.headers.get("X-Request-ID")), transport="http")
        request.request_id = stats.request_id
        token = _current.set(stats)
        started = time.perf_counter()
        metrics.HTTP_IN_FLIGHT.inc()
        try:
            with structlog.contextvars.bound_contextvars(request_id=stats.request_id), counting_queries(stats):
                response = self.get_response(request)
                seconds = time.perf_counter() - started
                self._finish(request, response, stats, seconds)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            _current.reset(token)
        response.setdefault("X-Request-ID", stats.request_id)
        return response

    def _finish(self, request, response, stats: RequestStats, seconds: float) -> None:
        match = getattr(request, "resolver_match", None)
        view = match.url_name if match is not None and match.url_name else "unmatched"
        if request.path.startswith("/" + settings.STATIC_URL.strip("/") + "/"):
            view = "static"
        if view == "graphql" and not stats.codes:
            stats.codes.extend(_codes_in_body(response))
        metrics.HTTP_DURATION.labels(view, f"{response.status_code // 100}xx").observe(seconds)
        if view == "graphql" and request.method == "POST":
            signed_in = stats.user_id is not None or stats.patient_id is not None
            label = metrics.operation_label(stats.operation, signed_in=signed_in)
            metrics.observe_operation(
                transport="http",
                kind=stats.operation_type or "none",
                operation=label,
                seconds=seconds,
                codes=stats.codes,
            )
        if stats.user_id is None and stats.patient_id is None:
            stats.user_id = _session_user_id(request)
        log.info(
            "request",
            transport="http",
            method=request.method,
            path=request.path,
            view=view,
            status=response.status_code,
            operation=stats.operation,
            operation_type=stats.operation_type,
            user_id=stats.user_id,
            patient_id=stats.patient_id,
            duration_ms=round(seconds * 1000, 2),
            sql_count=stats.sql_count,
            outcome=stats.outcome(response.status_code),
            codes=sorted(set(stats.codes)) or None,
        )


def live_delivered(stream: str, event) -> None:
    """A subscription sent one event (its frame is out)."""
    stats = _current.get()
    if stats is not None:
        stats.events += 1
    metrics.live_delivered(stream, event.created_at.timestamp())


def current_request_id() -> str:
    stats = _current.get()
    return stats.request_id if stats is not None else uuid.uuid4().hex


def refused(errors) -> None:
    """Errors answered without the schema's extensions seeing them (documents refused before execution)."""
    stats = _current.get()
    if stats is not None:
        stats.codes.extend(str((error.extensions or {}).get("code", "VALIDATION_ERROR")) for error in errors)


def operation_kind(kind: str) -> None:
    """The socket's operation turned out to be a query, mutation or subscription. A subscription is logged under
    its connection's request id, the one its live-delivery audit rows carry; it counts as streaming until it ends."""
    stats = _current.get()
    if stats is None:
        return
    stats.operation_type = kind
    if kind == "subscription" and not stats.streaming:
        from core.context import current_request

        stats.streaming = True
        stats.request_id = current_request().request_id or stats.request_id
        structlog.contextvars.bind_contextvars(request_id=stats.request_id)
        metrics.SUBSCRIPTIONS_ACTIVE.inc()


@contextlib.asynccontextmanager
async def websocket_operation(*, operation_id: str, operation_name: str | None):
    """Around one operation on a socket (a query, a mutation, or a subscription's whole life)."""
    stats = RequestStats(request_id=uuid.uuid4().hex, transport="ws", operation=operation_name)
    token = _current.set(stats)
    started = time.perf_counter()
    outcome = None
    try:
        with structlog.contextvars.bound_contextvars(request_id=stats.request_id):
            try:
                yield stats
            except BaseException as error:
                # A subscription ends by cancellation (the client's `complete`, a closed socket): not an error.
                if not isinstance(error, _cancelled()):
                    outcome = "INTERNAL_SERVER_ERROR"
                raise
            finally:
                seconds = time.perf_counter() - started
                subscription = stats.streaming
                if subscription:
                    metrics.SUBSCRIPTIONS_ACTIVE.dec()
                signed_in = stats.user_id is not None or stats.patient_id is not None
                label = metrics.operation_label(stats.operation, signed_in=signed_in)
                if subscription:
                    for code in stats.codes:
                        metrics.ERRORS.labels(code, "ws").inc()
                else:
                    metrics.observe_operation(
                        transport="ws",
                        kind=stats.operation_type or "none",
                        operation=label,
                        seconds=seconds,
                        codes=stats.codes,
                    )
                log.info(
                    "websocket operation",
                    transport="ws",
                    operation_id=operation_id[:64],
                    operation=stats.operation,
                    operation_type=stats.operation_type,
                    user_id=stats.user_id,
                    patient_id=stats.patient_id,
                    duration_ms=round(seconds * 1000, 2),
                    sql_count=stats.sql_count,
                    events=stats.events if subscription else None,
                    outcome=outcome or stats.outcome(),
                    codes=sorted(set(stats.codes)) or None,
                )
    finally:
        _current.reset(token)


def _cancelled():
    import asyncio

    return asyncio.CancelledError
