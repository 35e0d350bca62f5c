"""Refusals in the audit trail: who was refused what (FORBIDDEN, NOT_FOUND, NOT_SUBSCRIBED, FEATURE_DISABLED),
filed under the practice of what was asked for, and tokens that did not authenticate."""

from __future__ import annotations

import datetime as dt

from django.db import models

from core.audit import record_many
from core.models import AccessSource, AuditAction, AuditEvent, Patient, Practice, User

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
