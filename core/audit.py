"""Writing the append-only audit trail. A failed audit write fails the operation (it is in its transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

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


def _insert(entries: Iterable[tuple[dict[str, Any], RequestInfo]], connection) -> tuple[str, list[list], list] | None:
    """The start of an INSERT of rows given as `build`'s keywords with their request (up to VALUES), each row's
    parameters and the rows' actions (for the metrics, once written)."""
    rows = [_columns(**{**_DEFAULTS, **fields, "request": request}) for fields, request in entries]
    if not rows:
        return None
    meta = AuditEvent._meta
    names = [*rows[0], "created_at"]
    fields = [meta.get_field(name) for name in names]  # "practice_id" names the practice field too
    now = timezone.now()
    params = [
        [field.get_db_prep_save(value, connection) for field, value in zip(fields, (*row.values(), now), strict=True)]
        for row in rows
    ]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    return (
        f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES ",
        params,
        [r["action"] for r in rows],
    )


def insert_many(entries: Iterable[tuple[dict[str, Any], RequestInfo]]) -> None:
    """Writes rows given as `build`'s keywords with their request, in one statement and without making model
    instances: live deliveries write hundreds per event, and `bulk_create` cost ~180 µs a row."""
    connection = connections[router.db_for_write(AuditEvent)]
    insert = _insert(entries, connection)
    if insert is None:
        return
    sql, params, actions = insert
    with connection.cursor() as cursor:
        cursor.executemany(sql + "(" + ", ".join(["%s"] * len(params[0])) + ")", params)
    metrics.audit_rows(actions)


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
    """The rows of one read (each entry takes the keywords of `build`): one multi-row INSERT, no model instances.

    The trail is durable by default: the commit waits for the WAL flush like any other. Only with
    AUDIT_READ_SYNCHRONOUS_COMMIT off (an operator's choice) does the INSERT go, on PostgreSQL outside a caller's
    transaction, with `SET LOCAL synchronous_commit = off` in one round trip: the flush was most of the write's
    time (a median 6 ms here under load), and a database server crash can then lose the last ~0.6 s of rows
    (3 x wal_writer_delay), never part of one read's rows."""
    collector = _collector.get()
    if collector is not None:
        collector.extend(entries)
        return
    connection = connections[router.db_for_write(AuditEvent)]
    insert = _insert(((entry, current_request()) for entry in entries), connection)
    if insert is None:
        return
    sql, rows, actions = insert
    values = "(" + ", ".join(["%s"] * len(rows[0])) + ")"
    statement = sql + ", ".join([values] * len(rows))
    relaxed = (
        connection.vendor == "postgresql"
        and connection.get_autocommit()
        and not connection.settings_dict["OPTIONS"].get("server_side_binding")  # one string, two statements
        and not settings.MAILBOX["AUDIT_READ_SYNCHRONOUS_COMMIT"]
    )
    if relaxed:
        statement = "SET LOCAL synchronous_commit = off; " + statement
    with connection.cursor() as cursor:
        cursor.execute(statement, [value for row in rows for value in row])
    metrics.audit_rows(actions)


def record_many(entries: Iterable[dict[str, Any]]) -> list[AuditEvent]:
    """One INSERT for the rows of a page read at once (each entry takes the keywords of `build`)."""
    collector = _collector.get()
    if collector is not None:
        entries = list(entries)
        collector.extend(entries)
        return [build(**entry) for entry in entries]
    rows = [build(**entry) for entry in entries]
    _insert_events(rows)
    metrics.audit_rows(row.action for row in rows)
    return rows


def _insert_events(events: list[AuditEvent]) -> None:
    """The rows as one `INSERT … VALUES … RETURNING id`: one round trip, where `bulk_create` sends BEGIN, the
    INSERT and COMMIT (and compiles it through the ORM). The statement commits itself, as durably (synchronous
    commit stays on); more rows than one statement's parameters take several, in one transaction."""
    if not events:
        return
    alias = router.db_for_write(AuditEvent)
    connection = connections[alias]
    fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) VALUES "
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    returning = f" RETURNING {quote(AuditEvent._meta.pk.column)}"
    size = max(1, min(connection.ops.bulk_batch_size(fields, events), 30000 // len(fields)))
    batches = [events[i : i + size] for i in range(0, len(events), size)]
    together = transaction.atomic(using=alias, savepoint=False) if len(batches) > 1 else nullcontext()
    with together, connection.cursor() as cursor:
        for batch in batches:
            params = [f.get_db_prep_save(f.pre_save(e, True), connection) for e in batch for f in fields]
            cursor.execute(head + ", ".join([row] * len(batch)) + returning, params)
            for event, (pk,) in zip(batch, cursor.fetchall(), strict=True):
                event.pk = pk
                event._state.adding = False
                event._state.db = alias


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
