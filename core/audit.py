"""Writing the append-only audit trail. A failed audit write fails the operation (it is in its transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import models

from core.context import current_request
from core.models import AccessSource, AuditAction, AuditEvent, Patient, Practice, User


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
) -> AuditEvent:
    """An unsaved audit row; `record` and `record_many` write it."""
    info = current_request()
    return AuditEvent(
        practice_id=practice if isinstance(practice, int) or practice is None else practice.pk,
        actor_user=actor_user,
        actor_patient=actor_patient,
        action=action,
        operation=operation,
        object_type=type(target).__name__ if target is not None else "",
        object_id=str(target.pk) if target is not None else "",
        patient_id=patient if isinstance(patient, int) or patient is None else patient.pk,
        query=query[:200],
        via=str(via),
        ip=info.ip,
        outcome=outcome,
        request_id=info.request_id,
        detail=detail or {},
    )


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
    return event


def record_many(entries: Iterable[dict[str, Any]]) -> list[AuditEvent]:
    """One INSERT for the rows of a page read at once (each entry takes the keywords of `build`)."""
    collector = _collector.get()
    if collector is not None:
        entries = list(entries)
        collector.extend(entries)
        return [build(**entry) for entry in entries]
    return AuditEvent.objects.bulk_create([build(**entry) for entry in entries])


# ---- refusals ----------------------------------------------------------------------------------------

# Refusals worth a trace: someone signed in asked for something they may not have (or that is not there).
AUDITED_REFUSALS = frozenset({"FORBIDDEN", "NOT_FOUND", "NOT_SUBSCRIBED", "FEATURE_DISABLED"})
# Arguments that carry content rather than "what was asked": never copied into the trail.
_CONTENT_ARGUMENTS = frozenset({"body", "attachments", "value"})
_MUTATION_ACTIONS = (
    (("create", "start", "send"), AuditAction.CREATE),
    (("delete", "unsubscribe", "revoke"), AuditAction.DELETE),
)


def _target_models() -> dict[str, type[models.Model]]:
    from core.models import Attachment, Conversation, Mailbox, Message

    return {
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
        return AuditAction.EXECUTE if operation == "searchPatients" else AuditAction.READ
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
    practice of what was asked for (probes of another practice show in that practice's trail), `query` holds
    a search text, `detail` the arguments without message content.
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
    query = arguments.get("query") if operation == "searchPatients" else ""
    with transaction.atomic():
        return record(
            operation=operation[:64],
            action=refusal_action(operation, mutation=mutation),
            practice=practice_id,
            actor_user=actor_user,
            actor_patient=actor_patient,
            target=target,
            patient=patient_id,
            via=via,
            outcome=code,
            query=str(query or ""),
            detail={"arguments": _shorten(arguments), **({"path": _shorten(path)} if path else {})},
        )


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


def record_token_failure(*, reason: str, token_id: int | None, practice_id: int | None = None) -> AuditEvent:
    """A token that did not authenticate: no actor, the caller's IP, in its own short transaction."""
    from django.db import transaction

    with transaction.atomic():
        return record(
            operation="authenticate",
            action=AuditAction.EXECUTE,
            practice=practice_id,
            outcome="UNAUTHENTICATED",
            detail={"reason": reason, **({"token_id": token_id} if token_id else {})},
        )


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
