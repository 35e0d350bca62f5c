"""Withdrawn messages and auto-replies live: the patient's stream shows only that a message was withdrawn."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from core import actions
from core.live import SHARED, encode_cursor
from core.live_db import live_db, release_connection
from core.models import Event
from tests.graphql_client import gid
from tests.live.test_live_subscriptions import connected, db

pytestmark = pytest.mark.django_db(transaction=True)

FIELDS = """cursor kind
  message { sequence body isAutomatic senderName retracted { at reason by { fullName } } attachments { filename } }"""
PORTAL = f"subscription($after: String) {{ portalEvents(after: $after) {{ {FIELDS} }} }}"
THREAD = f"""subscription($c: ID!, $after: String) {{
  conversationEvents(conversationId: $c, after: $after) {{ {FIELDS} }} }}"""
MAILBOXES = f"""subscription($p: ID!, $after: String) {{
  mailboxEvents(practiceId: $p, after: $after) {{ {FIELDS} mailbox {{ autoReply }} }} }}"""


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()
    await live_db(SHARED.clear)()
    await release_connection()


def latest_cursor(world) -> str:
    """A cursor at the practice's newest event (a baseline event first: subscribing without one is not
    deterministic)."""
    actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Baseline")
    return encode_cursor(Event.objects.latest("pk").pk)


async def test_withdrawal_reaches_the_patient_as_a_bare_notice_and_staff_with_who_and_why(world):
    message = await db(actions.send_staff_message)(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Your HbA1c is 7.1"
    )
    after = await db(latest_cursor)(world)
    patient = await connected(patient=world.patient)
    staff = await connected(user=world.subscriber)
    await patient.subscribe("p", PORTAL, {"after": after})
    await staff.subscribe("s", THREAD, {"c": gid("Conversation", world.conversation.pk), "after": after})
    await patient.nothing_for(0.2)

    await db(actions.retract_message)(acting_user=world.mailbox_admin, message_id=message.pk, reason="wrong patient")

    seen = await patient.event("p", "portalEvents")
    assert seen["kind"] == "MESSAGE_RETRACTED"
    assert seen["message"]["body"] == ""
    assert seen["message"]["attachments"] == []
    assert seen["message"]["retracted"]["reason"] is None
    assert seen["message"]["retracted"]["by"] is None
    staff_seen = await staff.event("s", "conversationEvents")
    assert staff_seen["kind"] == "MESSAGE_RETRACTED"
    assert staff_seen["message"]["body"] == "Your HbA1c is 7.1"
    assert staff_seen["message"]["retracted"]["reason"] == "wrong patient"
    assert staff_seen["message"]["retracted"]["by"] == {"fullName": "Mia Mailboxadmin"}
    await patient.close()
    await staff.close()


async def test_auto_reply_changes_and_auto_replies_are_live(world):
    after = await db(latest_cursor)(world)
    staff = await connected(user=world.subscriber)
    patient = await connected(patient=world.patient)
    await staff.subscribe("m", MAILBOXES, {"p": gid("Practice", world.practice.pk), "after": after})
    await patient.subscribe("p", PORTAL, {"after": after})
    await staff.nothing_for(0.2)

    await db(actions.set_mailbox_auto_reply)(
        acting_user=world.mailbox_admin, mailbox_id=world.billing.pk, text="Noted."
    )
    changed = await staff.event("m", "mailboxEvents")
    assert (changed["kind"], changed["mailbox"]["autoReply"]) == ("MAILBOX_AUTO_REPLY_CHANGED", "Noted.")
    await patient.nothing_for(0.3)  # an admin setting is no portal event

    await db(actions.archive_conversation)(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hello?")
    kinds = []
    for _ in range(3):
        event = await patient.event("p", "portalEvents")
        kinds.append((event["kind"], event["message"] and event["message"]["isAutomatic"]))
        if event["message"] and event["message"]["isAutomatic"]:
            assert event["message"]["senderName"] == "Billing"
            break
    assert kinds[-1] == ("MESSAGE_ADDED", True)
    await staff.close()
    await patient.close()
