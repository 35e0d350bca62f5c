"""Mailbox auto-reply and withdrawn messages (SPEC §6 "Reaching the patient"), through the API."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from core import actions, notices
from core.models import Attachment, AuditEvent, ConversationStatus, EmailNotice, Event, Message
from core.tokens import issue_token
from tests.graphql_client import Api, gid

SET_AUTO_REPLY = (
    """mutation($m: ID!, $t: String) { setMailboxAutoReply(mailboxId: $m, text: $t) { id name autoReply } }"""
)
PORTAL_THREADS = """{ portalConversations { id status messages { edges { node {
  sequence direction body senderName isAutomatic retracted { at by { id } reason } attachments { id url } } } } } }"""
THREAD = """query($c: ID!) { conversation(id: $c) { messages { edges { node {
  id sequence direction body senderName isAutomatic retracted { at by { fullName } reason } attachments { filename }
} } } } }"""
RETRACT = """mutation($id: ID!, $r: String!) { retractMessage(messageId: $id, reason: $r) {
  id body retracted { at by { fullName } reason } } }"""
PORTAL_SEND = 'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "My bill looks wrong") { sequence } }'


def portal_messages(world) -> list[dict]:
    threads = Api.as_patient(world.patient).data(PORTAL_THREADS)["portalConversations"]
    return [edge["node"] for thread in threads for edge in thread["messages"]["edges"]]


def staff_thread(world, user=None) -> list[dict]:
    answer = Api.as_user(user or world.subscriber).data(THREAD, {"c": gid("Conversation", world.conversation.pk)})
    return [edge["node"] for edge in answer["conversation"]["messages"]["edges"]]


# ---- auto-reply -------------------------------------------------------------------------------------------


def test_mailbox_admin_sets_and_clears_the_auto_reply(world):
    api = Api.as_user(world.mailbox_admin)
    text = "  Thanks for writing to Billing. We answer within two working days.  "

    answer = api.data(SET_AUTO_REPLY, {"m": gid("Mailbox", world.billing.pk), "t": text})

    assert answer["setMailboxAutoReply"]["autoReply"] == text.strip()
    assert Event.objects.filter(kind="MAILBOX_AUTO_REPLY_CHANGED", mailbox_id=world.billing.pk).count() == 1
    row = AuditEvent.objects.get(operation="setMailboxAutoReply")
    assert (row.actor_user_id, row.detail["on"]) == (world.mailbox_admin.pk, True)
    assert (
        api.data(SET_AUTO_REPLY, {"m": gid("Mailbox", world.billing.pk), "t": "   "})["setMailboxAutoReply"][
            "autoReply"
        ]
        is None
    )


def test_auto_reply_refuses_an_overlong_text_and_writes_nothing(world):
    api = Api.as_user(world.mailbox_admin)
    answer = api.post(SET_AUTO_REPLY, {"m": gid("Mailbox", world.billing.pk), "t": "x" * 2001})
    assert answer["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert "2,000" in answer["errors"][0]["message"]
    world.billing.refresh_from_db()
    assert world.billing.auto_reply is None
    assert not Event.objects.filter(kind="MAILBOX_AUTO_REPLY_CHANGED").exists()


def test_a_patient_opening_a_conversation_gets_the_auto_reply_once(world):
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk, text="We got it.")
    patient = Api.as_patient(world.patient)

    patient.data(PORTAL_SEND, {"m": gid("Mailbox", world.scheduling.pk)})
    patient.data(PORTAL_SEND, {"m": gid("Mailbox", world.scheduling.pk)})

    messages = Message.objects.filter(conversation__mailbox=world.scheduling).order_by("sequence")
    assert [(m.sequence, m.direction, m.is_automatic) for m in messages] == [
        (1, "FROM_PATIENT", False),
        (2, "TO_PATIENT", True),
        (3, "FROM_PATIENT", False),
    ]
    shown = [m for m in portal_messages(world) if m["isAutomatic"]]
    assert shown == [
        {
            "sequence": 2,
            "direction": "TO_PATIENT",
            "body": "We got it.",
            "senderName": "Scheduling",
            "isAutomatic": True,
            "retracted": None,
            "attachments": [],
        }
    ]
    assert AuditEvent.objects.filter(operation="autoReply", actor_user=None, actor_patient=None).count() == 1
    # its live event is the ordinary MESSAGE_ADDED of the conversation
    assert Event.objects.filter(kind="MESSAGE_ADDED", message_id=messages[1].pk).count() == 1


def test_reactivating_an_archived_conversation_sends_it_again_but_an_active_one_does_not(world):
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, text="Noted.")
    patient = Api.as_patient(world.patient)
    # the Billing conversation exists (started by staff), active: no auto-reply
    patient.data(PORTAL_SEND, {"m": gid("Mailbox", world.billing.pk)})
    assert not Message.objects.filter(is_automatic=True).exists()

    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    patient.data(PORTAL_SEND, {"m": gid("Mailbox", world.billing.pk)})

    world.conversation.refresh_from_db()
    assert world.conversation.status == ConversationStatus.ACTIVE
    assert Message.objects.filter(is_automatic=True, conversation=world.conversation).count() == 1


def test_an_auto_reply_sends_no_email_notice_and_counts_for_no_one_as_unread(world, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world.patient.email = "maria@example.org"
    world.patient.save()
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk, text="Got it.")
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.scheduling.pk, body="Hi")

    result = notices.run_pass()

    assert (result.sent, result.skipped) == (0, {"AUTOMATIC": 1})
    assert EmailNotice.objects.get().skip_reason == "AUTOMATIC"


def test_thread_of_staff_marks_the_auto_reply(world):
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, text="Noted.")
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hello?")

    automatic = [m for m in staff_thread(world) if m["isAutomatic"]]

    assert [(m["senderName"], m["body"], m["direction"]) for m in automatic] == [("Billing", "Noted.", "TO_PATIENT")]


# ---- withdrawn messages ------------------------------------------------------------------------------------


def _staff_message_with_file(world):
    upload = SimpleUploadedFile("lab.txt", b"HbA1c 7.1 for the wrong patient\n", content_type="text/plain")
    return actions.send_staff_message(
        acting_user=world.subscriber,
        conversation_id=world.conversation.pk,
        body="Your HbA1c is 7.1",
        attachments=[upload],
    )


def test_sender_withdraws_patient_sees_only_that_staff_see_who_when_why(world):
    message = _staff_message_with_file(world)

    answer = Api.as_user(world.subscriber).data(RETRACT, {"id": gid("Message", message.pk), "r": " wrong patient "})

    assert answer["retractMessage"]["retracted"]["by"] == {"fullName": "Sam Subscriber"}
    assert answer["retractMessage"]["retracted"]["reason"] == "wrong patient"
    assert answer["retractMessage"]["body"] == "Your HbA1c is 7.1"
    [seen] = portal_messages(world)
    assert seen["body"] == ""
    assert seen["attachments"] == []
    assert seen["retracted"]["by"] is None
    assert seen["retracted"]["reason"] is None
    assert seen["retracted"]["at"]
    [staff] = staff_thread(world)
    assert staff["body"] == "Your HbA1c is 7.1"
    assert staff["attachments"] == [{"filename": "lab.txt"}]
    assert staff["retracted"]["reason"] == "wrong patient"


def test_withdrawing_deletes_nothing_and_is_in_the_audit_trail_and_the_log(world):
    message = _staff_message_with_file(world)
    attachment = Attachment.objects.get(message=message)

    actions.retract_message(acting_user=world.mailbox_admin, message_id=message.pk, reason="wrong patient")

    message.refresh_from_db()
    assert message.body == "Your HbA1c is 7.1"
    assert (message.retracted_by_id, message.retract_reason) == (world.mailbox_admin.pk, "wrong patient")
    assert Attachment.objects.filter(pk=attachment.pk, message=message).exists()
    assert default_storage.exists(attachment.storage_name)
    row = AuditEvent.objects.get(operation="retractMessage")
    assert (row.actor_user_id, row.object_type, row.object_id) == (world.mailbox_admin.pk, "Message", str(message.pk))
    assert (row.patient_id, row.detail["reason"]) == (world.patient.pk, "wrong patient")
    event = Event.objects.get(kind="MESSAGE_RETRACTED")
    assert (event.message_id, event.patient_id, event.conversation_id) == (
        message.pk,
        world.patient.pk,
        message.conversation_id,
    )


def _download(attachment: Attachment, *, patient=None, user=None) -> int:
    token = issue_token(patient=patient) if patient is not None else issue_token(user=user)
    response = Client().get(attachment.download_path, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response


def test_after_withdrawal_the_patient_download_is_not_found_staff_still_download(world):
    message = _staff_message_with_file(world)
    attachment = Attachment.objects.get(message=message)
    assert _download(attachment, patient=world.patient)[0] == 200

    actions.retract_message(acting_user=world.subscriber, message_id=message.pk, reason="wrong patient")

    status, response = _download(attachment, patient=world.patient)
    assert status == 404
    assert b"HbA1c" not in response.content
    assert _download(attachment, user=world.subscriber)[0] == 200


@pytest.mark.parametrize(
    ("who", "code"),
    [("staff", "FORBIDDEN"), ("owner", "FORBIDDEN"), ("outsider", "NOT_FOUND"), ("patient", "FORBIDDEN")],
)
def test_only_the_sender_or_a_mailbox_admin_withdraws(world, who, code):
    message = _staff_message_with_file(world)
    api = Api.as_patient(world.patient) if who == "patient" else Api.as_user(getattr(world, who))

    assert api.error_code(RETRACT, {"id": gid("Message", message.pk), "r": "oops"}) == code
    message.refresh_from_db()
    assert message.retracted_at is None
    assert not Event.objects.filter(kind="MESSAGE_RETRACTED").exists()


@pytest.mark.parametrize(
    ("case", "message_fragment"),
    [
        ("patient message", "Only messages from the practice"),
        ("blank reason", "Say why"),
        ("long reason", "at most 500"),
        ("twice", "already withdrawn"),
    ],
)
def test_withdraw_refusals_are_validation_errors_and_change_nothing(world, case, message_fragment):
    mine = _staff_message_with_file(world)
    target, reason = mine, "wrong patient"
    if case == "patient message":
        target = actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="hi")
    elif case == "blank reason":
        reason = "  \u200b "
    elif case == "long reason":
        reason = "x" * 501
    elif case == "twice":
        actions.retract_message(acting_user=world.subscriber, message_id=mine.pk, reason="first")
    before = Event.objects.count(), AuditEvent.objects.filter(operation="retractMessage").count()

    answer = Api.as_user(world.mailbox_admin).post(RETRACT, {"id": gid("Message", target.pk), "r": reason})

    assert answer["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert message_fragment in answer["errors"][0]["message"]
    assert (Event.objects.count(), AuditEvent.objects.filter(operation="retractMessage").count()) == before


def test_a_message_withdrawn_before_the_worker_reads_it_sends_no_notice(world, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world.patient.email = "maria@example.org"
    world.patient.save()
    message = _staff_message_with_file(world)
    actions.retract_message(acting_user=world.subscriber, message_id=message.pk, reason="wrong patient")

    assert notices.run_pass().skipped == {"WITHDRAWN": 1}
