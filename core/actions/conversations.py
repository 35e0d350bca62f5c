"""Conversations and messages: start, send (staff and patient, the auto-reply), withdraw, archive, reactivate,
read."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import partial

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core import attachments as attachment_store
from core import audit, ratelimit, waiting
from core.actions._common import clean_body, clean_client_message_id, lock_conversation, lock_mailbox
from core.errors import DomainError, ErrorCode, not_found
from core.events import emit
from core.models import (
    AccessSource,
    AuditAction,
    Conversation,
    ConversationStatus,
    EventKind,
    Mailbox,
    Message,
    MessageDirection,
    Patient,
    ReadState,
    User,
)
from core.text import require_storable_text, strip_invisible
from permissions import (
    patient_of_practice,
    require_active_mailbox,
    require_conversation_access,
    require_message_retraction,
    require_patient_conversation,
    require_place,
    require_portal,
    staff_place,
)


def _get_or_create_conversation(mailbox: Mailbox, patient: Patient) -> tuple[Conversation, bool]:
    """Caller holds the mailbox lock, so the existence check and the insert cannot race."""
    existing = Conversation.objects.filter(mailbox=mailbox, patient=patient).first()
    if existing is not None:
        return existing, False
    now = timezone.now()
    conversation = Conversation.objects.create(
        practice_id=mailbox.practice_id, mailbox=mailbox, patient=patient, last_activity_at=now
    )
    emit(
        EventKind.CONVERSATION_STARTED,
        practice_id=mailbox.practice_id,
        mailbox_id=mailbox.pk,
        conversation_id=conversation.pk,
        patient_id=patient.pk,
    )
    return conversation, True


def start_conversation(
    *, acting_user: User, mailbox_id: int, patient_id: int, via: AccessSource | str = AccessSource.MAILBOX
) -> Conversation:
    """Returns the conversation of (mailbox, patient), creating it if needed."""
    via = staff_place(via)
    with transaction.atomic():
        mailbox = lock_mailbox(mailbox_id)
        require_place(acting_user, mailbox.practice_id, mailbox, via)
        require_active_mailbox(mailbox)
        patient = patient_of_practice(patient_id, mailbox.practice_id)
        conversation, created = _get_or_create_conversation(mailbox, patient)
        if created:
            audit.record(
                operation="startConversation",
                action=AuditAction.CREATE,
                practice=mailbox.practice_id,
                actor_user=acting_user,
                target=conversation,
                patient=patient,
                via=via,
            )
    return conversation


class _MailboxLockNeeded(Exception):
    """A staff send found the conversation archived: reactivating it writes the mailbox's counter, and the mailbox
    row must be locked before the conversation row (a patient's send locks them in that order), so start over."""


def _count_in_mailbox(conversation: Conversation, *, counted: bool) -> None:
    """Archiving takes a conversation's patient messages out of its mailbox's unread counts, reactivating puts
    them back. Caller holds the mailbox lock, then the conversation lock."""
    delta = conversation.patient_message_count if counted else -conversation.patient_message_count
    if delta:
        Mailbox.objects.filter(pk=conversation.mailbox_id).update(
            patient_message_count=F("patient_message_count") + delta
        )
    ReadState.objects.filter(conversation=conversation).update(conversation_active=counted)


def _lock_mailbox_then_conversation(conversation_id: int) -> Conversation:
    mailbox_id = Conversation.objects.filter(pk=conversation_id).values_list("mailbox_id", flat=True).first()
    if mailbox_id is not None:
        lock_mailbox(mailbox_id)
    return lock_conversation(conversation_id)


def _reactivate(conversation: Conversation, *, by_user: User | None) -> None:
    conversation.status = ConversationStatus.ACTIVE
    _count_in_mailbox(conversation, counted=True)
    emit(
        EventKind.CONVERSATION_REACTIVATED,
        practice_id=conversation.practice_id,
        mailbox_id=conversation.mailbox_id,
        conversation_id=conversation.pk,
        patient_id=conversation.patient_id,
        user_ids=[by_user.pk] if by_user else [],
    )


def _append_message(
    conversation: Conversation,
    *,
    direction: MessageDirection,
    body: str,
    client_message_id: str | None,
    sender_user: User | None = None,
    sender_patient: Patient | None = None,
    uploads: Sequence[attachment_store.StoredUpload] = (),
    automatic_from: Mailbox | None = None,
) -> Message:
    """Caller holds the conversation lock: the next sequence number is gap-free and unique. `automatic_from`: the
    mailbox's auto-reply (no staff sender; the mailbox's name signs it).

    A note takes the next place in the staff thread, but none in the patient's numbering, and is no activity the
    patient could see: it leaves last message time, order, unread counts, status and waiting time as they were."""
    now = timezone.now()
    note = direction == MessageDirection.INTERNAL_NOTE
    message = Message.objects.create(
        conversation=conversation,
        sequence=conversation.last_sequence + 1,
        portal_sequence=None if note else conversation.portal_last_sequence + 1,
        direction=direction,
        body=body,
        sent_at=now,
        sender_user=sender_user,
        sender_patient=sender_patient,
        client_message_id=client_message_id,
        is_automatic=automatic_from is not None,
        sender_label=automatic_from.name if automatic_from is not None else "",
    )
    attachment_store.attach(uploads, message)
    conversation.last_sequence = message.sequence
    if note:
        conversation.save(update_fields=["last_sequence"])
        emit(
            EventKind.NOTE_ADDED,
            practice_id=conversation.practice_id,
            mailbox_id=conversation.mailbox_id,
            conversation_id=conversation.pk,
            message_id=message.pk,
        )  # no patient id: the portal's log never holds it, and the patient's live group is not even woken
        return message
    conversation.portal_last_sequence = message.portal_sequence
    conversation.last_message_at = now
    conversation.last_activity_at = now
    if direction == MessageDirection.FROM_PATIENT:
        conversation.patient_message_count += 1
        if conversation.status == ConversationStatus.ACTIVE:  # an archived one is counted whole just below
            Mailbox.objects.filter(pk=conversation.mailbox_id).update(
                patient_message_count=F("patient_message_count") + 1
            )
    waiting.after_message(conversation, message)
    if conversation.status == ConversationStatus.ARCHIVED:
        _reactivate(conversation, by_user=sender_user)
    conversation.save(
        update_fields=[
            "last_sequence",
            "portal_last_sequence",
            "last_message_at",
            "last_activity_at",
            "status",
            "patient_message_count",
            "waiting_since",
        ]
    )
    emit(
        EventKind.MESSAGE_ADDED,
        practice_id=conversation.practice_id,
        mailbox_id=conversation.mailbox_id,
        conversation_id=conversation.pk,
        patient_id=conversation.patient_id,
        message_id=message.pk,
    )
    return message


def _mark_read(user: User, conversation: Conversation) -> bool:
    """Everything in the conversation so far is read by `user` (caller holds the conversation lock)."""
    state, _ = ReadState.objects.get_or_create(
        user=user,
        conversation=conversation,
        defaults={
            "mailbox_id": conversation.mailbox_id,
            "conversation_active": conversation.status == ConversationStatus.ACTIVE,
        },
    )
    if state.last_read_sequence >= conversation.last_sequence:
        return False
    state.last_read_sequence = conversation.last_sequence
    state.read_patient_count = conversation.patient_message_count
    state.save(update_fields=["last_read_sequence", "read_patient_count", "updated_at"])
    return True


def clean_staff_entry(
    acting_user: User, via: AccessSource | str, client_message_id: str | None, body: str | None, attachments
) -> tuple[AccessSource, str | None, str]:
    """A staff member's message or note, before anything is stored: the send rate limit, then its place, client
    id and body cleaned (a refusal names the field)."""
    ratelimit.hit(ratelimit.SENDS, f"user:{acting_user.pk}")
    return (
        staff_place(via),
        clean_client_message_id(client_message_id),
        clean_body(body, has_attachments=bool(attachments)),
    )


def send_staff_message(
    *,
    acting_user: User,
    conversation_id: int,
    body: str | None,
    attachments: Sequence = (),
    client_message_id: str | None = None,
    via: AccessSource | str = AccessSource.MAILBOX,
) -> Message:
    via, client_message_id, body = clean_staff_entry(acting_user, via, client_message_id, body, attachments)
    # Files are checked and stored before the transaction; a refusal below removes them again.
    uploads = attachment_store.store_uploads(attachments)
    try:
        send = partial(
            _send_staff_message, acting_user, conversation_id, body, client_message_id=client_message_id, via=via
        )
        try:
            return send(uploads=uploads, mailbox_locked=False)
        except _MailboxLockNeeded:
            return send(uploads=uploads, mailbox_locked=True)
    except BaseException:
        attachment_store.discard(uploads)
        raise


def _send_staff_message(
    acting_user: User,
    conversation_id: int,
    body: str,
    *,
    client_message_id: str | None,
    via: AccessSource,
    uploads: Sequence[attachment_store.StoredUpload],
    mailbox_locked: bool,
) -> Message:
    with transaction.atomic():
        if mailbox_locked:
            conversation = _lock_mailbox_then_conversation(conversation_id)
        else:
            conversation = lock_conversation(conversation_id)
        require_conversation_access(acting_user, conversation, via)
        if conversation.status == ConversationStatus.ARCHIVED and not mailbox_locked:
            raise _MailboxLockNeeded
        return append_staff_entry(
            conversation,
            acting_user,
            direction=MessageDirection.TO_PATIENT,
            operation="sendMessage",
            body=body,
            client_message_id=client_message_id,
            uploads=uploads,
            via=via,
        )


def append_staff_entry(
    conversation: Conversation,
    acting_user: User,
    *,
    direction: MessageDirection,
    operation: str,
    body: str,
    client_message_id: str | None,
    uploads: Sequence[attachment_store.StoredUpload],
    via: AccessSource,
) -> Message:
    """A staff member's message or note on the locked conversation they may open from `via`: the earlier one when
    `client_message_id` repeats (its uploads dropped), else appended, read by its author and audited."""
    if client_message_id:
        repeated = Message.objects.filter(
            conversation=conversation, sender_user=acting_user, client_message_id=client_message_id
        ).first()
        if repeated is not None:
            attachment_store.discard(uploads)
            return repeated
    require_active_mailbox(conversation.mailbox)
    message = _append_message(
        conversation,
        direction=direction,
        body=body,
        client_message_id=client_message_id,
        sender_user=acting_user,
        uploads=uploads,
    )
    _mark_read(acting_user, conversation)
    audit.record(
        operation=operation,
        action=AuditAction.CREATE,
        practice=conversation.practice_id,
        actor_user=acting_user,
        target=message,
        patient=conversation.patient_id,
        via=via,
        detail={"conversation_id": conversation.pk, "attachments": len(uploads)},
    )
    return message


def send_patient_message(
    *,
    acting_patient: Patient,
    mailbox_id: int,
    body: str | None,
    attachments: Sequence = (),
    client_message_id: str | None = None,
) -> Message:
    """A patient writes to one of the practice's active mailboxes (portal). Starts the thread if needed."""
    ratelimit.hit(ratelimit.SENDS, f"patient:{acting_patient.pk}")
    client_message_id = clean_client_message_id(client_message_id)
    body = clean_body(body, has_attachments=bool(attachments))
    uploads = attachment_store.store_uploads(attachments)
    try:
        with transaction.atomic():
            mailbox = lock_mailbox(mailbox_id)
            if mailbox.practice_id != acting_patient.practice_id:
                raise not_found("mailbox")
            require_portal(mailbox.practice_id)
            existing = Conversation.objects.filter(mailbox=mailbox, patient=acting_patient).first()
            if existing is not None and client_message_id:
                repeated = Message.objects.filter(
                    conversation=existing, sender_patient=acting_patient, client_message_id=client_message_id
                ).first()
                if repeated is not None:
                    attachment_store.discard(uploads)
                    return repeated
            require_active_mailbox(mailbox)
            conversation, created = _get_or_create_conversation(mailbox, acting_patient)
            conversation = lock_conversation(conversation.pk)
            reopened = created or conversation.status == ConversationStatus.ARCHIVED
            message = _append_message(
                conversation,
                direction=MessageDirection.FROM_PATIENT,
                body=body,
                client_message_id=client_message_id,
                sender_patient=acting_patient,
                uploads=uploads,
            )
            audit.record(
                operation="sendPortalMessage",
                action=AuditAction.CREATE,
                practice=conversation.practice_id,
                actor_patient=acting_patient,
                target=message,
                patient=acting_patient,
                via=AccessSource.PORTAL,
                detail={"conversation_id": conversation.pk, "attachments": len(uploads)},
            )
            if reopened:
                send_auto_reply(conversation, mailbox, answering=message)
    except BaseException:
        attachment_store.discard(uploads)
        raise
    return message


def send_auto_reply(conversation: Conversation, mailbox: Mailbox, *, answering: Message) -> Message | None:
    """The one place an automatic message is created (SPEC §6): the mailbox's auto-reply, once, when a patient's
    message opens a new conversation or reactivates an archived one. It is TO_PATIENT but no staff answer: it
    neither marks the patient as answered nor sends a notice email (core.notices skips automatic messages).
    Caller holds the mailbox and conversation locks."""
    if not mailbox.auto_reply:
        return None
    reply = _append_message(
        conversation,
        direction=MessageDirection.TO_PATIENT,
        body=mailbox.auto_reply,
        client_message_id=None,
        automatic_from=mailbox,
    )
    audit.record(
        operation="autoReply",
        action=AuditAction.CREATE,
        practice=conversation.practice_id,
        target=reply,
        patient=conversation.patient_id,
        via=AccessSource.PORTAL,
        detail={"conversation_id": conversation.pk, "answering_message_id": answering.pk},
    )
    return reply


RETRACT_REASON_MAX = 500


def clean_retract_reason(reason: str | None) -> str:
    require_storable_text(reason, "reason")
    cleaned = " ".join(strip_invisible(unicodedata.normalize("NFC", reason or "")).split())
    if not cleaned:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, "Say why the message is withdrawn (e.g. 'wrong patient').", field="reason"
        )
    if len(cleaned) > RETRACT_REASON_MAX:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"The reason is at most {RETRACT_REASON_MAX} characters.", field="reason"
        )
    return cleaned


def retract_message(*, acting_user: User, message_id: int, reason: str | None) -> Message:
    """Withdraws a message entered in error (SPEC §6): nothing is deleted, the patient sees only that the practice
    withdrew a message; staff keep seeing it, marked with who, when and why."""
    reason = clean_retract_reason(reason)
    with transaction.atomic():
        conversation_id = Message.objects.filter(pk=message_id).values_list("conversation_id", flat=True).first()
        if conversation_id is None:
            raise not_found("message")
        conversation = lock_conversation(conversation_id)
        message = Message.objects.select_for_update().get(pk=message_id)
        require_message_retraction(acting_user, message, conversation)
        if message.retracted_at is not None:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "This message is already withdrawn.")
        message.retracted_at = timezone.now()
        message.retracted_by = acting_user
        message.retract_reason = reason
        message.save(update_fields=["retracted_at", "retracted_by", "retract_reason"])
        # A withdrawn answer answered nothing: the patient waits again (or for the next answer) and its response
        # time leaves the stats.
        waiting.recompute(conversation)
        audit.record(
            operation="retractMessage",
            action=AuditAction.UPDATE,
            practice=conversation.practice_id,
            actor_user=acting_user,
            target=message,
            patient=conversation.patient_id,
            via=AccessSource.MAILBOX,
            detail={"conversation_id": conversation.pk, "reason": reason},
        )
        emit(
            EventKind.MESSAGE_RETRACTED,
            practice_id=conversation.practice_id,
            mailbox_id=conversation.mailbox_id,
            conversation_id=conversation.pk,
            patient_id=conversation.patient_id,
            message_id=message.pk,
        )
    return message


def _set_status(acting_user: User, conversation_id: int, status: ConversationStatus) -> Conversation:
    with transaction.atomic():
        conversation = _lock_mailbox_then_conversation(conversation_id)
        require_conversation_access(acting_user, conversation, AccessSource.MAILBOX)
        if conversation.status != status:
            if status == ConversationStatus.ACTIVE:
                _reactivate(conversation, by_user=acting_user)
            else:
                conversation.status = status
                _count_in_mailbox(conversation, counted=False)
                emit(
                    EventKind.CONVERSATION_ARCHIVED,
                    practice_id=conversation.practice_id,
                    mailbox_id=conversation.mailbox_id,
                    conversation_id=conversation.pk,
                    patient_id=conversation.patient_id,
                    user_ids=[acting_user.pk],
                )
            conversation.save(update_fields=["status"])
            audit.record(
                operation="unarchiveConversation" if status == ConversationStatus.ACTIVE else "archiveConversation",
                action=AuditAction.UPDATE,
                practice=conversation.practice_id,
                actor_user=acting_user,
                target=conversation,
                patient=conversation.patient_id,
                via=AccessSource.MAILBOX,
            )
    return conversation


def archive_conversation(*, acting_user: User, conversation_id: int) -> Conversation:
    return _set_status(acting_user, conversation_id, ConversationStatus.ARCHIVED)


def unarchive_conversation(*, acting_user: User, conversation_id: int) -> Conversation:
    return _set_status(acting_user, conversation_id, ConversationStatus.ACTIVE)


def mark_conversation_read(
    *, acting_user: User, conversation_id: int, via: AccessSource | str = AccessSource.MAILBOX
) -> Conversation:
    via = staff_place(via)
    with transaction.atomic():
        conversation = lock_conversation(conversation_id)
        require_conversation_access(acting_user, conversation, via)
        if _mark_read(acting_user, conversation):
            emit(
                EventKind.CONVERSATION_READ,
                practice_id=conversation.practice_id,
                mailbox_id=conversation.mailbox_id,
                conversation_id=conversation.pk,
                user_ids=[acting_user.pk],
            )
    return conversation


def check_patient_conversation(*, acting_patient: Patient, conversation_id: int) -> Conversation:
    conversation = Conversation.objects.select_related("mailbox").filter(pk=conversation_id).first()
    if conversation is None:
        raise not_found("conversation")
    require_patient_conversation(acting_patient, conversation)
    return conversation
