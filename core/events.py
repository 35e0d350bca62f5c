"""The event log (outbox): one row per change, in the change's transaction, published after commit."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from django.db import transaction

from core.models import Event, EventKind, Membership, Patient, User

log = logging.getLogger(__name__)
# First key of the two-key advisory lock that orders a practice's event log (arbitrary, fixed).
_EVENT_LOCK_NAMESPACE = 7_351


def practice_group(practice_id: int) -> str:
    return f"practice.{practice_id}"


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def patient_group(patient_id: int) -> str:
    return f"patient.{patient_id}"


def groups_for(event: Event) -> list[str]:
    groups = [practice_group(event.practice_id)]
    if event.conversation_id:
        groups.append(conversation_group(event.conversation_id))
    if event.patient_id:
        groups.append(patient_group(event.patient_id))
    return groups


def _serialize_practice_log(practice_id: int) -> bool:
    """Commits a practice's events in id order (PostgreSQL), so a stream that has read up to id N never later
    sees a smaller id appear: the id is taken under a per-practice lock held until commit. SQLite writers are
    serialized by the IMMEDIATE transaction already. True: the log is serialized until commit, so the practice's
    newest event now is the one before this event in the log."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return False
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_EVENT_LOCK_NAMESPACE, practice_id])
        return True
    return connection.vendor == "sqlite"


def emit(
    kind: EventKind,
    *,
    practice_id: int,
    mailbox_id: int | None = None,
    conversation_id: int | None = None,
    patient_id: int | None = None,
    message_id: int | None = None,
    user_ids: Iterable[int] = (),
    data: dict | None = None,
) -> Event:
    previous_id = None
    if _serialize_practice_log(practice_id):
        # Named in the publish: a process whose log read has reached it takes this event from the publish.
        newest = Event.objects.filter(practice_id=practice_id).order_by("-id").values_list("id", flat=True)
        previous_id = newest.first()
    event = Event.objects.create(
        practice_id=practice_id,
        kind=kind,
        mailbox_id=mailbox_id,
        conversation_id=conversation_id,
        patient_id=patient_id,
        message_id=message_id,
        user_ids=sorted(set(user_ids)),
        data=data or {},
    )
    transaction.on_commit(lambda: publish(event, previous_id))
    return event


def emit_access_changed(
    *, practice_id: int, reason: str, user_ids: Iterable[int] = (), patient_id: int | None = None, **data
) -> Event:
    """Who may see what changed in this practice (no user or patient named: everyone). Live streams concerned
    decide their access again at their next event (`core.live.SharedLog`)."""
    return emit(
        EventKind.ACCESS_CHANGED,
        practice_id=practice_id,
        user_ids=user_ids,
        patient_id=patient_id,
        data={"reason": reason, **data},
    )


def emit_account_access_changed(*, reason: str, user: User | None = None, patient: Patient | None = None) -> None:
    """A user's or patient's credentials or account changed: one event in each practice they belong to."""
    if patient is not None:
        emit_access_changed(practice_id=patient.practice_id, patient_id=patient.pk, reason=reason)
        return
    for practice_id in Membership.objects.filter(user=user).values_list("practice_id", flat=True):
        emit_access_changed(practice_id=practice_id, user_ids=[user.pk], reason=reason)


# A publish carries its event's row up to this size of `data` (JSON); a larger one is read from the log.
_ROW_DATA_MAX_BYTES = 2048


def event_row(event: Event) -> dict | None:
    """The logged row as a publish carries it (`core.live.AnnouncedRows` makes the `Event` again)."""
    if len(json.dumps(event.data, separators=(",", ":"))) > _ROW_DATA_MAX_BYTES:
        return None
    return {
        "id": event.pk,
        "kind": event.kind,
        "mailbox_id": event.mailbox_id,
        "conversation_id": event.conversation_id,
        "patient_id": event.patient_id,
        "message_id": event.message_id,
        "user_ids": list(event.user_ids),
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


def publish(event: Event, previous_id: int | None = None) -> None:
    """Best effort: a lost publish is recovered by the subscriber's next resume from the log.

    `previous_id`: the practice's event before this one in the log (known when the log was serialized): the
    publish then carries the row, and a process whose log read has reached `previous_id` appends it without
    reading the log (`core.live.SharedLog`)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    # The practice lets a woken stream tell whether its process has already read this event (core.live); the
    # group, which of a process's streams it wakes (graph.asgi.LiveHub).
    payload = {"type": "mailbox.event", "event_id": event.pk, "practice_id": event.practice_id}
    row = event_row(event) if previous_id is not None else None
    if row is not None:
        payload |= {"previous_id": previous_id, "row": row}
    try:
        async_to_sync(_send_to_groups)(layer, payload, groups_for(event))
    except Exception:  # the log is the source of truth; never fail a committed change
        log.exception("publishing event %s failed; subscribers will recover it on resume", event.pk)


async def _send_to_groups(layer, payload: dict, groups: list[str]) -> None:
    """One hand-off to the event loop for all of an event's groups (each `async_to_sync` call is a round trip
    between the request's thread and the loop: the third group's publish waited for two of them)."""
    for group in groups:
        await layer.group_send(group, {**payload, "group": group})
