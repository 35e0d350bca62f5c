"""The objects one live event shows, loaded for its viewer as the HTTP reads load them (same annotations, same
place), once per event execution: `mailbox` and `conversation.mailbox` are then one row with one set of values.

Runs on the live database thread (`graph.live_exec`); the stream's access was decided for this event already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import models
from core.viewer_facts import annotate_conversations, annotate_mailboxes
from graph.context import Context

if TYPE_CHECKING:
    from graph.live_exec import LiveDelivery


def _memo(context: Context, delivery: LiveDelivery, name: str, load):
    return context.memo(("event-object", delivery.event.pk, name), load)


def mailbox(delivery: LiveDelivery, context: Context) -> models.Mailbox | None:
    event = delivery.event
    if not event.mailbox_id or event.kind == models.EventKind.MAILBOX_DELETED:
        return None

    def load() -> models.Mailbox | None:
        rows = models.Mailbox.objects.filter(pk=event.mailbox_id, practice_id=delivery.stream.practice_id)
        return annotate_mailboxes(rows, delivery.stream.user).first()

    return _memo(context, delivery, "mailbox", load)


def conversation(delivery: LiveDelivery, context: Context) -> models.Conversation | None:
    event = delivery.event
    if not event.conversation_id:
        return None
    stream = delivery.stream

    def load() -> models.Conversation | None:
        rows = models.Conversation.objects.filter(pk=event.conversation_id, practice_id=stream.practice_id)
        row = annotate_conversations(rows, stream.user).first()
        if row is not None:
            shown = context.cache.get(("event-object", event.pk, "mailbox"))
            if shown is not None and shown.pk == row.mailbox_id:
                row.mailbox = shown  # the same mailbox, with the viewer's annotations, everywhere in the event
            if stream.user is not None:
                context.paths.of(row).via = stream.via
        return row

    return _memo(context, delivery, "conversation", load)


def message(delivery: LiveDelivery, context: Context) -> models.Message | None:
    event = delivery.event
    if not event.message_id:
        return None
    stream = delivery.stream

    def load() -> models.Message | None:
        rows = models.Message.objects.filter(pk=event.message_id, conversation__practice_id=stream.practice_id)
        # Attachments are read by `Message.attachments` only when the subscription selects them.
        row = rows.select_related("sender_user", "sender_patient", "retracted_by").first()
        if row is not None and stream.patient is not None:
            if row.is_note:  # never reaches a portal stream (staff-only kind); a patient could not see it anyway
                return None
            row.sequence = row.portal_sequence  # the patient's numbering
        if row is not None:
            context.paths.of(row).via = stream.via if stream.user is not None else None
        return row

    return _memo(context, delivery, "message", load)
