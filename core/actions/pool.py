"""Working the pool: internal notes, assignment (claim, assign, unassign) and priority of conversations."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from core import attachments as attachment_store
from core import audit
from core.actions._common import lock_conversation
from core.actions.conversations import append_staff_entry, clean_staff_entry
from core.errors import DomainError, ErrorCode
from core.events import emit
from core.models import (
    AccessSource,
    AssignmentChange,
    AuditAction,
    Conversation,
    ConversationPriority,
    EventKind,
    MailboxSubscription,
    Membership,
    Message,
    MessageDirection,
    User,
)
from core.text import require_storable_text, strip_invisible
from permissions import require_conversation_access

REASON_MAX = 500


def add_internal_note(
    *,
    acting_user: User,
    conversation_id: int,
    body: str | None,
    attachments: Sequence = (),
    client_message_id: str | None = None,
    via: AccessSource | str = AccessSource.MAILBOX,
) -> Message:
    """A staff-only entry in the thread. It reactivates nothing, answers no one and is unread for no one."""
    via, client_message_id, body = clean_staff_entry(acting_user, via, client_message_id, body, attachments)
    uploads = attachment_store.store_uploads(attachments)
    try:
        with transaction.atomic():
            conversation = lock_conversation(conversation_id)
            require_conversation_access(acting_user, conversation, via)
            note = append_staff_entry(
                conversation,
                acting_user,
                direction=MessageDirection.INTERNAL_NOTE,
                operation="addInternalNote",
                body=body,
                client_message_id=client_message_id,
                uploads=uploads,
                via=via,
            )
    except BaseException:
        attachment_store.discard(uploads)
        raise
    return note


def clean_reason(reason: str | None) -> str:
    require_storable_text(reason, "reason")
    cleaned = " ".join(strip_invisible(unicodedata.normalize("NFC", reason or "")).split())
    if len(cleaned) > REASON_MAX:
        raise DomainError(ErrorCode.VALIDATION_ERROR, f"A reason is at most {REASON_MAX} characters.", field="reason")
    return cleaned


def _assignable(conversation: Conversation, user_id: int) -> User:
    """An active staff member of the conversation's practice, subscribed to its mailbox. One message for every
    refusal: another practice's user and an unknown id must not be told apart."""
    user = (
        User.objects.filter(pk=user_id, is_active=True)
        .filter(
            pk__in=Membership.objects.filter(practice_id=conversation.practice_id).values("user_id"),
        )
        .filter(pk__in=MailboxSubscription.objects.filter(mailbox_id=conversation.mailbox_id).values("user_id"))
        .first()
    )
    if user is None:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"Assign the conversation to an active staff member subscribed to '{conversation.mailbox.name}'.",
            field="userId",
        )
    return user


def assign_conversation(
    *, acting_user: User, conversation_id: int, user_id: int | None, reason: str | None = None
) -> Conversation:
    """Claim (yourself), assign, reassign or unassign (`user_id` None). Any subscriber of the mailbox may."""
    reason = clean_reason(reason)
    with transaction.atomic():
        conversation = lock_conversation(conversation_id)
        require_conversation_access(acting_user, conversation, AccessSource.MAILBOX)
        assignee = _assignable(conversation, user_id) if user_id is not None else None
        previous_id = conversation.assignee_id
        if previous_id == (assignee.pk if assignee else None):
            return conversation  # already so: nothing changes, nothing to record
        now = timezone.now()
        conversation.assignee = assignee
        conversation.save(update_fields=["assignee"])
        change = AssignmentChange.objects.create(
            conversation=conversation,
            assignee=assignee,
            previous_assignee_id=previous_id,
            changed_by=acting_user,
            reason=reason,
            at=now,
        )
        detail = {
            "assignee_id": assignee.pk if assignee else None,
            "previous_assignee_id": previous_id,
            "claim": assignee is not None and assignee.pk == acting_user.pk,
            "reason": reason,
            "change_id": change.pk,
        }
        _changed(conversation, acting_user, EventKind.CONVERSATION_ASSIGNED, "assignConversation", detail)
    return conversation


def set_conversation_priority(*, acting_user: User, conversation_id: int, priority: str) -> Conversation:
    if priority not in ConversationPriority.values:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "priority must be NORMAL or URGENT.", field="priority")
    with transaction.atomic():
        conversation = lock_conversation(conversation_id)
        require_conversation_access(acting_user, conversation, AccessSource.MAILBOX)
        if conversation.priority == priority:
            return conversation
        previous, conversation.priority = conversation.priority, priority
        conversation.save(update_fields=["priority"])
        detail = {"priority": priority, "previous": previous}
        _changed(conversation, acting_user, EventKind.CONVERSATION_PRIORITY_CHANGED, "setConversationPriority", detail)
    return conversation


def _changed(conversation: Conversation, acting_user: User, kind: EventKind, operation: str, detail: dict) -> None:
    """A staff change of the conversation's pool state: its event (with `detail`) and its audit row."""
    emit(
        kind,
        practice_id=conversation.practice_id,
        mailbox_id=conversation.mailbox_id,
        conversation_id=conversation.pk,
        data=detail,
    )
    audit.record(
        operation=operation,
        action=AuditAction.UPDATE,
        practice=conversation.practice_id,
        actor_user=acting_user,
        target=conversation,
        patient=conversation.patient_id,
        via=AccessSource.MAILBOX,
        detail=detail,
    )
