"""Waiting time: `Conversation.waiting_since` is the time of the oldest patient message not yet followed by a staff
answer. A stored, indexed column so lists, filters and `Mailbox.stats` read it without scanning messages.

Every action that adds or withdraws a message keeps it through this module, under the conversation's row lock:
- `after_message` when a message is appended (a patient message starts the wait, a staff answer ends it and
  records how long the patient waited, a note changes nothing);
- `recompute` when history changes otherwise (a withdrawn answer, say): rebuilt from the messages themselves.

What counts as a staff answer is `ANSWER` (and `counts_as_answer` for a message in memory), extended together: a
message from the practice, written by staff (not the mailbox's automatic reply) and not withdrawn. A note is never
one.
"""

from __future__ import annotations

from django.db.models import Q

from core.models import Conversation, Message, MessageDirection, StaffResponse

ANSWER = Q(direction=MessageDirection.TO_PATIENT, is_automatic=False, retracted_at__isnull=True)


def counts_as_answer(message: Message) -> bool:
    return (
        message.direction == MessageDirection.TO_PATIENT and not message.is_automatic and message.retracted_at is None
    )


def after_message(conversation: Conversation, message: Message) -> None:
    """The message was just appended; the caller saves `waiting_since` with the conversation."""
    if message.direction == MessageDirection.FROM_PATIENT:
        if conversation.waiting_since is None:
            conversation.waiting_since = message.sent_at
    elif counts_as_answer(message) and conversation.waiting_since is not None:
        StaffResponse.objects.create(
            conversation=conversation,
            mailbox_id=conversation.mailbox_id,
            message=message,
            waited_from=conversation.waiting_since,
            answered_at=message.sent_at,
            seconds=max((message.sent_at - conversation.waiting_since).total_seconds(), 0.0),
            is_first=not StaffResponse.objects.filter(conversation=conversation).exists(),
        )
        conversation.waiting_since = None


def recompute(conversation: Conversation) -> None:
    """Rebuilds `waiting_since` and the conversation's `StaffResponse` rows from the messages and saves them (caller
    holds the conversation lock). After an answer is withdrawn its row goes, and the patient messages it answered
    wait for the next answer instead (or still wait): the stats then say what the patient lived through."""
    rows = (
        Message.objects.filter(conversation=conversation)
        .exclude(direction=MessageDirection.INTERNAL_NOTE)
        .order_by("sequence")
        .values_list("pk", "direction", "is_automatic", "retracted_at", "sent_at")
    )
    since = None
    wanted: dict[int, tuple] = {}
    for pk, direction, is_automatic, retracted_at, sent_at in rows.iterator():
        if direction == MessageDirection.FROM_PATIENT:
            since = since or sent_at
        elif since is not None and not is_automatic and retracted_at is None:
            wanted[pk] = (since, sent_at, max((sent_at - since).total_seconds(), 0.0), not wanted)
            since = None
    kept = set()
    for row in StaffResponse.objects.filter(conversation=conversation):
        if wanted.get(row.message_id) == (row.waited_from, row.answered_at, row.seconds, row.is_first):
            kept.add(row.message_id)
        else:
            row.delete()
    StaffResponse.objects.bulk_create(
        StaffResponse(
            conversation=conversation,
            mailbox_id=conversation.mailbox_id,
            message_id=pk,
            waited_from=waited_from,
            answered_at=answered_at,
            seconds=seconds,
            is_first=is_first,
        )
        for pk, (waited_from, answered_at, seconds, is_first) in wanted.items()
        if pk not in kept
    )
    if since != conversation.waiting_since:
        conversation.waiting_since = since
        Conversation.objects.filter(pk=conversation.pk).update(waiting_since=since)
