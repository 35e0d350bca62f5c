"""Helpers shared by the actions: validated input, locked loads."""

from __future__ import annotations

import unicodedata

from django.conf import settings

from core.errors import DomainError, ErrorCode, not_found
from core.models import Conversation, Mailbox
from core.text import require_storable_text, strip_invisible, without_format_characters

MAILBOX_NAME_MAX = 100


def clean_mailbox_name(name: str | None) -> str:
    require_storable_text(name, "name")
    # A label has no use for invisible characters: "Scheduling\u200b" would look like a second "Scheduling".
    # Dropping them (and composing accents, NFC) lets the case-insensitive unique constraint see the clash.
    visible = without_format_characters(unicodedata.normalize("NFC", name or ""))
    cleaned = " ".join(visible.split())
    if not cleaned:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Give the mailbox a name.", field="name")
    if len(cleaned) > MAILBOX_NAME_MAX:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"Mailbox names are at most {MAILBOX_NAME_MAX} characters.", field="name"
        )
    return cleaned


def clean_body(body: str | None, *, has_attachments: bool) -> str:
    require_storable_text(body, "body")
    # Interior format characters stay (emoji sequences need the zero-width joiner); at the ends they only hide
    # that a message is blank.
    cleaned = strip_invisible(unicodedata.normalize("NFC", body or ""))
    limit = settings.MAILBOX["MESSAGE_MAX_CHARS"]
    if len(cleaned) > limit:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"Messages are at most {limit:,} characters; split it in two.", field="body"
        )
    if not cleaned and not has_attachments:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Write a message or attach a file.", field="body")
    return cleaned


def clean_client_message_id(value: str | None) -> str | None:
    if value is None:
        return None
    require_storable_text(value, "clientMessageId")
    value = value.strip()
    if not value:
        return None
    if len(value) > 100:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, "clientMessageId is at most 100 characters.", field="clientMessageId"
        )
    return value


def lock_mailbox(mailbox_id: int) -> Mailbox:
    """Loads the mailbox with a row lock (PostgreSQL); on SQLite the IMMEDIATE transaction serializes writers."""
    mailbox = Mailbox.objects.select_for_update().filter(pk=mailbox_id).first()
    if mailbox is None:
        raise not_found("mailbox")
    return mailbox


def lock_conversation(conversation_id: int) -> Conversation:
    conversation = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("mailbox", "patient")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:
        raise not_found("conversation")
    return conversation
