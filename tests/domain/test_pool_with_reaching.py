"""Working the pool (#13) together with reaching the patient (#14): waiting time and answers against automatic
replies and withdrawn messages, notes against notices, auto-replies and withdrawal, and the patient's numbering."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import actions, notices
from core.models import AuditEvent, Conversation, EmailNotice, Event, Message, StaffResponse
from tests.graphql_client import Api, gid

RETRACT = """mutation($id: ID!, $r: String!) { retractMessage(messageId: $id, reason: $r) { id retracted { at } } }"""
PORTAL = """{ portalConversations { id mailbox { name } messages(last: 10) { totalCount edges { node {
  sequence direction body isAutomatic retracted { at by { id } reason } attachments { id } } } } } }"""
PORTAL_NEWEST = """{ portalConversations { id messages(last: 1) { totalCount edges { node {
  sequence body retracted { at } } } } } }"""
STATS = """query($p: ID!) { mailboxes(practiceId: $p) { name stats { openCount waitingCount oldestWaitingSince } } }"""


def conversation(world, pk=None) -> Conversation:
    return Conversation.objects.get(pk=pk or world.conversation.pk)


def patient_says(world, body="help", mailbox=None) -> Message:
    return actions.send_patient_message(
        acting_patient=world.patient, mailbox_id=(mailbox or world.billing).pk, body=body
    )


def staff_says(world, body="answer", user=None) -> Message:
    return actions.send_staff_message(
        acting_user=user or world.subscriber, conversation_id=world.conversation.pk, body=body
    )


def note(world, body="called, no answer") -> Message:
    return actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body=body)


def withdraw(world, message, user=None):
    return actions.retract_message(acting_user=user or world.subscriber, message_id=message.pk, reason="wrong patient")


def responses(world) -> list[tuple]:
    return list(
        StaffResponse.objects.filter(conversation_id=world.conversation.pk)
        .order_by("answered_at", "id")
        .values_list("message_id", "waited_from", "is_first")
    )


# ---- waiting time: automatic replies and withdrawn answers -------------------------------------------


def test_an_auto_reply_is_no_answer_the_patient_keeps_waiting(world):
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk, text="Got it.")

    asked = patient_says(world, mailbox=world.scheduling)

    thread = Conversation.objects.get(mailbox=world.scheduling)
    assert Message.objects.filter(conversation=thread, is_automatic=True).count() == 1
    assert thread.waiting_since == asked.sent_at
    assert not StaffResponse.objects.exists()
    answer = Api.as_user(world.mailbox_admin).data(STATS, {"p": gid("Practice", world.practice.pk)})
    stats = {m["name"]: m["stats"] for m in answer["mailboxes"]}
    assert (stats["Scheduling"]["openCount"], stats["Scheduling"]["waitingCount"]) == (1, 1)


def test_an_auto_reply_on_reactivation_does_not_answer_either(world):
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, text="Noted.")
    first = patient_says(world, "one")
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    patient_says(world, "two")  # reactivates: the auto-reply goes out

    assert Message.objects.filter(conversation=world.conversation, is_automatic=True).count() == 1
    assert conversation(world).waiting_since == first.sent_at
    answer = staff_says(world)
    assert conversation(world).waiting_since is None
    assert responses(world) == [(answer.pk, first.sent_at, True)]


def test_withdrawing_the_answer_makes_the_patient_wait_again_and_removes_its_response(world):
    asked = patient_says(world)
    answer = staff_says(world)
    assert responses(world) == [(answer.pk, asked.sent_at, True)]

    withdraw(world, answer)

    assert conversation(world).waiting_since == asked.sent_at
    assert responses(world) == []
    # the next answer is the conversation's first, and the patient waited since the first question
    again = staff_says(world, "the right answer")
    assert conversation(world).waiting_since is None
    assert responses(world) == [(again.pk, asked.sent_at, True)]


def test_withdrawing_an_answer_with_a_later_one_moves_the_wait_onto_the_later_answer(world):
    first = patient_says(world, "one")
    answer = staff_says(world, "a")
    patient_says(world, "two")
    later = staff_says(world, "b")
    assert [r[0] for r in responses(world)] == [answer.pk, later.pk]

    withdraw(world, answer, user=world.mailbox_admin)

    assert conversation(world).waiting_since is None
    [(message_id, waited_from, is_first)] = responses(world)
    row = StaffResponse.objects.get()
    assert (message_id, waited_from, is_first) == (later.pk, first.sent_at, True)
    assert row.seconds == (later.sent_at - first.sent_at).total_seconds()


def test_withdrawing_a_message_that_answered_no_one_leaves_waiting_and_responses_alone(world):
    asked = patient_says(world)
    answer = staff_says(world, "a")
    extra = staff_says(world, "also")  # nobody was waiting
    before = list(StaffResponse.objects.values_list("pk", "message_id", "waited_from", "seconds", "is_first"))

    withdraw(world, extra)

    assert conversation(world).waiting_since is None
    assert list(StaffResponse.objects.values_list("pk", "message_id", "waited_from", "seconds", "is_first")) == before
    assert before[0][1:3] == (answer.pk, asked.sent_at)


def test_withdrawing_an_auto_reply_changes_no_wait(world):
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk, text="Got it.")
    asked = patient_says(world, mailbox=world.scheduling)
    reply = Message.objects.get(is_automatic=True)

    actions.retract_message(acting_user=world.mailbox_admin, message_id=reply.pk, reason="old hours")

    assert Conversation.objects.get(mailbox=world.scheduling).waiting_since == asked.sent_at
    assert not StaffResponse.objects.exists()


# ---- notes: never withdrawn, never noticed, never auto-replied ---------------------------------------


@pytest.mark.parametrize("who", ["author", "mailbox_admin"])
def test_a_note_cannot_be_withdrawn_and_nothing_changes(world, who):
    written = note(world)
    user = world.subscriber if who == "author" else world.mailbox_admin
    before = Event.objects.count(), AuditEvent.objects.filter(operation="retractMessage").count()

    answer = Api.as_user(user).post(RETRACT, {"id": gid("Message", written.pk), "r": "wrong patient"})

    assert answer["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert answer["errors"][0]["message"] == "An internal note cannot be withdrawn: the patient never saw it."
    assert (Event.objects.count(), AuditEvent.objects.filter(operation="retractMessage").count()) == before
    written.refresh_from_db()
    assert (written.retracted_at, written.retracted_by_id, written.retract_reason) == (None, None, "")


def test_a_note_from_another_practice_is_not_found(world):
    written = note(world)
    answer = Api.as_user(world.outsider).post(RETRACT, {"id": gid("Message", written.pk), "r": "wrong patient"})
    unknown = Api.as_user(world.outsider).post(RETRACT, {"id": gid("Message", written.pk + 999), "r": "x"})
    assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert answer["errors"][0]["message"] == unknown["errors"][0]["message"]


def test_the_database_refuses_a_withdrawn_note(world):
    written = note(world)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.filter(pk=written.pk).update(retracted_at=timezone.now(), retracted_by=world.subscriber)


def test_a_note_sends_no_email_notice_and_starts_no_auto_reply(world, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world.patient.email = "maria@example.org"
    world.patient.save()
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, text="Noted.")
    patient_says(world)
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)

    note(world, "SECRET: called the lab")

    assert not Message.objects.filter(is_automatic=True).exists()  # a note reactivates nothing
    result = notices.run_pass()
    assert result.sent == 0
    assert not EmailNotice.objects.exists()
    # a staff message after it is noticed as usual: the note held nothing back
    staff_says(world)
    assert notices.run_pass().sent == 1
    assert EmailNotice.objects.get().message.direction == "TO_PATIENT"


# ---- the patient's numbering ------------------------------------------------------------------------


def test_patient_numbering_with_auto_reply_notes_and_a_withdrawn_message(world):
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, text="Noted.")
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    patient_says(world, "my bill")  # 1 (reactivates), auto-reply 2
    note(world, "SECRET-A")  # staff 3, none for the patient
    wrong = staff_says(world, "Your HbA1c is 7.1")  # staff 4, patient 3
    note(world, "SECRET-B")  # staff 5
    withdraw(world, wrong)
    note(world, "SECRET-C")  # staff 6: newest of all, after the withdrawn one

    rows = Message.objects.filter(conversation=world.conversation).order_by("sequence")
    assert [(m.sequence, m.portal_sequence, m.direction) for m in rows] == [
        (1, 1, "FROM_PATIENT"),
        (2, 2, "TO_PATIENT"),
        (3, None, "INTERNAL_NOTE"),
        (4, 3, "TO_PATIENT"),
        (5, None, "INTERNAL_NOTE"),
        (6, None, "INTERNAL_NOTE"),
    ]
    [thread] = Api.as_patient(world.patient).data(PORTAL)["portalConversations"]
    seen = [e["node"] for e in thread["messages"]["edges"]]
    assert thread["messages"]["totalCount"] == 3
    assert [(m["sequence"], m["isAutomatic"], m["body"]) for m in seen] == [
        (1, False, "my bill"),
        (2, True, "Noted."),
        (3, False, ""),
    ]
    assert seen[2]["retracted"]["at"]
    assert seen[2]["retracted"]["reason"] is None
    assert "SECRET" not in str(thread)
    # the portal list's preview (the newest message) is the withdrawn one, never a newer note
    [preview] = Api.as_patient(world.patient).data(PORTAL_NEWEST)["portalConversations"]
    assert preview["messages"]["totalCount"] == 3
    [newest] = [e["node"] for e in preview["messages"]["edges"]]
    assert (newest["sequence"], newest["body"], bool(newest["retracted"])) == (3, "", True)
