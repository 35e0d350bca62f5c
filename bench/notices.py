"""`python -m bench.notices`: 1,000 queued staff messages drained by one notice worker against an in-process SMTP
server (aiosmtpd); time per notice, against a floor measured in the same run: the same 1,000 mails sent by plain
`smtplib` over one connection to the same server.

Options: --messages N (1000), --database-url URL (default: a fresh SQLite file in a temporary directory; for
PostgreSQL give an empty database, e.g. postgres://postgres@127.0.0.1:5432/mailbox_bench_notices: `migrate` creates
the tables, each round adds a practice), --rounds N (3; best round reported).
"""

from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def queue_messages(count: int) -> None:
    """A practice with `count` patients (each with an address), one conversation and one staff message each."""
    import datetime as dt

    from django.conf import settings

    from core import actions
    from core.models import (
        PORTAL_SETTING,
        WORKBENCH_SETTING,
        EmailNotice,
        Mailbox,
        MailboxSubscription,
        Membership,
        Patient,
        Practice,
        PracticeSetting,
        User,
    )

    settings.MAILBOX = {**settings.MAILBOX, "SEND_RATE_LIMIT": (10**9, 60)}
    stamp = f"{time.time_ns()}"
    practice = Practice.objects.create(key=f"bench-{stamp}", name="Bench Clinic")
    for key in (WORKBENCH_SETTING, PORTAL_SETTING):
        PracticeSetting.objects.create(practice=practice, key=key, value="T")
    user = User.objects.create_user(username=f"bench-{stamp}", password="not-used-here-1")
    Membership.objects.create(user=user, practice=practice)
    mailbox = Mailbox.objects.create(practice=practice, name="Billing")
    MailboxSubscription.objects.create(mailbox=mailbox, user=user)
    Patient.objects.bulk_create(
        Patient(
            practice=practice,
            account_number=f"B-{i}",
            first_name="Pat",
            last_name=f"Bench{i}",
            search_name=f"pat bench{i}",
            search_account=f"b-{i}",
            date_of_birth=dt.date(1980, 1, 1),
            email=f"p{i}@example.org",
        )
        for i in range(count)
    )
    for patient in Patient.objects.filter(practice=practice).order_by("pk"):
        conversation = actions.start_conversation(acting_user=user, mailbox_id=mailbox.pk, patient_id=patient.pk)
        actions.send_staff_message(acting_user=user, conversation_id=conversation.pk, body="Results are in.")
    assert EmailNotice.objects.filter(practice=practice).count() == 0


def drain(expected: int, sink) -> tuple[float, float]:
    """Runs worker passes until `expected` mails arrived; returns (seconds reading the log, seconds in all)."""
    from core import notices

    started = time.perf_counter()
    notices.read_log()
    read = time.perf_counter() - started
    while len(sink.received) < expected:
        result = notices.run_pass()
        if not (result.sent or result.failed or result.read):
            raise RuntimeError(f"worker stalled at {len(sink.received)} of {expected}")
    return read, time.perf_counter() - started


def floor(port: int, count: int) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for i in range(count):
            mail = EmailMessage()
            mail["Subject"] = "You have a new secure message from Bench Clinic"
            mail["From"], mail["To"] = "no-reply@localhost", f"p{i}@example.org"
            mail.set_content("Sign in to the patient portal to read it.")
            client.send_message(mail)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        setup(args.database_url or f"sqlite:///{tmp}/bench-notices.sqlite3")
        from django.conf import settings
        from django.db import connection

        from tests.smtp_server import SmtpServer

        rows = []
        with SmtpServer() as server:
            settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
            settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
            for _ in range(args.rounds):
                queue_messages(args.messages)
                server.sink.received.clear()
                read, total = drain(args.messages, server.sink)
                server.sink.received.clear()
                smtp_only = floor(server.port, args.messages)
                server.sink.received.clear()
                rows.append((read, total, smtp_only))
        best = min(rows, key=lambda r: r[1])
        read, total, smtp_only = best
        n = args.messages
        print(f"notices bench: {n} queued staff messages, one worker, in-process aiosmtpd, {connection.vendor}")
        print(f"  rounds (s, drain total): {', '.join(f'{r[1]:.2f}' for r in rows)}")
        print(f"  reading the log: {read * 1000 / n:.3f} ms per message ({read:.2f} s)")
        print(f"  drained: {total * 1000 / n:.3f} ms per notice ({total:.2f} s, {n / total:.0f} notices/s)")
        print(f"  floor, smtplib alone: {smtp_only * 1000 / n:.3f} ms per mail; ratio {total / smtp_only:.2f}x")
        print(f"  median round {statistics.median(r[1] for r in rows) * 1000 / n:.3f} ms per notice")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
