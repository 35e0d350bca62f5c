"""New-message notices by email (SPEC §6): a worker following the event log, a real SMTP server in the test."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from core import actions, notices
from core.models import EmailNotice, Event, Message, NoticeCursor, NoticeStatus
from tests import processes
from tests.conftest import make_patient
from tests.graphql_client import Api, gid
from tests.smtp_server import MailSink, SmtpServer, free_port

ROOT = Path(__file__).resolve().parents[2]
TEXT = "Your HbA1c came back at 7.1, see you Tuesday"
SEND = "mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id } }"


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield server


@pytest.fixture
def fast_retries(settings):
    settings.MAILBOX = {**settings.MAILBOX, "NOTIFY_RETRY_SECONDS": 0.2, "NOTIFY_RETRY_MAX_SECONDS": 0.8}


def with_email(patient, address="maria@example.org"):
    patient.email = address
    patient.save()
    return patient


def staff_send(world, body=TEXT, conversation=None):
    return actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=(conversation or world.conversation).pk, body=body
    )


def test_a_staff_message_mails_the_patient_a_notice_without_phi(world, smtp):
    with_email(world.patient)
    staff_send(world)

    result = notices.run_pass()

    assert (result.queued, result.sent) == (1, 1)
    [mail] = smtp.sink.received
    assert mail.to == ["maria@example.org"]
    assert mail.subject == "You have a new secure message from North Clinic"
    assert "http://127.0.0.1:8000/portal/" in mail.body
    for phi in (TEXT, "HbA1c", "Billing", "María", "García", world.subscriber.full_name):
        assert phi not in mail.raw
    notice = EmailNotice.objects.get()
    assert notice.status == NoticeStatus.SENT
    assert mail.message_id == notices.message_id_for(notice)


def test_sending_does_not_wait_for_mail(world, smtp):
    with_email(world.patient)
    Api.as_user(world.subscriber).data(SEND, {"c": gid("Conversation", world.conversation.pk), "b": TEXT})

    assert smtp.sink.received == []  # only the worker mails
    assert EmailNotice.objects.count() == 0
    assert Event.objects.filter(kind="MESSAGE_ADDED").count() == 1


def test_one_notice_per_conversation_per_cooldown(world, smtp):
    with_email(world.patient)
    other = make_patient(world.practice, "A-2000", "Ana", "Lima")
    with_email(other, "ana@example.org")
    other_conversation = actions.start_conversation(
        acting_user=world.subscriber, mailbox_id=world.billing.pk, patient_id=other.pk
    )
    for _ in range(3):
        staff_send(world)
    staff_send(world, conversation=other_conversation)

    result = notices.run_pass()

    assert result.sent == 2
    assert result.skipped == {"COOLDOWN": 2}
    assert sorted(m.to[0] for m in smtp.sink.received) == ["ana@example.org", "maria@example.org"]

    # 15 minutes after the noticed message, the next message is noticed again.
    first = EmailNotice.objects.filter(conversation=world.conversation, status=NoticeStatus.SENT).get()
    EmailNotice.objects.filter(pk=first.pk).update(message_sent_at=first.message_sent_at - dt.timedelta(minutes=15))
    staff_send(world)
    assert notices.run_pass().sent == 1
    assert len(smtp.sink.received) == 3


def test_no_notice_without_an_address_for_patient_messages_or_after_opting_out(world, smtp):
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="hello")
    staff_send(world)  # no email on file
    assert notices.run_pass().skipped == {"NO_EMAIL": 1}

    with_email(world.patient)
    answer = Api.as_patient(world.patient).data(
        "mutation { setPortalNotifications(email: false) { email emailOnFile } }"
    )
    assert answer["setPortalNotifications"] == {"email": False, "emailOnFile": True}
    EmailNotice.objects.all().delete()  # test shortcut: a fresh message after the change
    staff_send(world)
    result = notices.run_pass()

    assert smtp.sink.received == []
    assert result.skipped == {"OPTED_OUT": 1}
    assert Api.as_patient(world.patient).data("{ portalNotifications { email } }") == {
        "portalNotifications": {"email": False}
    }


def test_opting_out_after_the_message_still_stops_the_pending_notice(world, smtp):
    with_email(world.patient)
    staff_send(world)
    notices.read_log()
    actions.set_portal_notifications(acting_patient=world.patient, email=False)

    notices.send_due()

    assert smtp.sink.received == []
    assert EmailNotice.objects.get().skip_reason == "OPTED_OUT"


def test_set_portal_notifications_is_for_patients_and_audited(world):
    query = "mutation { setPortalNotifications(email: false) { email } }"
    assert Api.as_user(world.owner).error_code(query) == "FORBIDDEN"
    assert Api().error_code(query) == "UNAUTHENTICATED"

    Api.as_patient(world.patient).data(query)

    from core.models import AuditEvent

    row = AuditEvent.objects.get(operation="setPortalNotifications", outcome="SUCCESS")
    assert (row.actor_patient_id, row.patient_id, row.detail) == (world.patient.pk, world.patient.pk, {"email": False})
    world.outside_patient.refresh_from_db()
    assert world.outside_patient.email_notices is True


def test_a_failing_mail_server_is_retried_with_growing_delays(world, smtp, fast_retries):
    with_email(world.patient)
    smtp.sink.on_data = lambda attempt: "451 4.3.0 try again later" if attempt <= 2 else None
    staff_send(world)

    first = notices.run_pass()
    notice = EmailNotice.objects.get()
    assert (first.sent, first.failed, notice.status, notice.attempts) == (0, 1, NoticeStatus.PENDING, 1)
    assert "451" in notice.last_error
    first_delay = (notice.next_attempt_at - notice.created_at).total_seconds()

    assert notices.run_pass().sent == 0  # not due yet
    time.sleep(0.25)
    assert notices.run_pass().failed == 1
    notice.refresh_from_db()
    assert notice.attempts == 2
    assert (notice.next_attempt_at - notice.created_at).total_seconds() > first_delay + 0.3  # doubled

    time.sleep(0.45)
    assert notices.run_pass().sent == 1
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, len(smtp.sink.received)) == (NoticeStatus.SENT, 3, 1)


def test_an_unreachable_mail_server_is_retried(world, settings, fast_retries):
    with_email(world.patient)
    staff_send(world)
    port = free_port()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2

    assert notices.run_pass().failed == 1  # nothing listens

    with SmtpServer(port=port) as server:
        time.sleep(0.25)
        assert notices.run_pass().sent == 1
    assert len(server.sink.received) == 1


# ---- the worker as a real process, killed mid-run --------------------------------------------------------


def worker_database_url() -> str:
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    user, password = settings_dict.get("USER") or "", settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def start_worker(smtp_url: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "notify-worker-test-key",
        "DEBUG": "0",
        "EMAIL_URL": smtp_url,
        "NOTIFY_POLL_SECONDS": "0.05",
        "NOTIFY_CLAIM_TIMEOUT_SECONDS": "0.5",
        "NOTIFY_RETRY_SECONDS": "0.1",
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    with log.open("ab") as out:
        return processes.spawn(
            [sys.executable, "manage.py", "notify_worker"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_for(condition, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_resumes_where_it_stopped_nothing_lost_nothing_doubled(world, settings, tmp_path):
    # Given 40 patients with an address, each written to once (40 conversations, no cooldown in play)
    settings.MAILBOX = {**settings.MAILBOX, "SEND_RATE_LIMIT": (10**6, 60)}
    expected = set()
    for i in range(40):
        patient = with_email(make_patient(world.practice, f"K-{i}", "Pat", f"Number{i}"), f"p{i}@example.org")
        conversation = actions.start_conversation(
            acting_user=world.subscriber, mailbox_id=world.billing.pk, patient_id=patient.pk
        )
        staff_send(world, conversation=conversation)
        expected.add(f"p{i}@example.org")
    log = tmp_path / "worker.log"
    worker: dict[str, subprocess.Popen] = {}
    kills: list[int] = []

    def kill_during(attempt: int) -> str | None:
        # The worker dies while the server holds its 5th and its 25th mail: neither is accepted.
        if attempt in (5, 25) and len(kills) < 2:
            kills.append(attempt)
            worker["process"].send_signal(signal.SIGKILL)
            worker["process"].wait(10)
            return "421 4.3.0 connection lost"
        return None

    with SmtpServer(MailSink(on_data=kill_during)) as server:
        try:
            # When the worker runs, is killed mid-send and started again, twice
            for round_ in range(3):
                worker["process"] = start_worker(server.url, log)
                if round_ < 2:
                    wait_for(lambda: worker["process"].poll() is not None, 60, f"kill {round_ + 1}", log)
            wait_for(lambda: len(server.sink.received) >= 40, 60, "all notices", log)
            time.sleep(0.5)  # a repeat, if any, would arrive now
        finally:
            if "process" in worker:
                processes.stop(worker["process"])

    # Then every patient got exactly one notice
    assert kills == [5, 25]
    recipients = [mail.to[0] for mail in server.sink.received]
    assert sorted(recipients) == sorted(expected)
    assert len({mail.message_id for mail in server.sink.received}) == 40
    assert EmailNotice.objects.filter(status=NoticeStatus.SENT).count() == 40
    assert EmailNotice.objects.count() == Message.objects.count() == 40
    # the two mails cut off by a kill reached the server twice, were accepted once
    assert server.sink.attempts == 42
    assert set(EmailNotice.objects.values_list("attempts", flat=True)) == {1}
    assert NoticeCursor.objects.get(practice=world.practice).last_event_id == (
        Event.objects.filter(practice=world.practice).latest("pk").pk
    )


def test_notify_worker_once_drains_and_says_where_mail_goes(world, smtp):
    from io import StringIO

    from django.core.management import call_command

    with_email(world.patient)
    staff_send(world)
    err = StringIO()

    call_command("notify_worker", "--once", stderr=err)

    assert f"mail through SMTP 127.0.0.1:{smtp.port}" in err.getvalue()
    assert "queued 1" in err.getvalue()
    assert "sent 1" in err.getvalue()
    assert len(smtp.sink.received) == 1
