"""Waiting time: `Conversation.waiting_since` is the time of the oldest patient message not yet followed by a staff
answer. A stored, indexed column so lists, filters and `Mailbox.stats` read it without scanning messages.

Every action that adds or withdraws a message keeps it through this module, under the conversation's row lock:
- `after_message` when a message is appended (a patient message starts the wait, a staff answer ends it and
  records how long the patient waited, a note changes nothing);
- `recompute` when history changes otherwise (a withdrawn answer, say): rebuilt from the messages themselves.

What counts as a staff answer is `ANSWER` (and `counts_as_answer` for a message in memory): extend both together
when messages gain kinds that do not answer the patient (automatic replies, withdrawn messages).
"""

from __future__ import annotations

from django.db.models import Q

from core.models import Conversation, Message, MessageDirection, StaffResponse

ANSWER = Q(direction=MessageDirection.TO_PATIENT)


def counts_as_answer(message: Message) -> bool:
    return message.direction == MessageDirection.TO_PATIENT


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
    """Rebuilds `waiting_since` from the messages and saves it (caller holds the conversation lock)."""
    messages = Message.objects.filter(conversation=conversation)
    answered = messages.filter(ANSWER).order_by("-sequence").values_list("sequence", flat=True).first() or 0
    oldest = (
        messages.filter(direction=MessageDirection.FROM_PATIENT, sequence__gt=answered)
        .order_by("sequence")
        .values_list("sent_at", flat=True)
        .first()
    )
    if oldest != conversation.waiting_since:
        conversation.waiting_since = oldest
        Conversation.objects.filter(pk=conversation.pk).update(waiting_since=oldest)
