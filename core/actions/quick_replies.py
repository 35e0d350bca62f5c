"""Quick replies: a practice's canned texts. Mailbox admins manage them; every staff member inserts them."""

from __future__ import annotations

import unicodedata

from django.db import IntegrityError, transaction

from core import audit
from core.actions._common import clean_body
from core.errors import DomainError, ErrorCode, not_found
from core.events import emit
from core.models import AccessSource, AuditAction, EventKind, QuickReply, User
from core.text import require_storable_text, without_format_characters
from permissions import require_mailbox_admin

TITLE_MAX = 100


def clean_title(title: str | None) -> str:
    require_storable_text(title, "title")
    cleaned = " ".join(without_format_characters(unicodedata.normalize("NFC", title or "")).split())
    if not cleaned:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Give the quick reply a title.", field="title")
    if len(cleaned) > TITLE_MAX:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"Quick reply titles are at most {TITLE_MAX} characters.", field="title"
        )
    return cleaned


def _clean_text(body: str | None) -> str:
    """The text goes into a message: the message rules (1 to 20,000 characters after trimming)."""
    return clean_body(body, has_attachments=False)


def _duplicate(title: str) -> DomainError:
    return DomainError(
        ErrorCode.DUPLICATE_NAME,
        f"A quick reply titled '{title}' already exists in this practice; choose another title.",
        field="title",
    )


def _changed(acting_user: User, reply: QuickReply, operation: str, action: AuditAction, **detail) -> None:
    audit.record(
        operation=operation,
        action=action,
        practice=reply.practice_id,
        actor_user=acting_user,
        target=reply,
        via=AccessSource.ADMIN,
        detail=detail,
    )
    emit(EventKind.QUICK_REPLIES_CHANGED, practice_id=reply.practice_id, data={"quick_reply_id": reply.pk})


def _lock(quick_reply_id: int) -> QuickReply:
    reply = QuickReply.objects.select_for_update().filter(pk=quick_reply_id).first()
    if reply is None:
        raise not_found("quick reply")
    return reply


def create_quick_reply(*, acting_user: User, practice_id: int, title: str, body: str) -> QuickReply:
    require_mailbox_admin(acting_user, practice_id)
    title, body = clean_title(title), _clean_text(body)
    try:
        with transaction.atomic():
            if QuickReply.objects.filter(practice_id=practice_id, title__iexact=title).exists():
                raise _duplicate(title)
            reply = QuickReply.objects.create(practice_id=practice_id, title=title, body=body)
            _changed(acting_user, reply, "createQuickReply", AuditAction.CREATE, title=title)
    except IntegrityError as exc:  # a concurrent create with the same title won
        raise _duplicate(title) from exc
    return reply


def update_quick_reply(*, acting_user: User, quick_reply_id: int, title: str, body: str) -> QuickReply:
    title, body = clean_title(title), _clean_text(body)
    try:
        with transaction.atomic():
            reply = _lock(quick_reply_id)
            require_mailbox_admin(acting_user, reply.practice_id)
            clash = QuickReply.objects.filter(practice_id=reply.practice_id, title__iexact=title).exclude(pk=reply.pk)
            if clash.exists():
                raise _duplicate(title)
            old_title, reply.title, reply.body = reply.title, title, body
            reply.save(update_fields=["title", "body", "updated_at"])
            _changed(acting_user, reply, "updateQuickReply", AuditAction.UPDATE, old_title=old_title, title=title)
    except IntegrityError as exc:
        raise _duplicate(title) from exc
    return reply


def delete_quick_reply(*, acting_user: User, quick_reply_id: int) -> None:
    with transaction.atomic():
        reply = _lock(quick_reply_id)
        require_mailbox_admin(acting_user, reply.practice_id)
        _changed(acting_user, reply, "deleteQuickReply", AuditAction.DELETE, title=reply.title)
        reply.delete()
