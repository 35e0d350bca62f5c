"""Live events over real WebSockets: delivery, resume without loss or repeats, access re-checked per event."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from core import actions
from core.live import SHARED, encode_cursor
from core.live_db import live_db, release_connection
from core.models import AccessSource, Event, Message
from core.tokens import issue_token
from graph.live_exec import AUDIT
from tests.graphql_client import gid
from tests.live_client import (
    CONVERSATION_EVENTS,
    MAILBOX_EVENTS,
    PORTAL_EVENTS,
    Closed,
    LiveClient,
    start_counting_queries,
    stop_counting_queries,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    """Database work ran in asgiref's worker thread and in the live thread; close their connections so the test
    database can be dropped, and forget the live reader's cache of this test's log."""
    yield
    await database_sync_to_async(connections.close_all)()
    await live_db(SHARED.clear)()
    await release_connection()


def thread(world, after: str) -> dict:
    return {"conversationId": gid("Conversation", world.conversation.pk), "after": after}


@pytest.fixture
def after(world) -> str:
    """A cursor at the practice's newest event. Subscribing with it is deterministic: a subscription without
    `after` starts at whatever is newest once it is set up, which a test cannot observe."""
    mailbox = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Baseline")
    return encode_cursor(Event.objects.get(mailbox_id=mailbox.pk).pk)


db = database_sync_to_async


def staff_sends(world, body: str, user=None):
    return db(actions.send_staff_message)(
        acting_user=user or world.subscriber, conversation_id=world.conversation.pk, body=body
    )


def patient_sends(world, body: str, patient=None, mailbox=None):
    return db(actions.send_patient_message)(
        acting_patient=patient or world.patient, mailbox_id=(mailbox or world.billing).pk, body=body
    )


async def connected(user=None, patient=None) -> LiveClient:
    token = await db(issue_token)(user=user, patient=patient)
    client = LiveClient()
    ack = await client.open(token)
    assert ack["type"] == "connection_ack"
    return client


async def test_subscriber_receives_staff_and_patient_messages_live(world, after):
    # given a subscriber of Billing following the practice's mailbox events
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when a colleague and then the patient write in Billing
    started = time.perf_counter()
    await staff_sends(world, "We are looking into it", user=world.mailbox_admin)
    staff_event = await client.event("m", "mailboxEvents")
    latency_ms = (time.perf_counter() - started) * 1000
    await patient_sends(world, "Thank you")
    patient_event = await client.event("m", "mailboxEvents")

    # then both arrive in order, with their objects
    assert staff_event["kind"] == "MESSAGE_ADDED"
    assert staff_event["message"] == {
        "id": staff_event["message"]["id"],
        "sequence": 1,
        "direction": "TO_PATIENT",
        "body": "We are looking into it",
        "senderName": "Mia Mailboxadmin",
        "sentAt": staff_event["message"]["sentAt"],
        "attachments": [],
    }
    assert staff_event["mailbox"]["practice"] == {"name": "North Clinic"}
    assert staff_event["conversation"]["mailbox"] == {"name": "Billing"}
    assert staff_event["mailbox"]["name"] == "Billing"
    assert staff_event["conversation"]["patient"]["fullName"] == "María García"
    assert patient_event["message"]["direction"] == "FROM_PATIENT"
    assert patient_event["message"]["sequence"] == 2
    assert patient_event["mailbox"]["unreadCount"] == 1  # the patient's message, not yet read by the subscriber
    assert patient_event["conversation"]["unreadCount"] == 1
    print(f"live delivery latency (action committed → event received): {latency_ms:.1f} ms")
    await client.close()


async def test_without_after_the_stream_starts_now_and_replays_nothing(world):
    # given a message from before the subscription
    await patient_sends(world, "old news")

    # when a subscriber follows without a cursor and new messages keep coming until one arrives
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk)})
    first = None
    for attempt in range(10):  # the server gives no "ready" signal: retry instead of guessing a delay
        await patient_sends(world, f"new {attempt}")
        try:
            first = await client.event("m", "mailboxEvents", timeout=1)
            break
        except TimeoutError:
            continue

    # then the first event is a new one, never the old one
    assert first is not None
    assert first["message"]["body"].startswith("new ")
    await client.close()


async def test_unsubscribed_mailboxes_stay_silent_but_mailbox_changes_arrive(world, after):
    # given staff subscribed to nothing
    client = await connected(user=world.staff)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when a message lands in Billing and then a mailbox admin renames Scheduling
    await patient_sends(world, "Hello")
    await db(actions.rename_mailbox)(
        acting_user=world.mailbox_admin, mailbox_id=world.scheduling.pk, name="Appointments"
    )

    # then only the mailbox change reaches them
    event = await client.event("m", "mailboxEvents")
    assert event["kind"] == "MAILBOX_RENAMED"
    assert event["mailbox"]["name"] == "Appointments"
    await client.nothing_for(0.3)
    await client.close()


async def test_resume_replays_missed_messages_exactly_once_in_order(world, after):
    # given a subscriber who saw one event, then lost the connection
    client = await connected(user=world.subscriber)
    variables = {"practiceId": gid("Practice", world.practice.pk)}
    await client.subscribe("m", MAILBOX_EVENTS, {**variables, "after": after})
    await client.nothing_for(0.2)
    await patient_sends(world, "first")
    seen = await client.event("m", "mailboxEvents")
    await client.close()

    # when three messages are sent while away, and they resume from the last cursor
    for body in ("second", "third", "fourth"):
        await patient_sends(world, body)
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {**variables, "after": seen["cursor"]})
    replayed = [await client.event("m", "mailboxEvents") for _ in range(3)]

    # then each arrives once, in order, and live delivery continues after them
    assert [e["message"]["body"] for e in replayed] == ["second", "third", "fourth"]
    await client.nothing_for(0.3)
    await patient_sends(world, "fifth")
    assert (await client.event("m", "mailboxEvents"))["message"]["body"] == "fifth"
    await client.close()


async def test_lost_publish_is_recovered_on_resume(world, after):
    # given a subscriber who disconnected after seeing one event
    client = await connected(user=world.subscriber)
    variables = {"practiceId": gid("Practice", world.practice.pk)}
    await client.subscribe("m", MAILBOX_EVENTS, {**variables, "after": after})
    await client.nothing_for(0.2)
    await patient_sends(world, "before")
    seen = await client.event("m", "mailboxEvents")
    await client.close()

    # when a message is committed while publishing reaches a layer nobody listens to
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        await patient_sends(world, "never published")

    # then resuming from the cursor delivers it from the log
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {**variables, "after": seen["cursor"]})
    event = await client.event("m", "mailboxEvents")
    assert event["message"]["body"] == "never published"
    await client.close()


async def test_lost_publish_reaches_a_live_subscriber_at_the_periodic_recheck(world, after, settings):
    # given a live subscriber re-reading the log every 0.5 s
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 0.5}
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when a message's publish is lost
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        await patient_sends(world, "silent")
        started = time.perf_counter()
        event = await client.event("m", "mailboxEvents", timeout=3)

    # then it still arrives, within about one re-check period
    assert event["message"]["body"] == "silent"
    assert time.perf_counter() - started < 2
    await client.close()


async def test_cursor_past_retention_is_refused_with_validation_error(world):
    # given a cursor whose event is older than the retention, pruned by the management command
    await patient_sends(world, "old")
    await patient_sends(world, "recent")
    old, recent = await db(lambda: list(Event.objects.order_by("-id")[:2][::-1]))()
    await db(Event.objects.filter(pk=old.pk).update)(created_at=timezone.now() - timedelta(days=31))
    output = StringIO()
    await db(call_command)("prune_events", stdout=output)
    assert output.getvalue().strip() == "Deleted 1 events."
    cursor = encode_cursor(old.pk)

    # when a subscriber resumes from it
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": cursor})
    message = await client.next_for("m")

    # then they are told to refetch, and the subscription ends
    assert message["type"] == "next"
    error = message["payload"]["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert "refetch" in error["message"]
    assert (await client.next_for("m"))["type"] == "complete"

    # while a cursor inside the retention still resumes, and a malformed one is refused the same way
    variables = {"practiceId": gid("Practice", world.practice.pk)}
    await client.subscribe("r", MAILBOX_EVENTS, {**variables, "after": encode_cursor(recent.pk)})
    await client.subscribe("bad", MAILBOX_EVENTS, {**variables, "after": "not-a-cursor"})
    assert await client.refusal("bad") == "VALIDATION_ERROR"
    await patient_sends(world, "newest")
    assert (await client.event("r", "mailboxEvents"))["message"]["body"] == "newest"
    await client.close()


async def test_unsubscribing_stops_mailbox_events(world, after):
    # given a subscriber following Billing
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when they unsubscribe and the patient writes
    await db(actions.unsubscribe_from_mailbox)(acting_user=world.subscriber, mailbox_id=world.billing.pk)
    change = await client.event("m", "mailboxEvents")
    await patient_sends(world, "anyone there?")

    # then they see their own subscription change, and no more Billing messages
    assert change["kind"] == "SUBSCRIPTIONS_CHANGED"
    await client.nothing_for(0.5)
    await client.close()


async def test_unsubscribing_ends_conversation_events_from_the_mailbox_view(world, after):
    # given a subscriber following one Billing conversation from the mailbox view, and a message delivered
    client = await connected(user=world.subscriber)
    await client.subscribe("c", CONVERSATION_EVENTS, thread(world, after))
    await client.nothing_for(0.2)
    await patient_sends(world, "one")
    assert (await client.event("c", "conversationEvents"))["message"]["body"] == "one"

    # when they unsubscribe from Billing and the patient writes again
    await db(actions.unsubscribe_from_mailbox)(acting_user=world.subscriber, mailbox_id=world.billing.pk)
    await patient_sends(world, "two")

    # then the stream ends with NOT_SUBSCRIBED instead of delivering
    assert await client.refusal("c") == "NOT_SUBSCRIBED"
    await client.close()


async def test_deactivated_mailbox_ends_conversation_events(world, after):
    # given a subscriber following one Billing conversation
    client = await connected(user=world.subscriber)
    await client.subscribe(
        "c", CONVERSATION_EVENTS, {"conversationId": gid("Conversation", world.conversation.pk), "after": after}
    )
    await client.nothing_for(0.2)
    await patient_sends(world, "one")
    assert (await client.event("c", "conversationEvents"))["message"]["body"] == "one"

    # when a mailbox admin deactivates Billing and the thread changes again
    await db(actions.deactivate_mailbox)(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    await db(actions.mark_conversation_read)(
        acting_user=world.mailbox_admin, conversation_id=world.conversation.pk, via="CHART_SUMMARY"
    )

    # then the stream ends with MAILBOX_DEACTIVATED instead of delivering
    assert await client.refusal("c") == "MAILBOX_DEACTIVATED"
    await client.close()


async def test_lost_membership_ends_mailbox_events(world, after):
    # given a subscriber following the practice
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when they leave the practice and a message arrives
    from core.models import Membership

    await db(Membership.objects.filter(user=world.subscriber, practice=world.practice).delete)()
    await patient_sends(world, "private")

    # then the stream ends with NOT_FOUND and the message is not delivered
    assert await client.refusal("m") == "NOT_FOUND"
    await client.close()


async def test_other_practice_user_cannot_subscribe_to_anything_here(world, after):
    # given a user of the other practice
    client = await connected(user=world.outsider)

    # when they subscribe to this practice's mailbox events and to one of its conversations
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.subscribe(
        "c", CONVERSATION_EVENTS, {"conversationId": gid("Conversation", world.conversation.pk), "after": after}
    )
    await client.subscribe(
        "x", CONVERSATION_EVENTS, {"conversationId": gid("Conversation", world.conversation.pk), "via": "CHART_SUMMARY"}
    )

    # then every one is NOT_FOUND, and no message leaks
    assert [await client.refusal(op_id) for op_id in ("m", "c", "x")] == ["NOT_FOUND"] * 3
    await patient_sends(world, "secret")
    await client.nothing_for(0.3)
    await client.close()


async def test_two_subscriptions_on_one_socket_do_not_interfere(world, after):
    # given one socket following the practice and one conversation
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.subscribe(
        "c", CONVERSATION_EVENTS, {"conversationId": gid("Conversation", world.conversation.pk), "after": after}
    )
    await client.nothing_for(0.2)

    # when a message arrives, then each subscription gets it once
    await patient_sends(world, "both")
    assert (await client.event("m", "mailboxEvents"))["message"]["body"] == "both"
    assert (await client.event("c", "conversationEvents"))["message"]["body"] == "both"

    # when the conversation subscription completes, the other keeps running
    await client.send({"id": "c", "type": "complete"})
    await client.nothing_for(0.2)
    await patient_sends(world, "only mailbox")
    assert (await client.event("m", "mailboxEvents"))["message"]["body"] == "only mailbox"
    await client.nothing_for(0.3)
    await client.close()


async def test_chart_summary_follows_a_conversation_without_subscription(world, after):
    # given a staff member not subscribed to Billing, following the thread from the patient's chart
    client = await connected(user=world.staff)
    variables = {"conversationId": gid("Conversation", world.conversation.pk), "after": after}
    await client.subscribe("mailbox-view", CONVERSATION_EVENTS, variables)
    await client.subscribe("chart", CONVERSATION_EVENTS, {**variables, "via": "CHART_SUMMARY"})

    # then the mailbox view is refused and the chart view delivers
    assert await client.refusal("mailbox-view") == "NOT_SUBSCRIBED"
    await client.nothing_for(0.2)
    await patient_sends(world, "chart me")
    assert (await client.event("chart", "conversationEvents"))["message"]["body"] == "chart me"
    await client.close()


async def test_portal_events_reach_only_their_patient(world, after):
    # given two patients of the practice following their portal events
    mine = await connected(patient=world.patient)
    theirs = await connected(patient=world.other_patient)
    await mine.subscribe("p", PORTAL_EVENTS, {"after": after})
    await theirs.subscribe("p", PORTAL_EVENTS, {"after": after})
    await mine.nothing_for(0.2)

    # when staff answer the first patient
    await staff_sends(world, "Your bill is fixed")

    # then only that patient hears of it
    event = await mine.event("p", "portalEvents")
    assert event["message"] == {"sequence": 1, "body": "Your bill is fixed", "direction": "TO_PATIENT"}
    await theirs.nothing_for(0.3)

    # and a staff-only signal (a read receipt) is not sent to the patient
    await db(actions.mark_conversation_read)(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    await mine.nothing_for(0.3)
    await mine.close()
    await theirs.close()


async def test_staff_token_cannot_follow_portal_events(world, after):
    client = await connected(user=world.subscriber)
    await client.subscribe("p", PORTAL_EVENTS, {"after": after})
    assert await client.refusal("p") == "FORBIDDEN"
    await client.close()


async def test_revoked_token_closes_the_socket_within_five_seconds(world, after):
    # given a subscriber connected with a token
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when the token is revoked
    from core.tokens import revoke_tokens

    await db(revoke_tokens)(user=world.subscriber)
    started = time.perf_counter()

    # then the server closes the socket with 4403 within 5 seconds
    assert await client.closed_code(timeout=6) == 4403
    elapsed = time.perf_counter() - started
    assert elapsed < 5
    print(f"revoked token: socket closed after {elapsed:.2f} s")
    await client.close()


async def test_a_disabled_account_s_socket_is_closed_at_the_next_event(world, after):
    # given a subscriber following the mailbox events
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when the account is disabled (as the admin does: the user saved), then a message arrives
    def disable() -> None:
        world.subscriber.is_active = False
        world.subscriber.save()

    await db(disable)()
    await patient_sends(world, "after disabling")

    # then the message is not delivered: the socket is closed as for a dead token
    received, code = [], None
    while code is None:
        try:
            received.append(await client.receive(timeout=6))
        except Closed as closed:
            code = closed.code
    assert code == 4403
    assert "after disabling" not in str(received)
    await client.close()


async def test_an_account_disabled_behind_the_actions_back_is_closed_by_the_periodic_re_check(world, after, settings):
    # given a subscriber following the mailbox events, and a short safety-net interval
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 1}
    client = await connected(user=world.subscriber)
    await client.subscribe("m", MAILBOX_EVENTS, {"practiceId": gid("Practice", world.practice.pk), "after": after})
    await client.nothing_for(0.2)

    # when the account is switched off in raw SQL (no event is written)
    from core.models import User

    await db(User.objects.filter(pk=world.subscriber.pk).update)(is_active=False)

    # then the socket closes within a few intervals, without any event arriving
    assert await client.closed_code(timeout=5) == 4403
    await client.close()


async def test_a_revoked_token_closes_only_its_own_sockets(world, after):
    # given two sockets of the subscriber on one token and one of the mailbox admin on another
    variables = {"practiceId": gid("Practice", world.practice.pk), "after": after}
    token = await db(issue_token)(user=world.subscriber)
    revoked = []
    for _ in range(2):
        client = LiveClient()
        await client.open(token)
        await client.subscribe("m", MAILBOX_EVENTS, variables)
        revoked.append(client)
    kept = await connected(user=world.mailbox_admin)
    await kept.subscribe("m", MAILBOX_EVENTS, variables)
    await kept.nothing_for(0.2)

    # when the subscriber's tokens are revoked
    from core.tokens import revoke_tokens

    await db(revoke_tokens)(user=world.subscriber)

    # then both of its sockets close with 4403 at the process's next re-check, and the other stays open and live
    for client in revoked:
        assert await client.closed_code(timeout=6) == 4403
    await db(actions.send_patient_message)(acting_patient=world.patient, mailbox_id=world.billing.pk, body="still here")
    event = await kept.next_for("m")
    assert event["payload"]["data"]["mailboxEvents"]["kind"] == "MESSAGE_ADDED"
    await kept.close()
    for client in revoked:
        await client.close()


def test_a_batch_of_events_costs_the_same_queries_however_many_events(world):
    # given a subscriber's stream and one event, then twenty more
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import live

    issue_token(user=world.subscriber)
    token_id = world.subscriber.api_tokens.get().pk
    stream = live.open_mailbox_stream(user=world.subscriber, token_id=token_id, practice_id=world.practice.pk)
    start, _newest = live.start_position(stream, None)
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="one")
    with CaptureQueriesContext(connection) as one:
        small = live.read_batch(stream, start)
    for n in range(20):
        actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body=f"m{n}")

    # when both batches are read, then the query count does not grow with the events
    with CaptureQueriesContext(connection) as many:
        large = live.read_batch(stream, small.last_id)
    assert (len(small.items), len(large.items)) == (1, 20)
    assert len(many.captured_queries) == len(one.captured_queries), [q["sql"] for q in many.captured_queries]
    print(f"read_batch: {len(one.captured_queries)} queries for 1 event and for 20 events")


async def live_queries_while(deliver) -> list[str]:
    """The SQL the live thread (every subscription's reads, and the deliveries' audit rows) ran for `deliver`."""
    await AUDIT.drain()  # rows of earlier deliveries are not this one's
    await live_db(start_counting_queries)()
    await deliver()
    await AUDIT.drain()
    return await live_db(stop_counting_queries)()


async def test_one_event_costs_the_same_queries_for_one_or_many_subscribers_of_a_process(world, after, settings):
    # given one subscriber of a conversation, then six (the same member on six devices, each socket with its own
    # token), all on this process; no periodic re-check during the measurement
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}

    async def subscribers(count: int) -> list[LiveClient]:
        clients = []
        for _ in range(count):
            client = await connected(user=world.subscriber)
            await client.subscribe("c", CONVERSATION_EVENTS, thread(world, after))
            clients.append(client)
        return clients

    async def one_message(clients: list[LiveClient], body: str) -> list[str]:
        async def deliver() -> None:
            await staff_sends(world, body)
            for client in clients:
                assert (await client.event("c", "conversationEvents"))["message"]["body"] == body

        return await live_queries_while(deliver)

    clients = await subscribers(1)
    await one_message(clients, "warm-up")  # catches up from the cursor
    alone = await one_message(clients, "to one")
    for client in clients:
        await client.close()
    clients = await subscribers(6)
    for client in clients:  # each replays the log from the cursor first
        for body in ("warm-up", "to one"):
            assert (await client.event("c", "conversationEvents"))["message"]["body"] == body

    # when one more message is sent, then the process's queries do not grow with its subscribers
    together = await one_message(clients, "to six")
    assert len(together) == len(alone), together
    print(f"one event: {len(alone)} live queries for 1 subscriber, {len(together)} for 6")
    for client in clients:
        await client.close()


async def test_an_event_loads_only_the_objects_its_subscription_selects(world, after, settings):
    # given two subscribers of the same conversation: one selects every object, the other only the cursor
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    everything = """
    subscription($conversationId: ID!, $after: String) {
      conversationEvents(conversationId: $conversationId, after: $after) {
        cursor mailbox { name unreadCount } conversation { unreadCount } message { body }
      }
    }
    """
    bare = """
    subscription($conversationId: ID!, $after: String) {
      conversationEvents(conversationId: $conversationId, after: $after) { cursor ...Kind }
    }
    fragment Kind on LiveEvent { kind }
    """

    async def queries_for(query: str, body: str, cursor: str) -> tuple[dict, list[str]]:
        client = await connected(user=world.subscriber)
        await client.subscribe("c", query, thread(world, cursor))
        # an event first, so that the subscription's own setup reads are over before counting (not a timed wait)
        await staff_sends(world, f"{body}, warming up")
        await client.event("c", "conversationEvents")
        received = {}

        async def deliver() -> None:
            await staff_sends(world, body)
            received.update(await client.event("c", "conversationEvents"))

        sql = await live_queries_while(deliver)
        await client.close()
        return received, sql

    # when a message is sent to each
    full, full_sql = await queries_for(everything, "first", after)
    small, small_sql = await queries_for(bare, "second", full["cursor"])

    # then each gets what it selected, and the bare one cost no object loads
    assert full["message"] == {"body": "first"}
    assert full["mailbox"]["name"]
    assert full["conversation"] is not None
    assert small["kind"] == "MESSAGE_ADDED"
    assert len(small_sql) < len(full_sql)
    assert not [sql for sql in small_sql if 'FROM "core_message"' in sql]


async def test_a_message_s_attachments_are_loaded_only_for_subscriptions_that_select_them(world, after, settings):
    # given two subscribers of the same conversation: one selects attachments through a fragment, one does not
    from tests.attachment_samples import pdf_bytes, upload

    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    with_files = """
    subscription($conversationId: ID!, $after: String) {
      conversationEvents(conversationId: $conversationId, after: $after) { cursor message { body ...Files } }
    }
    fragment Files on Message { attachments { filename contentType } }
    """
    bare = """
    subscription($conversationId: ID!, $after: String) {
      conversationEvents(conversationId: $conversationId, after: $after) { cursor message { body } }
    }
    """

    async def delivered(query: str, cursor: str) -> tuple[dict, list[str]]:
        client = await connected(user=world.subscriber)
        await client.subscribe("c", query, thread(world, cursor))
        await client.nothing_for(0.2)
        received = {}

        async def deliver() -> None:
            await db(actions.send_staff_message)(
                acting_user=world.subscriber,
                conversation_id=world.conversation.pk,
                body="your statement",
                attachments=[upload("statement.pdf", pdf_bytes(), "application/pdf")],
            )
            received.update(await client.event("c", "conversationEvents"))

        sql = await live_queries_while(deliver)
        await client.close()
        return received, sql

    # when a message with a PDF is sent to each
    full, full_sql = await delivered(with_files, after)
    small, small_sql = await delivered(bare, full["cursor"])

    # then the first gets the file, and only its delivery read the attachment table
    assert full["message"]["attachments"] == [{"filename": "statement.pdf", "contentType": "application/pdf"}]
    assert small["message"] == {"body": "your statement"}
    assert [sql for sql in full_sql if 'FROM "core_attachment"' in sql]
    assert not [sql for sql in small_sql if 'FROM "core_attachment"' in sql]


def test_shared_reader_delivers_every_event_in_order_when_the_log_outruns_its_window(world):
    # given a process reader keeping only 3 rows, a subscriber's stream, and a reader of the whole log
    from core import live

    shared = live.SharedLog()
    shared.KEEP_ROWS = 3
    shared.FRESH_SECONDS = 0  # a re-check without a publish reads the log again
    issue_token(user=world.subscriber)
    stream = live.open_mailbox_stream(user=world.subscriber, token_id=None, practice_id=world.practice.pk)
    start, _newest = live.start_position(stream, None)
    position = start
    delivered: list[int] = []

    def follow(wanted_id: int | None) -> None:
        nonlocal position
        while True:
            batch = shared.read_batch(stream, position, wanted_id)
            delivered.extend(event.pk for event in batch.items)
            position = batch.last_id
            if not batch.more:
                return

    # when events arrive one at a time, then ten at once (more than the window), then one without a publish
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="one")
    follow(Event.objects.latest("id").pk)
    for n in range(10):
        actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body=f"m{n}")
    follow(Event.objects.latest("id").pk)
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="last")
    follow(None)

    # then the stream got each event once, in log order, as reading the log directly gives it
    direct = live.read_batch(stream, start)
    assert delivered == [event.pk for event in direct.items]
    assert len(delivered) == 12


def test_cached_batch_answers_from_memory_only_what_the_live_thread_has_read_decided_and_loaded(world):
    # given a process reader, a subscriber's stream and one new message
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import live

    shared = live.SharedLog()
    stream = live.open_mailbox_stream(user=world.subscriber, token_id=None, practice_id=world.practice.pk)
    start, _newest = live.start_position(stream, None)
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="one")
    wanted = Event.objects.latest("id").pk

    # when nothing was read yet, then the event loop must ask the live thread
    assert shared.cached_batch(stream, start, wanted) is None

    # when the live thread has read it, then an equal stream gets the same batch from memory, without a query
    read = shared.read_batch(stream, start, wanted)
    same_viewer = live.open_mailbox_stream(user=world.subscriber, token_id=None, practice_id=world.practice.pk)
    with CaptureQueriesContext(connection) as queries:
        cached = shared.cached_batch(same_viewer, start, wanted)
    assert queries.captured_queries == []
    assert [e.pk for e in cached.items] == [e.pk for e in read.items] == [wanted]
    assert cached.last_id == read.last_id

    # but another viewer (own access decision), a newer announced event, or a stale decision go to the live thread
    other = live.open_mailbox_stream(user=world.mailbox_admin, token_id=None, practice_id=world.practice.pk)
    assert shared.cached_batch(other, start, wanted) is None
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="two")
    assert shared.cached_batch(stream, read.last_id, Event.objects.latest("id").pk) is None
    shared.reuse_seconds = 0
    assert shared.cached_batch(same_viewer, start, wanted) is None


def test_a_decision_past_the_safety_net_interval_stands_while_it_is_decided_again_in_the_background(world):
    # given a process reader whose subscriber's access decision is older than the safety-net interval
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import live
    from core.models import MailboxSubscription

    shared = live.SharedLog()
    shared.reuse_seconds = 30
    stream = live.open_mailbox_stream(user=world.subscriber, token_id=None, practice_id=world.practice.pk)
    start, _newest = live.start_position(stream, None)
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="one")
    wanted = Event.objects.latest("id").pk
    shared.read_batch(stream, start, wanted)
    key = stream.access_key()
    shared.access[key] = replace(shared.access[key], at=shared.access[key].at - 31)

    # when the event loop asks for the batch, then it gets it from memory and the decision is due again
    with CaptureQueriesContext(connection) as queries:
        cached = shared.cached_batch(stream, start, wanted)
    assert queries.captured_queries == []
    assert [e.pk for e in cached.items] == [wanted]
    assert shared.due == {key}

    # when the subscription was removed behind the actions' back, then the background decision no longer shows it
    MailboxSubscription.objects.filter(user=world.subscriber).delete()
    assert shared.revalidate_due() == 0
    assert shared.cached_batch(stream, start, wanted).items == []

    # when the account is deactivated behind the actions' back, then the background decision drops it (the
    # stream's next read decides, and is refused)
    shared.access[key] = replace(shared.access[key], at=shared.access[key].at - 31)
    shared.cached_batch(stream, start, wanted)
    type(world.subscriber).objects.filter(pk=world.subscriber.pk).update(is_active=False)
    assert shared.revalidate_due() == 0
    assert key not in shared.access
    assert shared.cached_batch(stream, start, wanted) is None
    type(world.subscriber).objects.filter(pk=world.subscriber.pk).update(is_active=True)

    # and a decision past twice the interval is never used
    shared.read_batch(stream, start, wanted)
    shared.access[key] = replace(shared.access[key], at=shared.access[key].at - 61)
    assert shared.cached_batch(stream, start, wanted) is None


def test_reading_an_event_for_a_conversation_subscriber_costs_a_fixed_number_of_queries(world):
    # given a process reader and a subscriber's conversation stream
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import live

    shared = live.SharedLog()
    stream = live.open_conversation_stream(
        user=world.subscriber, token_id=None, conversation_id=world.conversation.pk, via=AccessSource.MAILBOX
    )
    start, _newest = live.start_position(stream, None)

    # when a message is sent and the reader delivers it
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="one")
    announced = Event.objects.latest("id").pk
    with CaptureQueriesContext(connection) as queries:
        batch = shared.read_batch(stream, start, announced)

    # then: the log, the conversation with the viewer's subscription, and the membership with the workbench switch
    # and the account's state (what the event shows is executed afterwards, once per cohort)
    assert [event.message_id for event in batch.items] == [Message.objects.get(body="one").pk]
    assert len(queries.captured_queries) == 3, [q["sql"][:80] for q in queries.captured_queries]


async def published(channel: str, count: int) -> list[dict]:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


async def test_a_process_whose_log_read_reached_an_event_s_predecessor_takes_the_event_from_its_publish(world, after):
    # given a practice log with an event, a subscriber's conversation stream, a process reader that has read the
    # log up to now, and a listener on the conversation's group
    from channels.layers import get_channel_layer
    from django.test.utils import CaptureQueriesContext

    from core import live
    from core.events import conversation_group

    layer = get_channel_layer()
    channel = await layer.new_channel("test.")
    await layer.group_add(conversation_group(world.conversation.pk), channel)
    stream = await db(live.open_conversation_stream)(
        user=world.subscriber, token_id=None, conversation_id=world.conversation.pk, via=AccessSource.MAILBOX
    )
    start, _newest = await db(live.start_position)(stream, None)

    # when two messages are sent, and their publishes come
    await staff_sends(world, "one")
    await staff_sends(world, "two")
    first, second = await published(channel, 2)

    def read(offered: list[dict]) -> tuple[live.Batch, list[str]]:
        from django.db import connection

        shared = live.SharedLog()
        shared.decide(stream, start)
        for message in offered:
            shared.announced.offer(message)
        with CaptureQueriesContext(connection) as queries:
            batch = shared.read_batch(stream, start, second["event_id"])
        return batch, [q["sql"] for q in queries.captured_queries]

    # then a reader that got both publishes reads no log row, and its events equal the logged rows
    batch, sql = await db(read)([first, second])
    assert not [q for q in sql if 'FROM "core_event"' in q], sql
    ids = [first["event_id"], second["event_id"]]
    logged = await db(lambda: list(Event.objects.filter(pk__in=ids).order_by("id")))()
    fields = [f.attname for f in Event._meta.concrete_fields]
    assert [[getattr(e, f) for f in fields] for e in batch.items] == [[getattr(e, f) for f in fields] for e in logged]
    assert batch.last_id == second["event_id"]

    # and a reader that missed the first publish (lost, or from before it started) reads the log: nothing skipped
    batch, sql = await db(read)([second])
    assert [q for q in sql if 'FROM "core_event"' in q]
    assert [e.pk for e in batch.items] == [e.pk for e in logged]
    await layer.group_discard(conversation_group(world.conversation.pk), channel)


async def test_a_live_event_whose_publish_carried_it_costs_no_log_read(world, after, settings):
    # given a subscriber of a conversation that has received one message (its stream has read the log)
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    client = await connected(user=world.subscriber)
    await client.subscribe("c", CONVERSATION_EVENTS, thread(world, after))
    await staff_sends(world, "warm-up")
    assert (await client.event("c", "conversationEvents"))["message"]["body"] == "warm-up"

    # when the next message is sent
    async def deliver() -> None:
        await staff_sends(world, "next")
        assert (await client.event("c", "conversationEvents"))["message"]["body"] == "next"

    sql = await live_queries_while(deliver)

    # then the live thread loaded the message, and did not read the event log
    assert [q for q in sql if 'FROM "core_message"' in q]
    assert not [q for q in sql if 'FROM "core_event"' in q], sql
    await client.close()


async def test_a_live_event_does_not_wait_for_the_audit_rows_and_credential_checks_of_earlier_ones(world, after):
    # given a subscriber of a conversation, and the live background thread (audit rows, socket credential
    # re-checks) held busy
    import threading

    from core.live_db import live_db_background
    from core.models import AuditEvent

    client = await connected(user=world.subscriber)
    await client.subscribe("c", CONVERSATION_EVENTS, thread(world, after))
    gate = threading.Event()
    busy = live_db_background(gate.wait)(10)

    # when two messages are sent, then both arrive while it is busy
    for body in ("one", "two"):
        await staff_sends(world, body)
        assert (await client.event("c", "conversationEvents"))["message"]["body"] == body
    assert not busy.done()

    # and their audit rows wait for it (the live thread did not write them), then both are written
    live_rows = db(lambda: AuditEvent.objects.filter(operation="conversationEvents.live").count())
    await asyncio.sleep(0.3)  # ten times LIVE_AUDIT_DELAY_SECONDS
    assert await live_rows() == 0
    gate.set()
    await busy
    await AUDIT.drain()
    assert await live_rows() == 2
    await client.close()


async def test_streams_that_read_the_log_themselves_share_their_cohort_s_execution_of_an_event(world, after, settings):
    # given three sockets of one member on one conversation (each its own token: its own access decision), whose
    # process has forgotten what it read and decided (as after a gap), so each stream reads the log itself
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    clients = []
    for _ in range(3):
        client = await connected(user=world.subscriber)
        await client.subscribe("c", CONVERSATION_EVENTS, thread(world, after))
        clients.append(client)
    await staff_sends(world, "warm-up")
    for client in clients:
        assert (await client.event("c", "conversationEvents"))["message"]["body"] == "warm-up"
    await live_db(SHARED.clear)()

    # when the next message is sent
    async def deliver() -> None:
        await staff_sends(world, "next")
        for client in clients:
            assert (await client.event("c", "conversationEvents"))["message"]["body"] == "next"

    sql = await live_queries_while(deliver)

    # then the message was loaded once for the three: their cohort's one execution
    assert len([q for q in sql if 'FROM "core_message"' in q]) == 1, sql
    for client in clients:
        await client.close()
