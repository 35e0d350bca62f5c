"""Writing the append-only audit trail. A failed audit write fails the operation (it is in its transaction)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import orjson
from django.conf import settings
from django.db import connections, models, router, transaction
from django.utils import timezone

from core.context import RequestInfo, current_request
from core.models import AccessSource, AuditAction, AuditEvent, Patient, Practice, User
from ops import metrics


def build(
    *,
    operation: str,
    action: AuditAction,
    practice: Practice | int | None,
    actor_user: User | None = None,
    actor_patient: Patient | None = None,
    target: models.Model | None = None,
    patient: Patient | int | None = None,
    via: AccessSource | str = "",
    outcome: str = "SUCCESS",
    query: str = "",
    detail: dict | None = None,
    request: RequestInfo | None = None,
) -> AuditEvent:
    """An unsaved audit row; `record` and `record_many` write it. `request`: where it came from, when not the
    current request's (a row built away from its request's task)."""
    return AuditEvent(**_columns(**locals()))


def _columns(
    *,
    operation: str,
    action: AuditAction,
    practice: Practice | int | None,
    actor_user: User | None,
    actor_patient: Patient | None,
    target: models.Model | None,
    patient: Patient | int | None,
    via: AccessSource | str,
    outcome: str,
    query: str,
    detail: dict | None,
    request: RequestInfo | None,
) -> dict[str, Any]:
    info = request or current_request()
    return {
        "practice_id": practice if isinstance(practice, int) or practice is None else practice.pk,
        "actor_user_id": actor_user.pk if actor_user is not None else None,
        "actor_patient_id": actor_patient.pk if actor_patient is not None else None,
        "action": action,
        "operation": operation,
        "object_type": type(target).__name__ if target is not None else "",
        "object_id": str(target.pk) if target is not None else "",
        "patient_id": patient if isinstance(patient, int) or patient is None else patient.pk,
        "query": query[:200],
        "via": str(via),
        "ip": info.ip,
        "outcome": outcome,
        "request_id": info.request_id,
        "detail": detail or {},
    }


_DEFAULTS = {"actor_user": None, "actor_patient": None, "target": None, "patient": None, "via": ""}
_DEFAULTS |= {"outcome": "SUCCESS", "query": "", "detail": None}


def _rows(entries: Iterable[tuple[dict[str, Any], RequestInfo | None]]) -> list[dict[str, Any]]:
    """The column values of rows given as `build`'s keywords with their request (None: the current one)."""
    return [_columns(**{**_DEFAULTS, **fields, "request": request}) for fields, request in entries]


def _write(rows: list[dict[str, Any]], *, relaxed: bool = False, at: dt.datetime | None = None) -> list[int]:
    """Writes audit rows (`_columns` dicts) in one statement, without model instances, and returns their ids.

    One round trip, where `bulk_create` sends BEGIN, the INSERT and COMMIT and compiles it through the ORM (about
    180 µs a row); outside a transaction the statement commits itself, durably. On PostgreSQL the rows go as one
    JSON document (orjson) that `jsonb_to_recordset` turns back into rows: two parameters whatever the number of
    rows, a statement text psycopg splits once and caches. The VALUES rows of a 50-row page were 750 parameters
    split again on every request, and one array per column (`unnest`) cost more still in psycopg's quoting of
    every element (thread CPU of a 50-row write: 1.62 ms as arrays, 0.3 ms as JSON). Elsewhere more rows than one
    statement's parameters take several statements, in one transaction.

    `relaxed` (reads, when the operator turned AUDIT_READ_SYNCHRONOUS_COMMIT off): on PostgreSQL outside a
    caller's transaction the INSERT goes with `SET LOCAL synchronous_commit = off` in the same string, so the
    commit does not wait for the WAL flush; a database server crash can then lose the last ~0.6 s of rows
    (3 x wal_writer_delay), never part of one statement's rows."""
    if not rows:
        return []
    alias = router.db_for_write(AuditEvent)
    connection = connections[alias]
    names = list(rows[0])
    now = _CREATED.get_db_prep_save(at or timezone.now(), connection)
    if connection.vendor == "postgresql":
        relaxed = (
            relaxed
            and connection.get_autocommit()
            and not connection.settings_dict["OPTIONS"].get("server_side_binding")  # one string, two statements
        )
        statements = [(_recordset_statement(alias, tuple(names)), _recordset(rows, now))]
        if relaxed:
            statements = [("SET LOCAL synchronous_commit = off; " + statements[0][0], statements[0][1])]
    else:
        relaxed = False
        fields = _fields(names)
        head, returning = _insert_head(connection, fields), _returning(connection)
        size = max(1, min(connection.ops.bulk_batch_size([*fields, _CREATED], rows), 30000 // (len(fields) + 1)))
        placeholders = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
        statements = []
        for start in range(0, len(rows), size):
            part = rows[start : start + size]
            params = [
                value
                for row in part
                for value in (
                    *(f.get_db_prep_save(row[n], connection) for n, f in zip(names, fields, strict=True)),
                    now,
                )
            ]
            statements.append((f"{head}VALUES {', '.join([placeholders] * len(part))}{returning}", params))
    ids: list[int] = []
    together = transaction.atomic(using=alias, savepoint=False) if len(statements) > 1 else nullcontext()
    with together, connection.cursor() as cursor:
        for statement, params in statements:
            cursor.execute(statement, params)
            if relaxed:
                cursor.nextset()  # past SET's empty result, to the INSERT's ids
            ids += [pk for (pk,) in cursor.fetchall()]
    metrics.audit_rows(row["action"] for row in rows)
    return ids


_CREATED = AuditEvent._meta.get_field("created_at")


def _fields(names: list[str] | tuple[str, ...]) -> list:
    return [AuditEvent._meta.get_field(name) for name in names]  # "practice_id" names the practice field


def _insert_head(connection, fields: list) -> str:
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({', '.join(quote(f.column) for f in [*fields, _CREATED])}) "
    )


def _returning(connection) -> str:
    return f" RETURNING {connection.ops.quote_name(AuditEvent._meta.pk.column)}"


@functools.lru_cache(maxsize=64)
def _recordset_statement(alias: str, names: tuple[str, ...]) -> str:
    """The PostgreSQL INSERT of rows with these columns, built once per set of columns (asking each field its
    column type built field instances: a tenth of a search page's audit write)."""
    connection, fields = connections[alias], _fields(names)
    return _recordset_insert(_insert_head(connection, fields), list(names), fields, connection) + _returning(connection)


def _recordset_insert(head: str, names: list[str], fields: list, connection) -> str:
    """`INSERT … SELECT` of the rows of a JSON array of objects keyed by `names`, each typed as its column (without
    a length: a cast to varchar(n) would cut a longer value silently, where the column refuses it). The rows go in
    the array's order, and so do their ids."""
    quote = connection.ops.quote_name
    typed = ", ".join(
        f"{quote(name)} {field.db_type(connection).split('(')[0]}" for name, field in zip(names, fields, strict=True)
    )
    listed = ", ".join(f"r.{quote(name)}" for name in names)
    return f"{head}SELECT {listed}, %s FROM jsonb_to_recordset(%s::jsonb) AS r({typed})"


def _recordset(rows: list[dict[str, Any]], now: Any) -> list:
    """The parameters of `_recordset_insert`: the time of the rows and the rows as JSON (what Django's JSONField
    writes: keys that are not strings become strings; an empty IP is none, as GenericIPAddressField stores it;
    a choice is its value)."""
    document = orjson.dumps([{**row, "ip": row["ip"] or None} for row in rows], option=orjson.OPT_NON_STR_KEYS)
    return [now, document.decode()]


def insert_many(entries: Iterable[tuple[dict[str, Any], RequestInfo]]) -> None:
    """Writes rows given as `build`'s keywords with their request (live deliveries: hundreds per event)."""
    _write(_rows(entries))


# Set while a live event is executed (graph.live_exec): reads are collected, to be written as live deliveries.
_collector: ContextVar[list[dict[str, Any]] | None] = ContextVar("audit_collector", default=None)


@contextmanager
def collecting(entries: list[dict[str, Any]]) -> Iterator[None]:
    """Within: `record` and `record_many` append their keywords to `entries` instead of writing."""
    token = _collector.set(entries)
    try:
        yield
    finally:
        _collector.reset(token)


def record(**fields: Any) -> AuditEvent:
    """Writes one audit row; takes the keywords of `build`."""
    event = build(**fields)
    collector = _collector.get()
    if collector is not None:
        collector.append(fields)
        return event
    event.save(force_insert=True)
    metrics.audit_rows([event.action])
    return event


def record_read(entries: Iterable[dict[str, Any]]) -> None:
    """The rows of one read (each entry takes the keywords of `build`), in one INSERT (`_write`).

    The trail is durable by default: the commit waits for the WAL flush like any other. Only with
    AUDIT_READ_SYNCHRONOUS_COMMIT off (an operator's choice) is it relaxed: the flush was most of the write's
    time (a median 6 ms here under load)."""
    collector = _collector.get()
    if collector is not None:
        collector.extend(entries)
        return
    _write(_rows((entry, None) for entry in entries), relaxed=not settings.MAILBOX["AUDIT_READ_SYNCHRONOUS_COMMIT"])


def record_many(entries: Iterable[dict[str, Any]]) -> list[AuditEvent]:
    """Writes rows given as `build`'s keywords in one INSERT and returns them as saved instances."""
    collector = _collector.get()
    if collector is not None:
        entries = list(entries)
        collector.extend(entries)
        return [build(**entry) for entry in entries]
    rows = _rows((entry, None) for entry in entries)
    at = timezone.now()
    events = [AuditEvent(**row, created_at=at) for row in rows]
    alias = router.db_for_write(AuditEvent)
    for event, pk in zip(events, _write(rows, at=at), strict=True):
        event.pk = pk
        event._state.adding = False
        event._state.db = alias
    return events


def record_conversation_read(*, operation: str, user: User | None, conversation, via: AccessSource | str) -> AuditEvent:
    """A staff member opened a conversation (HTTP read or a live stream)."""
    return record(
        operation=operation,
        action=AuditAction.READ,
        practice=conversation.practice_id,
        actor_user=user,
        target=conversation,
        patient=conversation.patient_id,
        via=via,
    )
