"""Mailboxes, subscriptions and threads of the demo, created through `core.actions` so the audit trail and the
event log look like production. Each step runs only if its result does not exist yet, so loading twice adds nothing.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from core import actions, ratelimit
from core.demo import DEMO_DIRECTORY, DEMO_PRACTICE_KEYS
from core.directory import ImportSummary, apply_directory, read_directory
from core.models import Conversation, Mailbox, Patient, Practice, QuickReply, User

PATIENT = "patient"


@dataclass(frozen=True)
class DemoMailbox:
    name: str
    subscribers: tuple[str, ...]
    active: bool = True


@dataclass(frozen=True)
class Thread:
    mailbox: str
    account: str
    messages: tuple[tuple[str, str], ...]  # (sender username, or PATIENT; body)
    archived_by: str | None = None


@dataclass(frozen=True)
class DemoPractice:
    key: str
    mailbox_admin: str
    mailboxes: tuple[DemoMailbox, ...]
    threads: tuple[Thread, ...]


PRACTICES = (
    DemoPractice(
        key="north",
        mailbox_admin="mia",
        mailboxes=(
            DemoMailbox("Billing", ("mia", "bella", "frank")),
            DemoMailbox("Scheduling", ("mia", "frank", "sofia")),
            DemoMailbox("Dr. Patel", ("mia", "drpatel")),
            DemoMailbox("Old Referrals", ("mia",), active=False),
        ),
        threads=(
            Thread(
                "Billing",
                "N-10001",
                (
                    (PATIENT, "Hello, I received a bill for my March visit that I think my insurance should cover."),
                    (
                        "bella",
                        "Hi María, I'm looking into it now. Could you send a photo of the front of your "
                        "insurance card?",
                    ),
                    (PATIENT, "Of course, I'll send it tonight. ¡Gracias!"),
                    (PATIENT, "Here is my insurance card."),
                    ("bella", "Thank you! Your corrected statement is attached; the balance is now $0."),
                ),
            ),
            Thread(
                "Scheduling",
                "N-10002",
                (
                    (PATIENT, "Could I move my appointment on Friday to sometime next week?"),
                    ("frank", "Certainly. Tuesday at 10:30 or Wednesday at 14:00 are free. Which suits you?"),
                    (PATIENT, "Tuesday at 10:30, please."),
                    ("frank", "Done: Tuesday 10:30 with Dr. Patel. See you then!"),
                ),
                archived_by="frank",
            ),
            Thread(
                "Dr. Patel",
                "N-10003",
                (
                    ("drpatel", "Hi Zoë, your lab results are back and everything looks normal."),
                    (PATIENT, "That's a relief. Thank you, Dr. Patel!"),
                ),
            ),
            Thread(
                "Old Referrals",
                "N-10004",
                (
                    (PATIENT, "Has my cardiology referral been sent?"),
                    ("mia", "Yes, it went to Dr. Lindqvist's office on Monday; they will call you."),
                ),
            ),
        ),
    ),
    DemoPractice(
        key="south",
        mailbox_admin="sofia",
        mailboxes=(DemoMailbox("Front Desk", ("sofia", "grace")),),
        threads=(
            Thread(
                "Front Desk",
                "S-10001",
                (
                    (PATIENT, "Do you have any appointments for a flu shot this week?"),
                    ("grace", "Hi Siobhán, yes: walk-ins are welcome Thursday from 9 to 12."),
                ),
            ),
        ),
    ),
)


def _users(usernames: set[str]) -> dict[str, User]:
    return {u.username: u for u in User.objects.filter(username__in=usernames)}


def _set_up_mailboxes(practice: Practice, spec: DemoPractice, users: dict[str, User]) -> dict[str, Mailbox]:
    admin = users[spec.mailbox_admin]
    mailboxes = {}
    for wanted in spec.mailboxes:
        mailbox = Mailbox.objects.filter(practice=practice, name__iexact=wanted.name).first()
        if mailbox is None:
            mailbox = actions.create_mailbox(acting_user=admin, practice_id=practice.pk, name=wanted.name)
            actions.set_mailbox_subscribers(
                acting_user=admin, mailbox_id=mailbox.pk, user_ids=[users[u].pk for u in wanted.subscribers]
            )
        mailboxes[wanted.name] = mailbox
    return mailboxes


def _demo_png(width: int = 160, height: int = 100) -> bytes:
    """A small card-like picture (blue band on white), built by hand so the demo needs no image library."""
    rows = b"".join(
        b"\x00" + b"".join(b"\x1f\x5f\xbf" if y < 28 else b"\xf4\xf6\xfa" for _ in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


_DEMO_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 144]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>"
    b"endobj\n4 0 obj<</Length 62>>stream\nBT /F1 16 Tf 24 96 Td (North Clinic statement: $0.00) Tj ET\n"
    b"endstream endobj\n5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)

# (account, message number) → the file that message carries.
DEMO_FILES = {
    ("N-10001", 4): ("insurance-card.png", "image/png", _demo_png),
    ("N-10001", 5): ("statement-march.pdf", "application/pdf", lambda: _DEMO_PDF),
}


def _files_for(account: str, number: int) -> list[SimpleUploadedFile]:
    spec = DEMO_FILES.get((account, number))
    if spec is None:
        return []
    name, content_type, build = spec
    return [SimpleUploadedFile(name, build(), content_type=content_type)]


def _write_thread(mailbox: Mailbox, patient: Patient, thread: Thread, users: dict[str, User]) -> None:
    for number, (sender, body) in enumerate(thread.messages, start=1):
        client_message_id = f"demo-{thread.account}-{number}"
        files = _files_for(thread.account, number)
        if sender == PATIENT:
            actions.send_patient_message(
                acting_patient=patient,
                mailbox_id=mailbox.pk,
                body=body,
                attachments=files,
                client_message_id=client_message_id,
            )
            continue
        conversation = actions.start_conversation(
            acting_user=users[sender], mailbox_id=mailbox.pk, patient_id=patient.pk
        )
        actions.send_staff_message(
            acting_user=users[sender],
            conversation_id=conversation.pk,
            body=body,
            attachments=files,
            client_message_id=client_message_id,
        )
    if thread.archived_by:
        conversation = Conversation.objects.get(mailbox=mailbox, patient=patient)
        actions.archive_conversation(acting_user=users[thread.archived_by], conversation_id=conversation.pk)


def _set_up_practice(spec: DemoPractice) -> None:
    practice = Practice.objects.get(key=spec.key)
    usernames = {spec.mailbox_admin} | {u for m in spec.mailboxes for u in m.subscribers}
    usernames |= {sender for t in spec.threads for sender, _ in t.messages if sender != PATIENT}
    usernames |= {t.archived_by for t in spec.threads if t.archived_by}
    users = _users(usernames)
    mailboxes = _set_up_mailboxes(practice, spec, users)
    for thread in spec.threads:
        mailbox = mailboxes[thread.mailbox]
        patient = Patient.objects.get(practice=practice, account_number=thread.account)
        if not Conversation.objects.filter(mailbox=mailbox, patient=patient).exists():
            _write_thread(mailbox, patient, thread, users)
    for wanted in spec.mailboxes:
        if not wanted.active and mailboxes[wanted.name].is_active:
            actions.deactivate_mailbox(acting_user=users[spec.mailbox_admin], mailbox_id=mailboxes[wanted.name].pk)
    for title, body in QUICK_REPLIES:
        if not QuickReply.objects.filter(practice=practice, title__iexact=title).exists():
            actions.create_quick_reply(
                acting_user=users[spec.mailbox_admin], practice_id=practice.pk, title=title, body=body
            )


# Every demo practice starts with these in Config › Quick Replies.
QUICK_REPLIES = (
    (
        "Received, we are on it",
        "Thank you for your message. We received it and will get back to you within one business day.",
    ),
    ("Office hours", "Our office is open Monday to Friday, 8 am to 5 pm. For an emergency, call 911."),
    ("Payment plan", "We can split your balance into monthly payments. Reply YES and we will set it up for you."),
)


def demo_is_loaded() -> bool:
    """The demo loads in one transaction, so its practices are either all there or none is."""
    return Practice.objects.filter(key__in=DEMO_PRACTICE_KEYS).count() == len(DEMO_PRACTICE_KEYS)


def load_demo() -> ImportSummary:
    """Imports the demo directory and sets up its mailboxes and threads, all in one transaction."""
    practices = read_directory(DEMO_DIRECTORY)
    with transaction.atomic(), ratelimit.exempt():  # one person writes many threads here
        summary = apply_directory(practices, source=DEMO_DIRECTORY.name)
        for spec in PRACTICES:
            _set_up_practice(spec)
    return summary
