"""Root mutations: decode ids, call one `core.actions` function, return the changed object."""

from __future__ import annotations

import strawberry
from strawberry.file_uploads import Upload

from core import actions, models, reads
from core.admin_reads import user_mailbox_access
from graph.ids import decode_id, decode_ids
from graph.queries import access_rows, to_access_source
from graph.types import (
    AccessSource,
    ConversationPriority,
    ConversationType,
    Info,
    MailboxType,
    MembershipType,
    MessageType,
    PortalNotifications,
    PracticeMailboxAccess,
    PracticePermission,
    PracticeSettingType,
    QuickReplyType,
)


def fresh(info: Info) -> None:
    """A change invalidates the request's memoized access decisions (several mutations can share a request)."""
    info.context.cache.clear()


def _mailbox(info: Info, mailbox: models.Mailbox) -> models.Mailbox:
    """Re-read with the viewer's annotations (isSubscribed, counts) after a change."""
    fresh(info)
    return reads.annotate_mailboxes(models.Mailbox.objects.filter(pk=mailbox.pk), info.context.user).get()


def _conversation(info: Info, conversation: models.Conversation, via=models.AccessSource.MAILBOX):
    fresh(info)
    row = reads.annotate_conversations(models.Conversation.objects.filter(pk=conversation.pk), info.context.user).get()
    row._via = via
    row._answer_of = info.field_name  # its messages, if asked for, are audited as read (ConversationType.messages)
    return row


def _message(info: Info, message: models.Message, via: models.AccessSource | None = None) -> models.Message:
    fresh(info)
    row = reads.messages_with_details(models.Message.objects.filter(pk=message.pk)).get()
    row._via = via  # attachment URLs apply the rules of where the sender is
    if info.context.patient is not None:
        row.sequence = row.portal_sequence  # the patient's numbering (notes have no place in it)
    return row


@strawberry.type
class Mutation:
    @strawberry.mutation
    def create_mailbox(self, info: Info, practice_id: strawberry.ID, name: str) -> MailboxType:
        mailbox = actions.create_mailbox(
            acting_user=info.context.require_user(), practice_id=decode_id(practice_id, "Practice"), name=name
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation
    def rename_mailbox(self, info: Info, mailbox_id: strawberry.ID, name: str) -> MailboxType:
        mailbox = actions.rename_mailbox(
            acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox"), name=name
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation
    def deactivate_mailbox(self, info: Info, mailbox_id: strawberry.ID) -> MailboxType:
        mailbox = actions.deactivate_mailbox(
            acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation
    def activate_mailbox(self, info: Info, mailbox_id: strawberry.ID) -> MailboxType:
        mailbox = actions.activate_mailbox(
            acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation(description="Deletes a mailbox that has no conversations; returns its id.")
    def delete_mailbox(self, info: Info, mailbox_id: strawberry.ID) -> strawberry.ID:
        actions.delete_mailbox(acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox"))
        return mailbox_id

    @strawberry.mutation(description="Mailbox admins: the auto-reply patients get (null or blank turns it off).")
    def set_mailbox_auto_reply(self, info: Info, mailbox_id: strawberry.ID, text: str | None = None) -> MailboxType:
        mailbox = actions.set_mailbox_auto_reply(
            acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox"), text=text
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation
    def subscribe_to_mailbox(self, info: Info, mailbox_id: strawberry.ID) -> MailboxType:
        mailbox = actions.subscribe_to_mailbox(
            acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation
    def unsubscribe_from_mailbox(self, info: Info, mailbox_id: strawberry.ID) -> MailboxType:
        mailbox = actions.unsubscribe_from_mailbox(
            acting_user=info.context.require_user(), mailbox_id=decode_id(mailbox_id, "Mailbox")
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation
    def set_mailbox_subscribers(
        self, info: Info, mailbox_id: strawberry.ID, user_ids: list[strawberry.ID]
    ) -> MailboxType:
        mailbox = actions.set_mailbox_subscribers(
            acting_user=info.context.require_user(),
            mailbox_id=decode_id(mailbox_id, "Mailbox"),
            user_ids=decode_ids(user_ids, "User"),
        )
        return _mailbox(info, mailbox)

    @strawberry.mutation(description="Subscribe a user to all mailboxes of a practice, none, or a chosen set.")
    def set_user_mailbox_access(
        self,
        info: Info,
        user_id: strawberry.ID,
        practice_id: strawberry.ID,
        all_mailboxes: bool | None = None,
        mailbox_ids: list[strawberry.ID] | None = None,
    ) -> list[PracticeMailboxAccess]:
        user = info.context.require_user()
        target = decode_id(user_id, "User")
        actions.set_user_mailbox_access(
            acting_user=user,
            user_id=target,
            practice_id=decode_id(practice_id, "Practice"),
            all_mailboxes=all_mailboxes,
            mailbox_ids=decode_ids(mailbox_ids, "Mailbox") if mailbox_ids is not None else None,
        )
        return access_rows(user_mailbox_access(acting_user=user, user_id=target))

    @strawberry.mutation
    def grant_permission(
        self, info: Info, practice_id: strawberry.ID, user_id: strawberry.ID, permission: PracticePermission
    ) -> MembershipType:
        return actions.grant_permission(
            acting_user=info.context.require_user(),
            practice_id=decode_id(practice_id, "Practice"),
            user_id=decode_id(user_id, "User"),
            permission=permission.value,
        )

    @strawberry.mutation
    def revoke_permission(
        self, info: Info, practice_id: strawberry.ID, user_id: strawberry.ID, permission: PracticePermission
    ) -> MembershipType:
        return actions.revoke_permission(
            acting_user=info.context.require_user(),
            practice_id=decode_id(practice_id, "Practice"),
            user_id=decode_id(user_id, "User"),
            permission=permission.value,
        )

    @strawberry.mutation(description="Advanced settings: free-form key → value (`T`/`F` for switches).")
    def set_practice_setting(self, info: Info, practice_id: strawberry.ID, key: str, value: str) -> PracticeSettingType:
        setting = actions.set_practice_setting(
            acting_user=info.context.require_user(),
            practice_id=decode_id(practice_id, "Practice"),
            key=key,
            value=value,
        )
        return PracticeSettingType(key=setting.key, value=setting.value)

    @strawberry.mutation(description="Returns the existing conversation of this mailbox and patient, or starts it.")
    def start_conversation(
        self,
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
    def archive_conversation(self, info: Info, conversation_id: strawberry.ID) -> ConversationType:
        conversation = actions.archive_conversation(
            acting_user=info.context.require_user(), conversation_id=decode_id(conversation_id, "Conversation")
        )
        return _conversation(info, conversation)

    @strawberry.mutation
    def unarchive_conversation(self, info: Info, conversation_id: strawberry.ID) -> ConversationType:
        conversation = actions.unarchive_conversation(
            acting_user=info.context.require_user(), conversation_id=decode_id(conversation_id, "Conversation")
        )
        return _conversation(info, conversation)

    @strawberry.mutation
    def mark_conversation_read(
        self, info: Info, conversation_id: strawberry.ID, via: AccessSource | None = AccessSource.MAILBOX
    ) -> ConversationType:
        conversation = actions.mark_conversation_read(
            acting_user=info.context.require_user(),
            conversation_id=decode_id(conversation_id, "Conversation"),
            via=to_access_source(via),
        )
        return _conversation(info, conversation, to_access_source(via))

    @strawberry.mutation
    def send_message(
        self,
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
    def retract_message(self, info: Info, message_id: strawberry.ID, reason: str) -> MessageType:
        message = actions.retract_message(
            acting_user=info.context.require_user(), message_id=decode_id(message_id, "Message"), reason=reason
        )
        return _message(info, message)

    @strawberry.mutation(description="Portal: a patient writes to one of the practice's active mailboxes.")
    def send_portal_message(
        self,
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

    @strawberry.mutation(description="Portal: turns new-message notices by email on or off.")
    def set_portal_notifications(self, info: Info, email: bool) -> PortalNotifications:
        patient = actions.set_portal_notifications(acting_patient=info.context.require_patient(), email=email)
        return PortalNotifications.of(patient)

    @strawberry.mutation(
        description="A staff-only note in the thread (direction INTERNAL_NOTE). The patient never sees it; it does "
        "not reactivate an archived conversation, answer a waiting patient or count as unread."
    )
    def add_internal_note(
        self,
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
        self,
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
        self, info: Info, conversation_id: strawberry.ID, priority: ConversationPriority
    ) -> ConversationType:
        conversation = actions.set_conversation_priority(
            acting_user=info.context.require_user(),
            conversation_id=decode_id(conversation_id, "Conversation"),
            priority=models.ConversationPriority(priority).value,
        )
        return _conversation(info, conversation)

    @strawberry.mutation(description="Mailbox admins: a new quick reply for the practice's staff.")
    def create_quick_reply(self, info: Info, practice_id: strawberry.ID, title: str, body: str) -> QuickReplyType:
        fresh(info)
        return actions.create_quick_reply(
            acting_user=info.context.require_user(),
            practice_id=decode_id(practice_id, "Practice"),
            title=title,
            body=body,
        )

    @strawberry.mutation(description="Mailbox admins: change a quick reply's title and text.")
    def update_quick_reply(self, info: Info, quick_reply_id: strawberry.ID, title: str, body: str) -> QuickReplyType:
        fresh(info)
        return actions.update_quick_reply(
            acting_user=info.context.require_user(),
            quick_reply_id=decode_id(quick_reply_id, "QuickReply"),
            title=title,
            body=body,
        )

    @strawberry.mutation(description="Mailbox admins: delete a quick reply; returns its id.")
    def delete_quick_reply(self, info: Info, quick_reply_id: strawberry.ID) -> strawberry.ID:
        fresh(info)
        actions.delete_quick_reply(
            acting_user=info.context.require_user(), quick_reply_id=decode_id(quick_reply_id, "QuickReply")
        )
        return quick_reply_id
