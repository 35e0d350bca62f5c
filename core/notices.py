"""New-message notices by email (SPEC §6 "Reaching the patient"), sent by `manage.py notify_worker`.

The event log is the outbox. The worker reads each practice's log from its own stored position
(`NoticeCursor`) and, in the same transaction that moves the position, writes one `EmailNotice` per staff
message: PENDING, or SKIPPED with the reason (cooldown, no address, opted out, automatic, withdrawn). A killed
worker therefore starts again exactly where its last transaction ended, and the unique message column makes a
second notice for one message impossible.

Delivery is a second step: a PENDING notice is claimed (SENDING, `claimed_at`), handed to the mail server, then
marked SENT. A refusal or an unreachable server puts it back to PENDING with a doubling delay. A notice left
SENDING by a worker that died mid-send is taken up again after NOTIFY_CLAIM_TIMEOUT_SECONDS: the server had not
accepted it unless the worker died in the instant between the server's acceptance and the SENT commit; for that
instant every notice carries a fixed Message-ID (`<notice-ID@…>`) by which mail systems drop a repeat.

A notice carries no PHI: not the text, not the mailbox, not the patient's name — only the practice's name and
the portal link.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core import mail
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from core.models import (
    EmailNotice,
    Event,
    EventKind,
    Message,
    MessageDirection,
    NoticeCursor,
    NoticeStatus,
    Patient,
    Practice,
)

log = logging.getLogger(__name__)

COUNTED = (NoticeStatus.PENDING, NoticeStatus.SENDING, NoticeStatus.SENT)
READ_BATCH = 500
SEND_BATCH = 100


@dataclass
class Pass:
    """What one pass of the worker did."""

    read: int = 0
    queued: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0


def _config(name: str):
    return settings.MAILBOX[name]


def subject_for(practice_name: str) -> str:
    # One line whatever the directory holds: a line break in a header would be refused by the mail library.
    return f"You have a new secure message from {' '.join(practice_name.split())}"


def body_for(practice_name: str) -> str:
    return (
        f"{subject_for(practice_name)}.\n\n"
        f"Sign in to the patient portal to read it:\n{_config('NOTIFY_PORTAL_URL')}\n\n"
        "For your privacy this email does not contain the message.\n"
        "You can turn these emails off in the portal.\n"
    )


def message_id_for(notice: EmailNotice) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "localhost"
    return f"<notice-{notice.pk}@{domain}>"


# ---- reading the log ---------------------------------------------------------------------------------------


def read_log(*, limit: int = READ_BATCH) -> Pass:
    """Turns every new staff message of every practice's log into a notice row; returns the counts."""
    result = Pass()
    positions = dict(NoticeCursor.objects.values_list("practice_id", "last_event_id"))
    for practice_id in Practice.objects.order_by("pk").values_list("pk", flat=True):
        # One index probe per quiet practice, no transaction or lock.
        if not Event.objects.filter(practice_id=practice_id, pk__gt=positions.get(practice_id, 0)).exists():
            continue
        while True:
            read = _read_practice(practice_id, limit, result)
            if read < limit:
                break
    return result


def _read_practice(practice_id: int, limit: int, result: Pass) -> int:
    with transaction.atomic():
        cursor, _ = NoticeCursor.objects.select_for_update().get_or_create(practice_id=practice_id)
        events = list(
            Event.objects.filter(practice_id=practice_id, pk__gt=cursor.last_event_id)
            .order_by("pk")
            .values_list("pk", "kind", "message_id")[:limit]
        )
        if not events:
            return 0
        message_ids = [message_id for _, kind, message_id in events if kind == EventKind.MESSAGE_ADDED and message_id]
        _queue_notices(message_ids, result)
        cursor.last_event_id = events[-1][0]
        cursor.save(update_fields=["last_event_id", "updated_at"])
        result.read += len(events)
        return len(events)


def _queue_notices(message_ids: list[int], result: Pass) -> None:
    messages = list(
        Message.objects.filter(pk__in=message_ids, direction=MessageDirection.TO_PATIENT)
        .exclude(email_notice__isnull=False)
        .select_related("conversation__patient")
        .order_by("pk")
    )
    if not messages:
        return
    cooldown = dt.timedelta(minutes=_config("NOTIFY_COOLDOWN_MINUTES"))
    last_counted = dict(
        EmailNotice.objects.filter(conversation_id__in={m.conversation_id for m in messages}, status__in=COUNTED)
        .values("conversation_id")
        .annotate(at=Max("message_sent_at"))
        .values_list("conversation_id", "at")
    )
    rows = []
    stale_before = timezone.now() - dt.timedelta(hours=_config("NOTIFY_MAX_AGE_HOURS"))
    for message in messages:
        # A worker first started on an old log does not mail about last month's messages.
        reason = _skip_reason(message, message.conversation.patient)
        if not reason and message.sent_at < stale_before:
            reason = "STALE"
        previous = last_counted.get(message.conversation_id)
        if not reason and previous is not None and message.sent_at - previous < cooldown:
            reason = "COOLDOWN"
        if not reason:
            last_counted[message.conversation_id] = message.sent_at
        rows.append(
            EmailNotice(
                practice_id=message.conversation.practice_id,
                message=message,
                conversation_id=message.conversation_id,
                patient_id=message.conversation.patient_id,
                message_sent_at=message.sent_at,
                status=NoticeStatus.SKIPPED if reason else NoticeStatus.PENDING,
                skip_reason=reason,
                next_attempt_at=None if reason else timezone.now(),
            )
        )
        if reason:
            result.skipped[reason] = result.skipped.get(reason, 0) + 1
        else:
            result.queued += 1
    EmailNotice.objects.bulk_create(rows)


def _skip_reason(message: Message, patient: Patient) -> str:
    if message.is_automatic:
        return "AUTOMATIC"
    if message.retracted_at is not None:
        return "WITHDRAWN"
    if not patient.email:
        return "NO_EMAIL"
    if not patient.email_notices:
        return "OPTED_OUT"
    return ""


# ---- sending -----------------------------------------------------------------------------------------------


def reclaim_abandoned() -> int:
    """Notices a stopped worker left SENDING longer than the claim timeout go back to PENDING."""
    timeout = dt.timedelta(seconds=_config("NOTIFY_CLAIM_TIMEOUT_SECONDS"))
    return EmailNotice.objects.filter(status=NoticeStatus.SENDING, claimed_at__lt=timezone.now() - timeout).update(
        status=NoticeStatus.PENDING, next_attempt_at=timezone.now()
    )


def send_due(*, limit: int = SEND_BATCH, result: Pass | None = None) -> Pass:
    """Claims up to `limit` due notices in one transaction, then sends them over one mail connection, each marked
    SENT in its own commit right after the server accepted it."""
    result = result or Pass()
    claimed = _claim_due(limit)
    if not claimed:
        return result
    connection = mail.get_connection(fail_silently=False)
    try:
        for notice in claimed:
            if _send_one(notice, connection):
                result.sent += 1
            else:
                result.failed += 1
                connection.close()  # a broken session is not reused; the next send opens a new one
    finally:
        connection.close()
    return result


def _claim_due(limit: int) -> list[EmailNotice]:
    """Takes due notices for this worker (SENDING): another worker skips them (PostgreSQL: SKIP LOCKED; SQLite
    serializes writers). The patient's choice is checked again: opting out stops a notice not yet sent."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            EmailNotice.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=NoticeStatus.PENDING, next_attempt_at__lte=now)
            .select_related("patient", "practice", "message")
            .order_by("next_attempt_at", "pk")[:limit]
        )
        claimed, skipped = [], {}
        for notice in due:
            reason = _skip_reason(notice.message, notice.patient)
            if reason:
                skipped.setdefault(reason, []).append(notice.pk)
            else:
                claimed.append(notice)
        for reason, ids in skipped.items():
            EmailNotice.objects.filter(pk__in=ids).update(status=NoticeStatus.SKIPPED, skip_reason=reason)
        if claimed:
            EmailNotice.objects.filter(pk__in=[n.pk for n in claimed]).update(
                status=NoticeStatus.SENDING, claimed_at=now
            )
    return claimed


def _send_one(notice: EmailNotice, connection) -> bool:
    name = notice.practice.name
    email = mail.EmailMessage(
        subject=subject_for(name),
        body=body_for(name),
        to=[notice.patient.email],
        connection=connection,
        headers={"Message-ID": message_id_for(notice)},
    )
    try:
        email.send()
    except Exception as error:  # the mail server refused or is unreachable: later, with a longer wait
        delay = min(_config("NOTIFY_RETRY_SECONDS") * 2**notice.attempts, _config("NOTIFY_RETRY_MAX_SECONDS"))
        EmailNotice.objects.filter(pk=notice.pk).update(
            status=NoticeStatus.PENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=timezone.now() + dt.timedelta(seconds=delay),
            last_error=f"{type(error).__name__}: {error}"[:500],
        )
        log.warning("notice %s: mail server failed (%s); retry in %.1f s", notice.pk, type(error).__name__, delay)
        return False
    EmailNotice.objects.filter(pk=notice.pk).update(
        status=NoticeStatus.SENT, sent_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
    )
    return True


def run_pass() -> Pass:
    """One round of the worker: read the logs, then send what is due."""
    result = read_log()
    while True:
        before = result.sent + result.failed
        send_due(result=result)
        if result.sent + result.failed - before == 0:
            return result
