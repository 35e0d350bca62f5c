"""Working the pool live, over real WebSockets: assignment, priority, notes and quick replies reach staff as
events carrying what changed; the patient's portalEvents never carry a trace of them."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from core import actions
from core.live import SHARED, encode_cursor
from core.live_db import live_db, release_connection
from core.models import Event
from core.tokens import issue_token
from tests.graphql_client import gid
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async

POOL_EVENTS = """subscription($practiceId: ID!, $after: String) {
  mailboxEvents(practiceId: $practiceId, after: $after) {
  cursor kind conversationId
  conversation { id priority waitingSince unreadCount lastMessageAt assignee { id fullName } mailbox { id } }
  message { id sequence direction body senderName } } }"""
THREAD_EVENTS = """subscription($c: ID!, $after: String) { conversationEvents(conversationId: $c, after: $after) {
  kind message { sequence direction body } conversation { assignee { fullName } priority } } }"""
PORTAL_EVENTS = """subscription($after: String) { portalEvents(after: $after) {
  cursor kind conversation { id lastMessageAt assignee { id } priority waitingSince assignmentHistory { reason } }
  message { sequence direction body } } }"""


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()
    await live_db(SHARED.clear)()
    await release_connection()


@pytest.fixture
def after(world) -> str:
    mailbox = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Baseline")
    return encode_cursor(Event.objects.get(mailbox_id=mailbox.pk).pk)


async def connected(user=None, patient=None) -> LiveClient:
    client = LiveClient()
    ack = await client.open(await db(issue_token)(user=user, patient=patient))
    assert ack["type"] == "connection_ack"
    return client


def work_the_pool(world):
    """Everything staff-only that can happen to the patient's conversation."""
    c = world.conversation.pk
    actions.add_internal_note(acting_user=world.subscriber, conversation_id=c, body="SECRET note")
    actions.assign_conversation(
        acting_user=world.subscriber, conversation_id=c, user_id=world.mailbox_admin.pk, reason="SECRET why"
    )
    actions.set_conversation_priority(acting_user=world.subscriber, conversation_id=c, priority="URGENT")
    actions.create_quick_reply(
        acting_user=world.mailbox_admin, practice_id=world.practice.pk, title="SECRET", body="Hi"
    )


async def test_subscribers_see_notes_assignment_and_priority_live_with_what_changed(world, after):
    client = await connected(user=world.subscriber)
    await client.subscribe("m", POOL_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Help")
    added = await client.event("m", "mailboxEvents")
    assert added["conversation"]["waitingSince"] is not None
    await db(actions.add_internal_note)(
        acting_user=world.mailbox_admin, conversation_id=world.conversation.pk, body="Calling"
    )
    note = await client.event("m", "mailboxEvents")
    await db(actions.assign_conversation)(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, user_id=world.subscriber.pk
    )
    claimed = await client.event("m", "mailboxEvents")
    await db(actions.set_conversation_priority)(
        acting_user=world.mailbox_admin, conversation_id=world.conversation.pk, priority="URGENT"
    )
    urgent = await client.event("m", "mailboxEvents")
    await db(actions.send_staff_message)(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Done"
    )
    answered = await client.event("m", "mailboxEvents")

    assert note["kind"] == "NOTE_ADDED"
    assert note["message"]["direction"] == "INTERNAL_NOTE"
    assert (note["message"]["sequence"], note["message"]["body"]) == (2, "Calling")
    assert note["conversation"]["lastMessageAt"] == added["conversation"]["lastMessageAt"]  # not activity
    assert note["conversation"]["unreadCount"] == 1  # still only the patient's message
    assert note["conversation"]["waitingSince"] == added["conversation"]["waitingSince"]  # not an answer
    assert claimed["kind"] == "CONVERSATION_ASSIGNED"
    assert claimed["conversation"]["assignee"] == {"id": gid("User", world.subscriber.pk), "fullName": "Sam Subscriber"}
    assert urgent["kind"] == "CONVERSATION_PRIORITY_CHANGED"
    assert urgent["conversation"]["priority"] == "URGENT"
    assert answered["kind"] == "MESSAGE_ADDED"
    assert answered["conversation"]["waitingSince"] is None
    await client.close()


async def test_quick_reply_changes_reach_every_staff_member_subscribed_or_not(world, after):
    client = await connected(user=world.staff)  # subscribed to nothing
    await client.subscribe("m", POOL_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)
    await db(actions.create_quick_reply)(
        acting_user=world.mailbox_admin, practice_id=world.practice.pk, title="Refill", body="Ready."
    )
    event = await client.event("m", "mailboxEvents")
    assert event["kind"] == "QUICK_REPLIES_CHANGED"
    assert (event["conversation"], event["message"]) == (None, None)
    # and the conversation's own pool events stay with Billing's subscribers
    await db(actions.add_internal_note)(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="x")
    await client.nothing_for(0.3)
    await client.close()


async def test_a_thread_followed_live_shows_notes_and_assignment(world, after):
    client = await connected(user=world.mailbox_admin)
    await client.subscribe("t", THREAD_EVENTS, {"c": gid("Conversation", world.conversation.pk), "after": after})
    await client.nothing_for(0.2)
    await db(actions.add_internal_note)(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="n")
    await db(actions.assign_conversation)(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, user_id=world.mailbox_admin.pk
    )
    note = await client.event("t", "conversationEvents")
    assigned = await client.event("t", "conversationEvents")
    assert note["message"] == {"sequence": 1, "direction": "INTERNAL_NOTE", "body": "n"}
    assert assigned["conversation"]["assignee"] == {"fullName": "Mia Mailboxadmin"}
    await client.close()


async def test_portal_events_carry_no_trace_of_notes_assignment_priority_or_quick_replies(world, after):
    # given the patient following their portal live
    client = await connected(patient=world.patient)
    await client.subscribe("p", PORTAL_EVENTS, {"after": after})
    await client.nothing_for(0.2)
    # when staff work the pool on their conversation
    await db(work_the_pool)(world)
    # then the patient hears nothing
    await client.nothing_for(0.5)
    # and staff's next message arrives numbered as the patient counts: 1, not 2 (the note has no place)
    await db(actions.send_staff_message)(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Hi")
    event = await client.event("p", "portalEvents")
    assert event["message"] == {"sequence": 1, "direction": "TO_PATIENT", "body": "Hi"}
    shown = event["conversation"]
    assert (shown["assignee"], shown["priority"], shown["waitingSince"], shown["assignmentHistory"]) == (
        None,
        None,
        None,
        [],
    )
    assert "SECRET" not in str(event)
    await client.close()

    # and a resume from the start replays only that message
    again = await connected(patient=world.patient)
    await again.subscribe("p", PORTAL_EVENTS, {"after": after})
    replayed = await again.event("p", "portalEvents")
    assert replayed["message"]["body"] == "Hi"
    assert replayed["cursor"] == event["cursor"]
    await again.nothing_for(0.3)
    await again.close()
