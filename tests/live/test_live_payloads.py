"""What a live event shows: every field it can select answers for its viewer exactly as over HTTP at that
moment, nested lists included; resumes replay at once; live deliveries are audited as such."""

from __future__ import annotations

import re
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
from tests.live_client import MAILBOX_EVENTS as WORKBENCH_MAILBOX_EVENTS
from tests.live_client import LiveClient, start_counting_queries, stop_counting_queries

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


async def message_event(client: LiveClient, body: str) -> dict:
    """The event of the message with this body (the reader's own CONVERSATION_READ may come before it)."""
    while True:
        event = await client.event("m", "mailboxEvents")
        if (event.get("message") or {}).get("body") == body:
            return event


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
    events = {user: await message_event(client, "second") for user, client in clients.items()}

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


async def test_a_resume_right_after_a_socket_closed_replays_the_missed_event_at_once(world, after, settings):
    # given a subscriber that received one event, then lost its socket; a periodic re-check far away (a resume
    # that waited for it would take a minute)
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    variables = {"practiceId": gid("Practice", world.practice.pk), "after": after}
    client = await connected(user=world.subscriber)
    await client.subscribe("m", WORKBENCH_MAILBOX_EVENTS, variables)
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="seen")
    cursor = (await client.event("m", "mailboxEvents"))["cursor"]
    timings = []
    for n in range(3):
        await client.close()

        # when a message arrives while it is away and it resumes immediately with its last cursor
        await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body=f"m{n}")
        client = await connected(user=world.subscriber)
        started = time.perf_counter()
        await client.subscribe("m", WORKBENCH_MAILBOX_EVENTS, {**variables, "after": cursor})
        missed = await client.event("m", "mailboxEvents", timeout=5)
        timings.append((time.perf_counter() - started) * 1000)
        assert missed["message"]["body"] == f"m{n}"
        cursor = missed["cursor"]

    # then each missed event is replayed at once, not at the next periodic re-check
    timings.sort()
    print(f"resume replay: {', '.join(f'{t:.1f}' for t in timings)} ms")
    assert timings[1] < 200, f"resume took {timings} ms"
    await client.close()


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


ACCESS_TABLES = {"core_membership", "core_mailboxsubscription", "core_practicesetting", "core_apitoken", "core_user"}


def _reads_table(sql: str) -> str:
    """The table a statement reads (its subqueries, aliased U0…, may read others for the data it selects)."""
    match = re.search(r'FROM "(\w+)"(?! U\d)', sql)
    return match.group(1) if match else ""


async def test_access_is_decided_from_memory_until_an_access_change_then_again_at_the_next_event(
    world, after, settings
):
    # given a subscriber whose stream (the Workbench's selection) has decided its access once; no periodic
    # re-check during the test
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    client = await connected(user=world.subscriber)
    await client.subscribe(
        "m", WORKBENCH_MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after}
    )
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="first")
    await message_event(client, "first")

    # when three more messages are delivered
    await live_db(start_counting_queries)()
    for n in range(3):
        await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body=f"m{n}")
        await message_event(client, f"m{n}")
    delivered_sql = await live_db(stop_counting_queries)()

    # then no delivery asked the database who may see them (membership, subscriptions, switches, token)
    assert delivered_sql, "the events were read and executed on the live thread"
    assert not [sql for sql in delivered_sql if _reads_table(sql) in ACCESS_TABLES]

    # when the subscriber unsubscribes (an access change) and the patient writes again
    await db(actions.unsubscribe_from_mailbox)(acting_user=world.subscriber, mailbox_id=world.billing.pk)
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="after")

    # then the stream shows the subscription change and nothing of the message: decided again at once
    changed = await client.event("m", "mailboxEvents")
    assert changed["kind"] == "SUBSCRIPTIONS_CHANGED"
    await client.nothing_for(0.5)
    await client.close()


async def test_signing_out_closes_the_socket_of_that_browser_session(world, after, settings):
    # given a staff member signed in in a browser, with a socket opened on the session cookie
    from django.test import Client

    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    browser = Client()
    await db(browser.force_login)(world.subscriber)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    client = LiveClient(headers=[(b"host", b"testserver"), (b"origin", b"http://testserver"), (b"cookie", cookie)])
    assert (await client.open(payload={}))["type"] == "connection_ack"
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when the browser signs out
    started = time.perf_counter()
    await db(browser.post)("/logout/")

    # then the socket is closed with 4403 at once (the sign-out is an event), not at the periodic re-check
    assert await client.closed_code(timeout=5) == 4403
    assert time.perf_counter() - started < 2
    await client.close()


SHARED_SELECTION = """
subscription($practiceId: ID!, $after: String) {
  mailboxEvents(practiceId: $practiceId, after: $after) {
    cursor kind conversation { id status patient { fullName } } message { id sequence body senderName }
  }
}
"""
PER_VIEWER_SELECTION = """
subscription($practiceId: ID!, $after: String) {
  mailboxEvents(practiceId: $practiceId, after: $after) { cursor kind conversation { id unreadCount } }
}
"""


@pytest.mark.parametrize(
    ("document", "executions"), [(SHARED_SELECTION, 1), (PER_VIEWER_SELECTION, 2)], ids=["shared", "per-viewer"]
)
async def test_an_event_is_executed_once_for_viewers_whose_selection_answers_alike(
    world, after, settings, document, executions
):
    # given two different staff users following Billing with the same document, access decided once already
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    variables = {"practiceId": gid("Practice", world.practice.pk), "after": after}
    clients = [await connected(user=user) for user in (world.subscriber, world.mailbox_admin)]
    for client in clients:
        await client.subscribe("m", document, variables)
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="warm")
    for client in clients:
        await client.event("m", "mailboxEvents")

    # when one more message arrives
    await live_db(start_counting_queries)()
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="next")
    received = [await client.event("m", "mailboxEvents") for client in clients]
    sql = await live_db(stop_counting_queries)()

    # then the conversation was loaded once for both viewers when nothing selected depends on the viewer, and once
    # per viewer when something does (their own unread counts), and both got the same answer where it is shared
    loads = [q for q in sql if _reads_table(q) == "core_conversation"]
    assert len(loads) == executions, loads
    if executions == 1:
        assert received[0] == received[1]
    for client in clients:
        await client.close()


def test_a_reader_that_skips_ahead_of_a_long_log_forgets_the_access_decisions_it_did_not_see_change(world):
    # given a process reader keeping 3 rows and a subscriber's decided stream
    from core import live

    shared = live.SharedLog()
    shared.KEEP_ROWS = 3
    stream = live.open_mailbox_stream(user=world.subscriber, token_id=None, practice_id=world.practice.pk)
    start, newest = live.start_position(stream, None)
    shared.decide(stream, newest)
    assert stream.access_key() in shared.access

    # when the subscriber unsubscribes and more events than the window follow before the reader looks again
    actions.unsubscribe_from_mailbox(acting_user=world.subscriber, mailbox_id=world.billing.pk)
    for n in range(5):
        actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body=f"m{n}")
    shared.read_batch(stream, start, Event.objects.latest("id").pk)

    # then the decision made before the unsubscription is not reused (the skipped rows held the change)
    memo = shared.access.get(stream.access_key())
    assert memo is None or world.billing.pk not in memo.value
