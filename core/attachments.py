"""Attachment storage used by the send actions.

Contract: `store_uploads(files)` validates every file (count, size, sniffed type) and stores it through
Django's storage API *before* the database transaction, returning `StoredUpload`s; `attach(uploads, message)`
creates the rows inside the transaction; `discard(uploads)` removes stored files when the send is refused
or rolled back. Files whose row never committed are found by the cleanup command (`cleanup_attachments`).

Stored names are generated (`YYYY/MM/<uuid4 hex>`, no extension): nothing the client sends reaches a path.
Files are read in chunks, never whole, so a 25 MiB upload costs one chunk of memory.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.utils import timezone

from core.errors import DomainError, ErrorCode
from core.filechecks import hostile_content
from core.filetypes import FileKind, TextChecker, clean_filename, display_filename, sniff
from core.models import Attachment, Message

log = logging.getLogger(__name__)

STORAGE_NAME_PATTERN = r"^\d{4}/\d{2}/[0-9a-f]{32}$"


@dataclass(frozen=True)
class StoredUpload:
    storage_name: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class _CheckedUpload:
    file: File
    filename: str
    kind: FileKind
    size: int
    sha256: str


def attachment_storage() -> Storage:
    """Looked up on every use, so a changed STORAGES setting (tests, deployments) takes effect."""
    return storages["default"]


def _describe_bytes(count: int) -> str:
    mib = 1024 * 1024
    return f"{count // mib} MiB" if count % mib == 0 else f"{count:,} bytes"


def _check_upload(upload: File, max_bytes: int) -> _CheckedUpload:
    if not (hasattr(upload, "read") and hasattr(upload, "seek")):  # e.g. a string where a file was expected
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            "Attachments are files: send them with the GraphQL multipart request spec.",
            field="attachments",
        )
    raw_name = getattr(upload, "name", None)
    shown = clean_filename(raw_name)
    declared = getattr(upload, "size", None)
    if declared is not None and declared > max_bytes:
        raise _too_large(shown, max_bytes)
    upload.seek(0)
    if not upload.read(1):
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"'{shown}' is empty; attach a file with content.",
            field="attachments",
            filename=shown,
        )
    kind = sniff(upload)
    if kind is None:
        raise DomainError(
            ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED,
            f"'{shown}' is not an allowed file type. Send PDF, PNG, JPEG, GIF, HEIC, plain text or "
            "Office documents (Word, Excel, PowerPoint).",
            field="attachments",
            filename=shown,
        )
    size, sha256 = _measure(upload, kind, max_bytes, shown)
    hostile = hostile_content(upload, kind)
    if hostile:
        raise DomainError(
            ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED,
            f"'{shown}' was refused: {hostile}. Send a plain copy (for example printed to a new PDF or image).",
            field="attachments",
            filename=shown,
        )
    return _CheckedUpload(file=upload, filename=display_filename(raw_name, kind), kind=kind, size=size, sha256=sha256)


def _too_large(shown: str, max_bytes: int) -> DomainError:
    return DomainError(
        ErrorCode.ATTACHMENT_TOO_LARGE,
        f"'{shown}' is larger than the {_describe_bytes(max_bytes)} limit per file; send a smaller file.",
        field="attachments",
        filename=shown,
        maxBytes=max_bytes,
    )


def _measure(upload: File, kind: FileKind, max_bytes: int, shown: str) -> tuple[int, str]:
    """The real size and SHA-256, in one streaming pass; text is checked to its last byte, not only its start."""
    digest = hashlib.sha256()
    size = 0
    text = TextChecker() if kind.is_text else None
    for chunk in upload.chunks():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(shown, max_bytes)
        digest.update(chunk)
        if text is not None and not text.feed(chunk):
            raise DomainError(
                ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED,
                f"'{shown}' starts as text but contains binary data; it is not an allowed file type.",
                field="attachments",
                filename=shown,
            )
    if text is not None and not text.finish():
        raise DomainError(
            ErrorCode.ATTACHMENT_TYPE_NOT_ALLOWED,
            f"'{shown}' is not valid UTF-8 text.",
            field="attachments",
            filename=shown,
        )
    return size, digest.hexdigest()


def _new_storage_name() -> str:
    return f"{timezone.now():%Y/%m}/{uuid.uuid4().hex}"


def store_uploads(files: Sequence[File] | None) -> list[StoredUpload]:
    """Checks every file first, then stores them all; a refusal stores nothing."""
    files = list(files or ())
    if not files:
        return []
    limits = settings.MAILBOX
    per_message = limits["ATTACHMENTS_PER_MESSAGE"]
    if len(files) > per_message:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"At most {per_message} attachments per message; send the others in another message.",
            field="attachments",
        )
    checked = [_check_upload(upload, limits["ATTACHMENT_MAX_BYTES"]) for upload in files]
    storage = attachment_storage()
    stored: list[StoredUpload] = []
    try:
        for item in checked:
            name = storage.save(_new_storage_name(), item.file)
            stored.append(
                StoredUpload(
                    storage_name=name,
                    filename=item.filename,
                    content_type=item.kind.content_type,
                    size=item.size,
                    sha256=item.sha256,
                )
            )
    except BaseException:
        discard(stored)
        raise
    return stored


def attach(uploads: Sequence[StoredUpload], message: Message) -> None:
    """Inside the send's transaction: the rows commit with the message, or not at all."""
    if not uploads:
        return
    practice_id = message.conversation.practice_id
    Attachment.objects.bulk_create(
        Attachment(
            practice_id=practice_id,
            message=message,
            storage_name=upload.storage_name,
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            sha256=upload.sha256,
        )
        for upload in uploads
    )


def discard(uploads: Sequence[StoredUpload]) -> None:
    """Best effort: a file left behind is an orphan the cleanup command removes later."""
    storage = attachment_storage()
    for upload in uploads:
        try:
            storage.delete(upload.storage_name)
        except Exception:
            log.exception("could not remove stored attachment %s; cleanup_attachments will", upload.storage_name)


def open_stored(attachment: Attachment) -> File:
    return attachment_storage().open(attachment.storage_name, "rb")
