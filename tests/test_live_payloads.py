"""What a live event shows: every field it can select answers for its viewer exactly as over HTTP at that
moment, nested lists included; resumes replay at once; live deliveries are audited as such."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from core import actions
from core.live import SHARED, encode_cursor
from core.live_db import live_db, release_connection
from core.models import AccessSource, AuditEvent, Event
from core.tokens import issue_token
from graph.live_exec import AUDIT
from tests.graphql_client import Api, gid
from tests.live_client import LiveClient

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async

# The selection the Workbench's thread needs and more: nested connections, per-viewer counts, chart lists.
CONVERSATION_FIELDS = """
  id status unreadCount lastMessageAt
  messages(last: 5) { totalCount edges { node { sequence body direction senderName } } }
  mailbox { id name isSubscribed unreadCount subscriberCount subscribers { id username } }
  patient { id fullName conversations { id status } }
"""
MAILBOX_FIELDS = "id name status isSubscribed unreadCount subscriberCount"

MAILBOX_EVENTS = f"""
subscription($practiceId: ID!, $after: String) {{
  mailboxEvents(practiceId: $practiceId, after: $after) {{
    cursor kind
    mailbox {{ {MAILBOX_FIELDS} }}
    conversation {{ {CONVERSATION_FIELDS} }}
    message {{ id sequence body }}
  }}
}}
"""
CONVERSATION_EVENTS = f"""
subscription($conversationId: ID!, $after: String, $via: AccessSource) {{
  conversationEvents(conversationId: $conversationId, after: $after, via: $via) {{
    cursor kind conversation {{ {CONVERSATION_FIELDS} }}
  }}
}}
"""
OVER_HTTP = f"""
query($conversationId: ID!, $mailboxId: ID!, $via: AccessSource) {{
  conversation(id: $conversationId, via: $via) {{ {CONVERSATION_FIELDS} }}
  mailbox(id: $mailboxId) {{ {MAILBOX_FIELDS} }}
}}
"""


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    yield
    await AUDIT.drain()
    await database_sync_to_async(connections.close_all)()
    await live_db(SHARED.clear)()
    await release_connection()


@pytest.fixture
def after(world) -> str:
    mailbox = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Baseline")
    return encode_cursor(Event.objects.get(mailbox_id=mailbox.pk).pk)


async def connected(user=None, patient=None) -> LiveClient:
    token = await db(issue_token)(user=user, patient=patient)
    client = LiveClient(headers=[(b"host", b"testserver")])
    assert (await client.open(token))["type"] == "connection_ack"
    return client


def over_http(world, user, via: str = "MAILBOX") -> dict:
    return Api.as_user(user).data(
        OVER_HTTP,
        {
            "conversationId": gid("Conversation", world.conversation.pk),
            "mailboxId": gid("Mailbox", world.billing.pk),
            "via": via,
        },
    )


async def test_nested_fields_of_an_event_answer_as_over_http_for_each_of_two_viewers(world, after):
    # given two subscribers of Billing: one has read the thread's first patient message, the other has not
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="first")
    await db(actions.mark_conversation_read)(acting_user=world.mailbox_admin, conversation_id=world.conversation.pk)
    variables = {"practiceId": gid("Practice", world.practice.pk), "after": after}
    clients = {user: await connected(user=user) for user in (world.subscriber, world.mailbox_admin)}
    for client in clients.values():
        await client.subscribe("m", MAILBOX_EVENTS, variables)

    # when the patient writes again and each viewer's events arrive (the replayed first message, then this one)
    for client in clients.values():
        assert (await client.event("m", "mailboxEvents"))["message"]["body"] == "first"
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="second")
    events = {user: await client.event("m", "mailboxEvents") for user, client in clients.items()}

    # then every nested field answered (no errors), each viewer got their own counts, the mailbox has one set of
    # values wherever it appears, and everything equals the same selection asked over HTTP right after
    for user, event in events.items():
        answer = await db(over_http)(world, user)
        assert event["conversation"] == answer["conversation"]
        assert event["mailbox"] == answer["mailbox"]
        nested = event["conversation"]["mailbox"]
        assert {k: nested[k] for k in ("isSubscribed", "unreadCount")} == {
            k: event["mailbox"][k] for k in ("isSubscribed", "unreadCount")
        }
        assert [e["node"]["body"] for e in event["conversation"]["messages"]["edges"]] == ["first", "second"]
    assert events[world.subscriber]["conversation"]["unreadCount"] == 2
    assert events[world.mailbox_admin]["conversation"]["unreadCount"] == 1
    for client in clients.values():
        await client.close()


async def test_a_chart_viewer_who_is_not_subscribed_sees_the_thread_live_as_the_chart_shows_it(world, after):
    # given a staff member who is not subscribed to Billing, following the thread from the patient's chart
    client = await connected(user=world.staff)
    variables = {"conversationId": gid("Conversation", world.conversation.pk), "after": after, "via": "CHART_SUMMARY"}
    await client.subscribe("c", CONVERSATION_EVENTS, variables)
    await client.nothing_for(0.2)

    # when the patient writes
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="hello")
    event = await client.event("c", "conversationEvents")

    # then the thread answers as the chart summary does over HTTP: not subscribed, messages readable
    answer = await db(over_http)(world, world.staff, "CHART_SUMMARY")
    assert event["conversation"] == answer["conversation"]
    assert event["conversation"]["mailbox"]["isSubscribed"] is False
    assert event["conversation"]["messages"]["edges"][-1]["node"]["body"] == "hello"
    await client.close()


async def test_a_resume_right_after_a_socket_closed_replays_the_missed_event_at_once(world, after):
    # given a subscriber that received one event, then lost its socket
    variables = {"practiceId": gid("Practice", world.practice.pk), "after": after}
    first = await connected(user=world.subscriber)
    await first.subscribe("m", MAILBOX_EVENTS, variables)
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="seen")
    seen = await first.event("m", "mailboxEvents")
    await first.close()

    # when a message arrives while it is away and it resumes immediately with its last cursor
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="missed")
    again = await connected(user=world.subscriber)
    started = time.perf_counter()
    await again.subscribe("m", MAILBOX_EVENTS, {**variables, "after": seen["cursor"]})
    missed = await again.event("m", "mailboxEvents", timeout=5)
    elapsed_ms = (time.perf_counter() - started) * 1000

    # then the missed event is replayed at once, not at the next periodic re-check
    assert missed["message"]["body"] == "missed"
    assert elapsed_ms < 200, f"resume took {elapsed_ms:.0f} ms"
    print(f"resume replay: {elapsed_ms:.1f} ms")
    await again.close()


async def test_live_deliveries_are_audited_as_live_and_findable_by_patient_never_as_a_thread_opened(world, after):
    # given two subscribers following Billing
    variables = {"practiceId": gid("Practice", world.practice.pk), "after": after}
    clients = [await connected(user=user) for user in (world.subscriber, world.mailbox_admin)]
    for client in clients:
        await client.subscribe("m", MAILBOX_EVENTS, variables)
    await clients[0].nothing_for(0.2)
    before = await db(lambda: AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first())()

    # when the patient writes and both receive the event
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="hi")
    for client in clients:
        await client.event("m", "mailboxEvents")
    await AUDIT.drain()

    # then each viewer has one live-delivery row naming the patient, and no row reads as a person opening it
    rows = await db(lambda: list(AuditEvent.objects.filter(pk__gt=before, actor_user__isnull=False)))()
    delivery = [r for r in rows if r.operation == "mailboxEvents.live"]
    assert sorted(r.actor_user_id for r in delivery) == sorted([world.subscriber.pk, world.mailbox_admin.pk])
    assert {(r.via, r.patient_id) for r in delivery} == {(AccessSource.LIVE, world.patient.pk)}
    assert all(r.via == AccessSource.LIVE for r in rows), [(r.operation, r.via) for r in rows]
    for client in clients:
        await client.close()
