"""The Prometheus metrics of SPEC §7, with the official client (`prometheus-client`).

Several server processes: set `PROMETHEUS_MULTIPROC_DIR` to an empty directory shared by them (before they start;
the client reads it at import) and `/metrics` on any of them answers for all (multiprocess mode; gauges of
running processes only, counters and histograms summed over every process since the directory was emptied).
Without it each process answers for itself.

Label values are bounded: GraphQL operation names are the client's choice, so only names of signed-in callers
that are valid GraphQL names are used, at most `METRICS_MAX_OPERATION_NAMES` per process, the rest are `other`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

GRAPHQL_DURATION = Histogram(
    "mailbox_graphql_operation_duration_seconds",
    "GraphQL queries and mutations (HTTP and WebSocket), by operation name, from request to answer.",
    ["transport", "type", "operation"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_DURATION = Histogram(
    "mailbox_http_request_duration_seconds",
    "Every HTTP request, by view (URL name) and status class.",
    ["view", "status"],
    buckets=_LATENCY_BUCKETS,
)
ERRORS = Counter(
    "mailbox_graphql_errors",
    "Errors answered, by SPEC error code (extensions.code); one per error in an answer.",
    ["code", "transport"],
)
WEBSOCKETS_OPEN = Gauge(
    "mailbox_websockets_open", "Accepted WebSocket connections now open.", multiprocess_mode="livesum"
)
SUBSCRIPTIONS_ACTIVE = Gauge(
    "mailbox_subscriptions_active", "GraphQL subscriptions streaming now.", multiprocess_mode="livesum"
)
HTTP_IN_FLIGHT = Gauge("mailbox_http_requests_in_flight", "HTTP requests being served.", multiprocess_mode="livesum")
EVENTS_DELIVERED = Counter(
    "mailbox_live_events_delivered", "Live events sent to subscribers (one per subscriber and event).", ["stream"]
)
DELIVERY_LAG = Histogram(
    "mailbox_live_delivery_lag_seconds",
    "From the event's row being written (in the change's transaction) to its frame sent to a subscriber.",
    ["stream"],
    buckets=_LAG_BUCKETS,
)
LOG_POSITION = Gauge(
    "mailbox_event_log_position",
    "Highest event-log id this process has read for live streams (one series per running process).",
    multiprocess_mode="liveall",
)
AUDIT_ROWS = Counter("mailbox_audit_rows_written", "Audit-trail rows written.", ["action"])
RATE_LIMITED = Counter("mailbox_rate_limit_refusals", "Attempts refused with RATE_LIMITED, by limit.", ["limit"])

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_names: set[str] = set()
_names_lock = threading.Lock()
_position = 0


def operation_label(name: str | None, *, signed_in: bool) -> str:
    if not signed_in:
        return "unauthenticated"
    if not name:
        return "anonymous"
    if not _NAME.fullmatch(name):
        return "other"
    from django.conf import settings

    if name in _names:
        return name
    with _names_lock:
        if len(_names) >= int(getattr(settings, "METRICS_MAX_OPERATION_NAMES", 200)):
            return "other"
        _names.add(name)
    return name


def observe_operation(*, transport: str, kind: str, operation: str, seconds: float, codes: list[str]) -> None:
    GRAPHQL_DURATION.labels(transport, kind, operation).observe(seconds)
    for code in codes:
        ERRORS.labels(code, transport).inc()


def live_delivered(stream: str, written_at_timestamp: float) -> None:
    EVENTS_DELIVERED.labels(stream).inc()
    DELIVERY_LAG.labels(stream).observe(max(0.0, time.time() - written_at_timestamp))


def log_position(event_id: int) -> None:
    global _position
    if event_id > _position:
        _position = event_id
        LOG_POSITION.set(event_id)


def audit_rows(actions: Iterable) -> None:
    """Counts written audit rows by their actions."""
    for action, count in Tally(str(action) for action in actions).items():
        AUDIT_ROWS.labels(action).inc(count)


def rate_limited(limit_name: str) -> None:
    RATE_LIMITED.labels(limit_name).inc()


# ---- the notifier's backlog -------------------------------------------------------------------------------

# The notifier (`manage.py notify_worker`) follows the event log and stores how far it has read. Its backlog (events
# logged after that position) is computed at scrape time, by the process answering `/metrics`, from the database:
# - a position per practice in a table (`core.NoticeCursor`: practice_id, last_event_id) is found by itself;
# - any other follower registers `register_backlog_source(name, position)`, `position()` returning the event id
#   it has read up to (None: nothing yet).
_backlog_sources: dict[str, Callable[[], int | None]] = {}
NOTIFIER_CURSOR_MODEL = ("core", "NoticeCursor")


def register_backlog_source(name: str, position: Callable[[], int | None]) -> None:
    _backlog_sources[name] = position


def backlog_after_practice_positions(table: str, practice_column: str, position_column: str) -> int:
    """Events after each practice's stored position (a practice without a row: all of its events). One index range
    scan per practice on `event_by_practice` (practice_id, id)."""
    from django.db import connection

    from core.models import Event, Practice

    quote = connection.ops.quote_name
    events, practices = quote(Event._meta.db_table), quote(Practice._meta.db_table)
    cursors, practice, position = quote(table), quote(practice_column), quote(position_column)
    with connection.cursor() as cursor:
        cursor.execute(
            # Names quoted by the backend, from models and the caller's code (never from a request).
            f"SELECT COALESCE(SUM((SELECT COUNT(*) FROM {events} e WHERE e.practice_id = p.id "
            f"AND e.id > COALESCE(c.{position}, 0))), 0) "
            f"FROM {practices} p LEFT JOIN {cursors} c ON c.{practice} = p.id"
        )
        return int(cursor.fetchone()[0])


def _backlogs() -> dict[str, int]:
    from django.apps import apps

    from core.models import Event

    found = {}
    try:
        model = apps.get_model(*NOTIFIER_CURSOR_MODEL)
    except LookupError:  # no notifier in this deployment
        model = None
    if model is not None:
        found["notifier"] = backlog_after_practice_positions(model._meta.db_table, "practice_id", "last_event_id")
    for name, position in sorted(_backlog_sources.items()):
        stored = position()
        found[name] = (Event.objects.all() if stored is None else Event.objects.filter(pk__gt=stored)).count()
    return found


class BacklogCollector:
    def collect(self):
        family = GaugeMetricFamily(
            "mailbox_notifier_backlog_events",
            "Events in the log after the stored position of each worker that follows it (notifier).",
            labels=["worker"],
        )
        for name, count in _backlogs().items():
            family.add_metric([name], count)
        yield family


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The text a scrape gets, in the format its Accept header asks for: this process's metrics, or every
    process's in multiprocess mode."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_DefaultMetrics())
    registry.register(BacklogCollector())
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class _DefaultMetrics:
    """The process's default registry (our metrics, the process and platform collectors) inside a scrape registry."""

    def collect(self):
        yield from REGISTRY.collect()


def mark_process_dead(pid: int | None = None) -> None:
    """Drops a stopped process's live gauges (sockets, subscriptions, log position) from multiprocess totals."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
