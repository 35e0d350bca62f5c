"""Reading an attachment's file: the message's access rules, an audit row per attempt, then the open file."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.core.files import File

from core import audit
from core.attachments import open_stored
from core.errors import DomainError, not_found
from core.models import AccessSource, Attachment, AuditAction, Patient, User
from permissions import require_attachment_access

log = logging.getLogger(__name__)

OPERATION = "downloadAttachment"
_MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class AttachmentDownload:
    attachment: Attachment
    file: File  # open; the caller closes it (a FileResponse does when the response is closed)


def open_attachment(
    *,
    attachment_id: int,
    acting_user: User | None = None,
    acting_patient: Patient | None = None,
    via: AccessSource | str | None = None,
) -> AttachmentDownload:
    """Refusals are audited too when someone is signed in: probing other records leaves a trace."""
    attachment = None
    if 0 < attachment_id <= _MAX_ID:  # an id past the column's range is simply unknown, not a database error
        attachment = (
            Attachment.objects.select_related("message__conversation__mailbox").filter(pk=attachment_id).first()
        )
    try:
        source = require_attachment_access(attachment, user=acting_user, patient=acting_patient, via=via)
    except DomainError as refusal:
        _audit_refusal(attachment_id, attachment, acting_user, acting_patient, via, refusal.code)
        raise
    conversation = attachment.message.conversation
    try:
        file = open_stored(attachment)
    except OSError:
        log.error("attachment %s: stored file %s is missing", attachment.pk, attachment.storage_name)
        _audit_refusal(attachment_id, attachment, acting_user, acting_patient, source, "FILE_MISSING")
        raise not_found("attachment")
    audit.record(
        operation=OPERATION,
        action=AuditAction.READ,
        practice=attachment.practice_id,
        actor_user=acting_user,
        actor_patient=acting_patient,
        target=attachment,
        patient=conversation.patient_id,
        via=source,
        detail={"message_id": attachment.message_id, "conversation_id": conversation.pk},
    )
    return AttachmentDownload(attachment=attachment, file=file)


def _audit_refusal(
    attachment_id: int,
    attachment: Attachment | None,
    user: User | None,
    patient: Patient | None,
    via: AccessSource | str | None,
    outcome: str,
) -> None:
    if user is None and patient is None:
        return
    # The record's own practice sees attempts on it; an unknown id belongs to no practice.
    known = attachment is not None and attachment.message_id is not None
    audit.record(
        operation=OPERATION,
        action=AuditAction.READ,
        practice=attachment.practice_id if known else None,
        actor_user=user,
        actor_patient=patient,
        target=attachment if known else None,
        patient=attachment.message.conversation.patient_id if known else None,
        via=AccessSource.PORTAL if patient is not None else (via if via in AccessSource.values else ""),
        outcome=str(outcome),
        detail={"attachment_id": attachment_id},
    )
