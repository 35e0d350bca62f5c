"""Live events where working the pool meets reaching the patient: a withdrawal after notes reaches the patient with
the patient's own numbering, and staff learn from the event that the patient waits again."""

from __future__ import annotations

import pytest

from core import actions
from tests.graphql_client import gid
from tests.live.test_live_reaching import _close_worker_thread_connections, latest_cursor  # noqa: F401
from tests.live.test_live_subscriptions import connected, db

pytestmark = pytest.mark.django_db(transaction=True)

PORTAL = """subscription($after: String) { portalEvents(after: $after) { kind
  message { sequence direction body retracted { at reason } } } }"""
MAILBOXES = """subscription($p: ID!, $after: String) { mailboxEvents(practiceId: $p, after: $after) { kind
  conversation { waitingSince } message { sequence direction retracted { reason } } } }"""


async def test_a_withdrawal_after_notes_has_the_patients_number_and_staff_see_the_wait_again(world):
    asked = await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="?")
    for body in ("SECRET-1", "SECRET-2"):
        await db(actions.add_internal_note)(
            acting_user=world.subscriber, conversation_id=world.conversation.pk, body=body
        )
    answer = await db(actions.send_staff_message)(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Your HbA1c is 7.1"
    )
    assert (answer.sequence, answer.portal_sequence) == (4, 2)
    after = await db(latest_cursor)(world)
    patient = await connected(patient=world.patient)
    staff = await connected(user=world.subscriber)
    await patient.subscribe("p", PORTAL, {"after": after})
    await staff.subscribe("s", MAILBOXES, {"p": gid("Practice", world.practice.pk), "after": after})
    await patient.nothing_for(0.2)

    await db(actions.retract_message)(acting_user=world.subscriber, message_id=answer.pk, reason="wrong patient")

    seen = await patient.event("p", "portalEvents")
    assert seen["kind"] == "MESSAGE_RETRACTED"
    assert (seen["message"]["sequence"], seen["message"]["body"], seen["message"]["retracted"]["reason"]) == (
        2,
        "",
        None,
    )
    staff_seen = await staff.event("s", "mailboxEvents")
    while staff_seen["kind"] != "MESSAGE_RETRACTED":  # the baseline mailbox of `latest_cursor` may come first
        staff_seen = await staff.event("s", "mailboxEvents")
    assert staff_seen["message"]["sequence"] == 4
    assert staff_seen["conversation"]["waitingSince"] is not None
    assert staff_seen["conversation"]["waitingSince"].replace("+00:00", "Z")[:19] == asked.sent_at.strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    await patient.nothing_for(0.2)
    await patient.close()
    await staff.close()
