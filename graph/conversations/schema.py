"""Root fields of conversations and messages: open, search, quick replies, the portal's threads; every change."""

from __future__ import annotations

import strawberry
from strawberry.file_uploads import Upload

from core import actions, models, reads, viewer_facts
from graph import guards
from graph.batching import with_siblings
from graph.context import Info, fresh
from graph.conversations import search as message_search
from graph.conversations.types import ConversationType, MessageType, QuickReplyType
from graph.enums import AccessSource, ConversationPriority
from graph.ids import decode_id
from permissions import staff_place


def to_access_source(via: AccessSource | None) -> models.AccessSource:
    """`via: null` means the default, the mailbox view."""
    return staff_place(via.value if via is not None else None, default=models.AccessSource.MAILBOX)


def _conversation(info: Info, conversation: models.Conversation, via=models.AccessSource.MAILBOX):
    fresh(info)
    row = viewer_facts.annotate_conversations(
        models.Conversation.objects.filter(pk=conversation.pk), info.context.user
    ).get()
    path = info.context.paths.of(row)
    path.via = via
    path.answer_of = info.field_name  # its messages, if asked for, are audited as read (ConversationType.messages)
    return row


def _message(info: Info, message: models.Message, via: models.AccessSource | None = None) -> models.Message:
    fresh(info)
    row = viewer_facts.messages_with_details(models.Message.objects.filter(pk=message.pk)).get()
    info.context.paths.of(row).via = via  # attachment URLs apply the rules of where the sender is
    if info.context.patient is not None:
        row.sequence = row.portal_sequence  # the patient's numbering (notes have no place in it)
    return row


@strawberry.field
def conversation(
    info: Info, id: strawberry.ID, via: AccessSource | None = AccessSource.MAILBOX
) -> ConversationType | None:
    conversation = reads.open_conversation(
        user=info.context.require_user(),
        conversation_id=decode_id(id, "Conversation"),
        via=to_access_source(via),
    )
    place = info.context.paths.of(conversation).via = to_access_source(via)
    guards.note_workbench_staff(info.context, conversation.practice_id)
    if place == models.AccessSource.MAILBOX:
        guards.note_mailbox_view(info.context, conversation.mailbox_id)
    return conversation


@strawberry.field(
    description="Messages of the viewer's subscribed active mailboxes (or of `mailboxId`, which the viewer must be "
    "subscribed to) having every word of `query`, in any order, as the start of one of their words, ignoring "
    "case and accents; newest first. Staff only; at most 50 per page (`first`); the query text is audited."
)
def search_messages(
    info: Info,
    practice_id: strawberry.ID,
    query: str,
    mailbox_id: strawberry.ID | None = None,
    first: int | None = 20,
    after: str | None = None,
) -> message_search.MessageSearchConnection:
    return message_search.search_messages(info, practice_id, query, mailbox_id, first, after)


@strawberry.field(
    description="The practice's quick replies by title (every staff member); `query` keeps those whose title "
    "holds every word typed."
)
def quick_replies(info: Info, practice_id: strawberry.ID, query: str | None = None) -> list[QuickReplyType]:
    return list(
        reads.quick_replies(
            user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice"), query=query
        )
    )


@strawberry.field(description="Portal: the patient's own conversations, most recent first.")
def portal_conversations(info: Info) -> list[ConversationType]:
    return with_siblings(info.context, list(reads.portal_conversations(patient=info.context.require_patient())))


@strawberry.mutation(description="Returns the existing conversation of this mailbox and patient, or starts it.")
def start_conversation(
    info: Info,
    mailbox_id: strawberry.ID,
    patient_id: strawberry.ID,
    via: AccessSource | None = AccessSource.MAILBOX,
) -> ConversationType:
    conversation = actions.start_conversation(
        acting_user=info.context.require_user(),
        mailbox_id=decode_id(mailbox_id, "Mailbox"),
        patient_id=decode_id(patient_id, "Patient"),
        via=to_access_source(via),
    )
    return _conversation(info, conversation, to_access_source(via))


@strawberry.mutation
def archive_conversation(info: Info, conversation_id: strawberry.ID) -> ConversationType:
    conversation = actions.archive_conversation(
        acting_user=info.context.require_user(), conversation_id=decode_id(conversation_id, "Conversation")
    )
    return _conversation(info, conversation)


@strawberry.mutation
def unarchive_conversation(info: Info, conversation_id: strawberry.ID) -> ConversationType:
    conversation = actions.unarchive_conversation(
        acting_user=info.context.require_user(), conversation_id=decode_id(conversation_id, "Conversation")
    )
    return _conversation(info, conversation)


@strawberry.mutation
def mark_conversation_read(
    info: Info, conversation_id: strawberry.ID, via: AccessSource | None = AccessSource.MAILBOX
) -> ConversationType:
    conversation = actions.mark_conversation_read(
        acting_user=info.context.require_user(),
        conversation_id=decode_id(conversation_id, "Conversation"),
        via=to_access_source(via),
    )
    return _conversation(info, conversation, to_access_source(via))


@strawberry.mutation
def send_message(
    info: Info,
    conversation_id: strawberry.ID,
    body: str | None = None,
    attachments: list[Upload] | None = None,
    client_message_id: str | None = None,
    via: AccessSource | None = AccessSource.MAILBOX,
) -> MessageType:
    message = actions.send_staff_message(
        acting_user=info.context.require_user(),
        conversation_id=decode_id(conversation_id, "Conversation"),
        body=body,
        attachments=attachments or (),
        client_message_id=client_message_id,
        via=to_access_source(via),
    )
    return _message(info, message, to_access_source(via))


@strawberry.mutation(
    description="Withdraw a message entered in error: its sender or a mailbox admin, staff messages only. "
    "Nothing is deleted; the patient sees only that the practice withdrew a message."
)
def retract_message(info: Info, message_id: strawberry.ID, reason: str) -> MessageType:
    message = actions.retract_message(
        acting_user=info.context.require_user(), message_id=decode_id(message_id, "Message"), reason=reason
    )
    return _message(info, message)


@strawberry.mutation(description="Portal: a patient writes to one of the practice's active mailboxes.")
def send_portal_message(
    info: Info,
    mailbox_id: strawberry.ID,
    body: str | None = None,
    attachments: list[Upload] | None = None,
    client_message_id: str | None = None,
) -> MessageType:
    message = actions.send_patient_message(
        acting_patient=info.context.require_patient(),
        mailbox_id=decode_id(mailbox_id, "Mailbox"),
        body=body,
        attachments=attachments or (),
        client_message_id=client_message_id,
    )
    return _message(info, message)


@strawberry.mutation(
    description="A staff-only note in the thread (direction INTERNAL_NOTE). The patient never sees it; it does "
    "not reactivate an archived conversation, answer a waiting patient or count as unread."
)
def add_internal_note(
    info: Info,
    conversation_id: strawberry.ID,
    body: str | None = None,
    attachments: list[Upload] | None = None,
    client_message_id: str | None = None,
    via: AccessSource | None = AccessSource.MAILBOX,
) -> MessageType:
    note = actions.add_internal_note(
        acting_user=info.context.require_user(),
        conversation_id=decode_id(conversation_id, "Conversation"),
        body=body,
        attachments=attachments or (),
        client_message_id=client_message_id,
        via=to_access_source(via),
    )
    return _message(info, note, to_access_source(via))


@strawberry.mutation(
    description="Assigns the conversation to a subscriber of its mailbox (yourself: a claim); `userId: null` "
    "unassigns. `reason` (at most 500 characters) is kept in the assignment history."
)
def assign_conversation(
    info: Info,
    conversation_id: strawberry.ID,
    user_id: strawberry.ID | None = None,
    reason: str | None = None,
) -> ConversationType:
    conversation = actions.assign_conversation(
        acting_user=info.context.require_user(),
        conversation_id=decode_id(conversation_id, "Conversation"),
        user_id=decode_id(user_id, "User") if user_id is not None else None,
        reason=reason,
    )
    return _conversation(info, conversation)


@strawberry.mutation
def set_conversation_priority(
    info: Info, conversation_id: strawberry.ID, priority: ConversationPriority
) -> ConversationType:
    conversation = actions.set_conversation_priority(
        acting_user=info.context.require_user(),
        conversation_id=decode_id(conversation_id, "Conversation"),
        priority=models.ConversationPriority(priority).value,
    )
    return _conversation(info, conversation)


@strawberry.mutation(description="Mailbox admins: a new quick reply for the practice's staff.")
def create_quick_reply(info: Info, practice_id: strawberry.ID, title: str, body: str) -> QuickReplyType:
    fresh(info)
    return actions.create_quick_reply(
        acting_user=info.context.require_user(),
        practice_id=decode_id(practice_id, "Practice"),
        title=title,
        body=body,
    )


@strawberry.mutation(description="Mailbox admins: change a quick reply's title and text.")
def update_quick_reply(info: Info, quick_reply_id: strawberry.ID, title: str, body: str) -> QuickReplyType:
    fresh(info)
    return actions.update_quick_reply(
        acting_user=info.context.require_user(),
        quick_reply_id=decode_id(quick_reply_id, "QuickReply"),
        title=title,
        body=body,
    )


@strawberry.mutation(description="Mailbox admins: delete a quick reply; returns its id.")
def delete_quick_reply(info: Info, quick_reply_id: strawberry.ID) -> strawberry.ID:
    fresh(info)
    actions.delete_quick_reply(
        acting_user=info.context.require_user(), quick_reply_id=decode_id(quick_reply_id, "QuickReply")
    )
    return quick_reply_id
