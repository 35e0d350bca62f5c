"""Writing the append-only audit trail. A failed audit write fails the operation (it is in its transaction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import connections, models, router
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

    On PostgreSQL, outside a caller's transaction, the INSERT goes with `SET LOCAL synchronous_commit = off` in
    one round trip (one implicit transaction), unless AUDIT_READ_SYNCHRONOUS_COMMIT is set: its commit does not
    wait for the WAL flush, most of the write's time (a median 6 ms here, more under load). The rows are
    visible at once and commit in order; a database server crash can lose the last ~0.6 s of them
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
    rows = AuditEvent.objects.bulk_create([build(**entry) for entry in entries])
    metrics.audit_rows(row.action for row in rows)
    return rows


# ---- refusals ----------------------------------------------------------------------------------------

# Refusals worth a trace: someone signed in asked for something they may not have (or that is not there).
AUDITED_REFUSALS = frozenset({"FORBIDDEN", "NOT_FOUND", "NOT_SUBSCRIBED", "FEATURE_DISABLED"})
# Arguments that carry content rather than "what was asked": never copied into the trail.
_CONTENT_ARGUMENTS = frozenset({"body", "attachments", "value"})
# Searches: EXECUTE, and their refusals keep the search text in `query` like their successes.
SEARCH_OPERATIONS = frozenset({"searchPatients", "searchMessages"})
_MUTATION_ACTIONS = (
    (("create", "start", "send", "add"), AuditAction.CREATE),
    (("delete", "unsubscribe", "revoke"), AuditAction.DELETE),
)


def _target_models() -> dict[str, type[models.Model]]:
    from core.models import Attachment, Conversation, Mailbox, Message, QuickReply

    return {
        "QuickReply": QuickReply,
        "Practice": Practice,
        "Mailbox": Mailbox,
        "Conversation": Conversation,
        "Patient": Patient,
        "Message": Message,
        "Attachment": Attachment,
        "User": User,
    }


def refusal_action(operation: str, *, mutation: bool) -> AuditAction:
    if not mutation:
        return AuditAction.EXECUTE if operation in SEARCH_OPERATIONS else AuditAction.READ
    for prefixes, action in _MUTATION_ACTIONS:
        if operation.startswith(prefixes):
            return action
    return AuditAction.UPDATE


def _practice_and_patient(record: models.Model) -> tuple[int | None, int | None]:
    from core.models import Attachment, Conversation, Message

    if isinstance(record, Practice):
        return record.pk, None
    if isinstance(record, Patient):
        return record.practice_id, record.pk
    if isinstance(record, Conversation):
        return record.practice_id, record.patient_id
    if isinstance(record, Message):
        return record.conversation.practice_id, record.conversation.patient_id
    if isinstance(record, Attachment) and record.message_id is not None:
        return record.message.conversation.practice_id, record.message.conversation.patient_id
    return getattr(record, "practice_id", None), None


def _describe_target(targets: list[tuple[str, int]]) -> tuple[models.Model | None, int | None, int | None]:
    """The first asked-for record that exists: (record, its practice, its patient)."""
    known = _target_models()
    for type_name, pk in targets:
        model = known.get(type_name)
        if model is None or not 0 < pk < 2**63:
            continue
        record = model.objects.filter(pk=pk).first()
        if record is None:
            continue
        return record, *_practice_and_patient(record)
    return None, None, None


def record_refusal(
    *,
    operation: str,
    code: str,
    mutation: bool,
    actor_user: User | None = None,
    actor_patient: Patient | None = None,
    targets: list[tuple[str, int]] = (),
    arguments: dict | None = None,
    via: str = "",
    path: list | None = None,
) -> AuditEvent | None:
    """Audits a refused operation in its own short transaction, so the trace survives the operation's rollback.

    Recorded for the refusal codes of AUDITED_REFUSALS when someone is signed in; the record belongs to the
    practice of what was asked for (probes of another practice show in that practice's trail) and, when that
    is not one of the caller's practices or nothing asked for exists, a copy naming no record goes to each of
    the caller's practices. `query` holds a search text, `detail` the arguments without message content.
    Returns the first row written.
    """
    from django.db import transaction

    if code not in AUDITED_REFUSALS or (actor_user is None and actor_patient is None):
        return None
    arguments = {k: v for k, v in (arguments or {}).items() if k not in _CONTENT_ARGUMENTS}
    target, practice_id, patient_id = _describe_target(list(targets))
    if actor_patient is not None:
        via = AccessSource.PORTAL
    elif via not in AccessSource.values:
        via = ""
    query = arguments.get("query") if operation in SEARCH_OPERATIONS else ""
    common = {
        "operation": operation[:64],
        "action": refusal_action(operation, mutation=mutation),
        "actor_user": actor_user,
        "actor_patient": actor_patient,
        "via": via,
        "outcome": code,
        "query": str(query or ""),
        "detail": {"arguments": _shorten(arguments), **({"path": _shorten(path)} if path else {})},
    }
    rows = [] if practice_id is None else [{**common, "practice": practice_id, "target": target, "patient": patient_id}]
    # The actor's own practices see what their people were refused even when the record is unknown or of another
    # practice. That copy names no record and no patient, so it reads the same whether the record exists
    # elsewhere or not: filing it tells nobody anything about another practice.
    rows += [
        {**common, "practice": own} for own in _actor_practice_ids(actor_user, actor_patient) if own != practice_id
    ]
    if not rows:  # nobody to file it under (an actor of no practice): `manage.py audit_refusals` reports it
        rows = [{**common, "practice": None, "target": target, "patient": patient_id}]
    with transaction.atomic():
        return record_many(rows)[0]


def _actor_practice_ids(user: User | None, patient: Patient | None) -> list[int]:
    """The practices a caller belongs to (a patient to one), disabled accounts included: their refusals and
    failed tokens are their practices' business."""
    from core.models import Membership

    if patient is not None:
        return [patient.practice_id]
    if user is None:
        return []
    return sorted(Membership.objects.filter(user=user).values_list("practice_id", flat=True))


def _shorten(value: object) -> object:
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, dict):
        return {str(k)[:64]: _shorten(v) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        return [_shorten(v) for v in list(value)[:20]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:200]


def record_token_failure(
    *, reason: str, token_id: int | None, user: User | None = None, patient: Patient | None = None
) -> AuditEvent:
    """A token that did not authenticate: no actor, the caller's IP, in its own short transaction.

    Filed under each practice of the token's owner when the token is known (revoked, expired, idle, disabled
    account); an unknown token has no owner, and `manage.py audit_refusals` reports those rows."""
    from django.db import transaction

    entry = {
        "operation": "authenticate",
        "action": AuditAction.EXECUTE,
        "outcome": "UNAUTHENTICATED",
        "detail": {"reason": reason, **({"token_id": token_id} if token_id else {})},
    }
    practices = _actor_practice_ids(user, patient) or [None]
    with transaction.atomic():
        return record_many({**entry, "practice": practice} for practice in practices)[0]


def unowned_refusals(*, since: dt.datetime | None = None) -> models.QuerySet[AuditEvent]:
    """Refusals filed under no practice (unknown tokens, callers of no practice), newest first: no practice's
    administrators can read them through the API."""
    events = AuditEvent.objects.filter(practice__isnull=True).exclude(outcome="SUCCESS")
    if since is not None:
        events = events.filter(created_at__gte=since)
    return events.order_by("-id")


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
