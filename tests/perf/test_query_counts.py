"""No N+1: a page of mailboxes, of conversations and of messages, with every field of SPEC §3 selected, costs
the same number of SQL queries at 5 rows and at 50 rows. The constants are asserted, so a regression that
adds a query shows up as a changed number here even when it does not depend on the page size.

Every count includes authenticating the bearer token and the audit rows the reads write.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import (
    Attachment,
    Conversation,
    ConversationStatus,
    Mailbox,
    MailboxSubscription,
    Message,
    MessageDirection,
    Patient,
    ReadState,
)
from tests.conftest import make_patient
from tests.graphql_client import Api, gid

PAGE = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
USER = "id username fullName memberships { role isClinician permissions practice { id name key } }"
MAILBOX = f"id name status isSubscribed subscriberCount unreadCount practice {{ id name key }} subscribers {{ {USER} }}"
PATIENT = "id fullName firstName lastName preferredPronoun dateOfBirth accountNumber"
MESSAGE = (
    "id sequence direction body sentAt clientMessageId senderName conversationId isAutomatic "
    "retracted { at reason by { id fullName } } attachments { id filename contentType size sha256 url }"
)
MESSAGES = f"messages(last: 5) {{ {PAGE} edges {{ cursor node {{ {MESSAGE} }} }} }}"
CONVERSATION = (
    f"id status lastMessageAt createdAt unreadCount mailbox {{ id name status isSubscribed subscriberCount "
    f"unreadCount }} patient {{ {PATIENT} conversations {{ id status unreadCount }} }} {MESSAGES}"
)
CONVERSATIONS = f"conversations(first: 50) {{ {PAGE} edges {{ cursor node {{ {CONVERSATION} }} }} }}"

MAILBOXES_PAGE = f"query($p: ID!) {{ mailboxes(practiceId: $p) {{ {MAILBOX} {CONVERSATIONS} }} }}"
CONVERSATIONS_PAGE = f"query($m: ID!) {{ mailbox(id: $m) {{ {MAILBOX} {CONVERSATIONS} }} }}"
MESSAGES_PAGE = (
    f"query($c: ID!) {{ conversation(id: $c) {{ id status unreadCount mailbox {{ id name isSubscribed }} "
    f"patient {{ {PATIENT} }} messages(last: 50) {{ {PAGE} edges {{ cursor node {{ {MESSAGE} }} }} }} }} }}"
)

# The constants (same on SQLite and PostgreSQL).
MAILBOXES_PAGE_QUERIES = 14
CONVERSATIONS_PAGE_QUERIES = 14
MESSAGES_PAGE_QUERIES = 7


def add_thread(mailbox: Mailbox, patient: Patient, messages: int, staff) -> Conversation:
    """A thread alternating patient and staff messages, each with one attachment row; every fourth message (a staff
    one) is withdrawn by its sender."""
    now = timezone.now()
    conversation = Conversation.objects.create(
        practice_id=mailbox.practice_id,
        mailbox=mailbox,
        patient=patient,
        last_activity_at=now,
        last_message_at=now,
        last_sequence=messages,
        portal_last_sequence=messages,
        patient_message_count=(messages + 1) // 2,
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(patient_message_count=F("patient_message_count") + (messages + 1) // 2)
    rows = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            sequence=n,
            portal_sequence=n,
            sent_at=now - dt.timedelta(minutes=messages - n),
            direction=MessageDirection.FROM_PATIENT if n % 2 else MessageDirection.TO_PATIENT,
            sender_patient=patient if n % 2 else None,
            sender_user=None if n % 2 else staff,
            body=f"message {n}",
            client_message_id=f"c-{n}",
            retracted_at=now if n % 4 == 0 else None,
            retracted_by=staff if n % 4 == 0 else None,
            retract_reason="entered in error" if n % 4 == 0 else "",
        )
        for n in range(1, messages + 1)
    )
    Attachment.objects.bulk_create(
        Attachment(
            practice_id=mailbox.practice_id,
            message=m,
            storage_name=f"qc/{conversation.pk}/{m.sequence}",
            filename="scan.pdf",
            content_type="application/pdf",
            size=10,
            sha256="0" * 64,
        )
        for m in rows
    )
    return conversation


def patients(world, count: int) -> list[Patient]:
    return [make_patient(world.practice, f"QC-{n}", f"First{n}", f"Last{n}") for n in range(count)]


def count_queries(api: Api, query: str, variables: dict) -> tuple[int, dict]:
    api.post("{ __typename }")  # the token's first use also records it; measure a steady request
    with CaptureQueriesContext(connection) as captured:
        answer = api.post(query, variables)
    assert not answer.get("errors"), answer.get("errors")
    return len(captured.captured_queries), answer["data"]


def mailboxes_page_queries(world, rows: int) -> int:
    Mailbox.objects.filter(practice=world.practice).exclude(pk=world.billing.pk).delete()
    people = patients(world, 2)
    for n in range(rows - 1):
        mailbox = Mailbox.objects.create(practice=world.practice, name=f"Box {n:02}")
        MailboxSubscription.objects.bulk_create(
            [
                MailboxSubscription(mailbox=mailbox, user=world.subscriber),
                MailboxSubscription(mailbox=mailbox, user=world.staff),
            ]
        )
        for patient in people:
            add_thread(mailbox, patient, 6, world.subscriber)
    queries, data = count_queries(
        Api.as_user(world.subscriber), MAILBOXES_PAGE, {"p": gid("Practice", world.practice.pk)}
    )
    assert len(data["mailboxes"]) == rows
    busy = next(m for m in data["mailboxes"] if m["name"] == "Box 00")
    assert busy["unreadCount"] == 6
    assert busy["subscriberCount"] == 2
    thread = busy["conversations"]["edges"][0]["node"]
    assert len(thread["messages"]["edges"]) == 5
    assert thread["messages"]["totalCount"] == 6
    assert thread["messages"]["edges"][0]["node"]["attachments"][0]["url"].startswith("http://testserver/attachments/")
    return queries


def conversations_page_queries(world, rows: int) -> int:
    for patient in patients(world, rows - 1):
        add_thread(world.billing, patient, 3, world.subscriber)
    read = Conversation.objects.last()
    ReadState.objects.create(
        user=world.subscriber, conversation=read, mailbox_id=read.mailbox_id, last_read_sequence=3, read_patient_count=2
    )
    queries, data = count_queries(
        Api.as_user(world.subscriber), CONVERSATIONS_PAGE, {"m": gid("Mailbox", world.billing.pk)}
    )
    edges = data["mailbox"]["conversations"]["edges"]
    assert len(edges) == rows == data["mailbox"]["conversations"]["totalCount"]
    assert sorted(e["node"]["unreadCount"] for e in edges)[:2] == [0, 0]  # the empty one and the read one
    return queries


def messages_page_queries(world, rows: int) -> int:
    conversation = add_thread(world.scheduling, world.other_patient, rows, world.subscriber)
    queries, data = count_queries(
        Api.as_user(world.staff),
        MESSAGES_PAGE.replace("conversation(id: $c)", "conversation(id: $c, via: CHART_SUMMARY)"),
        {"c": gid("Conversation", conversation.pk)},
    )
    edges = data["conversation"]["messages"]["edges"]
    assert [e["node"]["sequence"] for e in edges] == list(range(1, rows + 1))
    assert edges[3]["node"]["retracted"]["by"]["fullName"] == world.subscriber.full_name
    return queries


@pytest.mark.parametrize("rows", [5, 50])
def test_a_page_of_mailboxes_with_every_field_costs_the_same_queries_at_any_size(world, rows, settings):
    # Every field at every level, 50 conversations of each mailbox: estimated past the default cost limit
    # (graph/cost.py), though the data holds two conversations per mailbox. This measures queries, not cost.
    settings.MAILBOX = {**settings.MAILBOX, "QUERY_MAX_COST": 50_000}
    assert mailboxes_page_queries(world, rows) == MAILBOXES_PAGE_QUERIES, f"mailboxes page, {rows} mailboxes"


@pytest.mark.parametrize("rows", [5, 50])
def test_a_page_of_conversations_with_every_field_costs_the_same_queries_at_any_size(world, rows):
    assert conversations_page_queries(world, rows) == CONVERSATIONS_PAGE_QUERIES, f"conversations page, {rows} rows"


@pytest.mark.parametrize("rows", [5, 50])
def test_a_page_of_messages_with_every_field_costs_the_same_queries_at_any_size(world, rows):
    assert messages_page_queries(world, rows) == MESSAGES_PAGE_QUERIES, f"messages page, {rows} messages"


def test_portal_conversations_with_their_mailboxes_and_messages_cost_the_same_for_1_or_12_threads(world):
    query = (
        f"{{ portalConversations {{ id status mailbox {{ id name status }} {MESSAGES} }} "
        "portalMailboxes { id name status } }"
    )
    api = Api.as_patient(world.other_patient)
    counts = []
    for threads in (1, 11):  # 1, then 12 in all
        for n in range(threads):
            mailbox = Mailbox.objects.create(practice=world.practice, name=f"Portal {len(counts)}-{n}")
            add_thread(mailbox, world.other_patient, 3, world.subscriber)
        queries, data = count_queries(api, query, {})
        counts.append(queries)
        assert all(len(c["messages"]["edges"]) == 3 for c in data["portalConversations"])
    assert counts[0] == counts[1], f"portal page: {counts[0]} queries for 1 thread, {counts[1]} for 12"


def test_a_page_of_messages_without_attachments_does_not_read_attachments(world):
    # Given a thread whose messages have attachments
    conversation = add_thread(world.scheduling, world.other_patient, 5, world.subscriber)
    without = MESSAGES_PAGE.replace("attachments { id filename contentType size sha256 url }", "")
    # When a page of its messages selects no attachment field
    with CaptureQueriesContext(connection) as captured:
        data = Api.as_user(world.staff).data(
            without.replace("conversation(id: $c)", "conversation(id: $c, via: CHART_SUMMARY)"),
            {"c": gid("Conversation", conversation.pk)},
        )
    # Then the attachments table is not read (one query fewer than with them)
    assert len(data["conversation"]["messages"]["edges"]) == 5
    assert not [q for q in captured.captured_queries if 'FROM "core_attachment"' in q["sql"]]


def test_attachments_selected_through_a_fragment_are_loaded_with_the_page(world):
    # Given a thread whose messages have attachments
    conversation = add_thread(world.scheduling, world.other_patient, 4, world.subscriber)
    query = (
        "query($c: ID!) { conversation(id: $c, via: CHART_SUMMARY) { messages(last: 4) { edges { node { "
        "...Files } } } } } fragment Files on Message { sequence attachments { filename } }"
    )
    # When the attachments are selected in a fragment
    api = Api.as_user(world.staff)
    api.post("{ __typename }")
    with CaptureQueriesContext(connection) as captured:
        data = api.data(query, {"c": gid("Conversation", conversation.pk)})
    # Then every message has them, from one query for the page
    edges = data["conversation"]["messages"]["edges"]
    assert [e["node"]["attachments"] for e in edges] == [[{"filename": "scan.pdf"}]] * 4
    assert len([q for q in captured.captured_queries if 'FROM "core_attachment"' in q["sql"]]) == 1


WORKBENCH_LIST = (  # what web/static/web/js/workbench.js sends for the conversation list
    "query($id: ID!) { mailbox(id: $id) { id name status isSubscribed conversations(first: 50) { totalCount "
    "edges { node { id status lastMessageAt createdAt unreadCount patient { id fullName } } } } } }"
)


def test_the_workbench_list_reads_no_mailbox_count_it_does_not_show(world):
    # Given a mailbox with a thread
    add_thread(world.billing, world.other_patient, 3, world.subscriber)
    api = Api.as_user(world.subscriber)
    api.post("{ __typename }")
    # When the Workbench's conversation list is read (isSubscribed, no unread or subscriber count of the mailbox)
    with CaptureQueriesContext(connection) as captured:
        data = api.data(WORKBENCH_LIST, {"id": gid("Mailbox", world.billing.pk)})
    # Then the mailbox read has no count subquery, and the answer is whole
    mailbox_reads = [q["sql"] for q in captured.captured_queries if q["sql"].startswith('SELECT "core_mailbox"."id"')]
    assert len(mailbox_reads) == 1
    assert "subscriber_count" not in mailbox_reads[0]
    assert "unread_count" not in mailbox_reads[0]
    assert data["mailbox"]["isSubscribed"] is True
    assert data["mailbox"]["conversations"]["totalCount"] == 2


@pytest.mark.parametrize(
    "selection",
    [
        "isSubscribed subscriberCount unreadCount",
        "...Facts",
        "... on Mailbox { isSubscribed subscriberCount unreadCount }",
        "a: isSubscribed b: subscriberCount c: unreadCount",
        "name",  # none annotated, then asked in a nested list of the same mailboxes' fields below
    ],
)
def test_mailbox_counts_answer_the_same_however_they_are_selected(world, selection):
    # Given a mailbox with unread messages for its subscriber
    add_thread(world.billing, world.other_patient, 3, world.subscriber)
    fragment = " fragment Facts on Mailbox { isSubscribed subscriberCount unreadCount }" if "Facts" in selection else ""
    api = Api.as_user(world.subscriber)
    # When the counts are selected directly, through fragments, aliased, or not at the root
    one = api.data(
        f"query($id: ID!) {{ mailbox(id: $id) {{ {selection} }} }}{fragment}", {"id": gid("Mailbox", world.billing.pk)}
    )
    listed = api.data(
        f"query($p: ID!) {{ mailboxes(practiceId: $p) {{ id {selection} }} }}{fragment}",
        {"p": gid("Practice", world.practice.pk)},
    )
    nested = api.data(
        "query($id: ID!) { mailbox(id: $id) { name conversations(first: 5) { edges { node { mailbox { "
        "isSubscribed subscriberCount unreadCount } } } } } }",
        {"id": gid("Mailbox", world.billing.pk)},
    )
    # Then every answer says the same
    facts = {"isSubscribed": True, "subscriberCount": 2, "unreadCount": 2}
    billing = next(m for m in listed["mailboxes"] if m["id"] == gid("Mailbox", world.billing.pk))
    if selection != "name":
        assert sorted(one["mailbox"].values()) == sorted(facts.values()), one
        assert sorted(v for k, v in billing.items() if k != "id") == sorted(facts.values()), billing
    assert nested["mailbox"]["conversations"]["edges"][0]["node"]["mailbox"] == facts


def _counted_lists(world) -> None:
    """Billing: 4 active (the world's and 3 more) and 2 archived threads; Scheduling (subscribed too): none."""
    MailboxSubscription.objects.create(mailbox=world.scheduling, user=world.subscriber)
    people = patients(world, 5)
    for patient in people[:3]:
        add_thread(world.billing, patient, 1, world.subscriber)
    for patient in people[3:]:
        archived = add_thread(world.billing, patient, 1, world.subscriber)
        Conversation.objects.filter(pk=archived.pk).update(status=ConversationStatus.ARCHIVED)


def _separate_counts(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"] and '"_total"' not in q["sql"]]


@pytest.mark.parametrize(
    ("arguments", "billing", "scheduling"),
    [
        ("first: 2", 4, 0),
        ("last: 2", 4, 0),
        ("first: 50", 4, 0),
        ("first: 2, status: ARCHIVED", 2, 0),
        ("first: 2, status: null", 6, 0),
        ("first: 2, unassigned: true", 4, 0),
    ],
)
@pytest.mark.parametrize("root", ["mailbox", "mailboxes"])
def test_a_conversation_list_s_total_count_comes_with_its_page(world, root, arguments, billing, scheduling):
    # Given mailboxes with active and archived threads, one of them empty
    _counted_lists(world)
    api = Api.as_user(world.subscriber)
    api.post("{ __typename }")
    selection = f"id conversations({arguments}) {{ totalCount edges {{ node {{ id }} }} }}"
    if root == "mailbox":
        query = f"query($m: ID!) {{ mailbox(id: $m) {{ {selection} }} }}"
        variables = {"m": gid("Mailbox", world.billing.pk)}
    else:
        query = f"query($p: ID!) {{ mailboxes(practiceId: $p) {{ {selection} }} }}"
        variables = {"p": gid("Practice", world.practice.pk)}
    # When a page of each mailbox's conversations is read with its totalCount
    with CaptureQueriesContext(connection) as captured:
        data = api.data(query, variables)
    # Then each total is the whole list's, read by no statement of its own
    boxes = [data["mailbox"]] if root == "mailbox" else data["mailboxes"]
    totals = {box["id"]: box["conversations"]["totalCount"] for box in boxes}
    expected = {gid("Mailbox", world.billing.pk): billing, gid("Mailbox", world.scheduling.pk): scheduling}
    assert totals == {key: expected[key] for key in totals}
    assert _separate_counts(captured) == []


def test_a_total_count_not_selected_is_not_counted_and_one_asked_of_an_empty_page_still_is(world):
    # Given a mailbox with threads
    _counted_lists(world)
    api = Api.as_user(world.subscriber)
    api.post("{ __typename }")
    variables = {"m": gid("Mailbox", world.billing.pk)}
    # When its page is read without totalCount
    with CaptureQueriesContext(connection) as captured:
        api.data("query($m: ID!) { mailbox(id: $m) { conversations(first: 2) { edges { node { id } } } } }", variables)
    # Then nothing is counted
    assert [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"]] == []
    # And a page of no rows (first: 0) still answers the total, by a count of its own
    with CaptureQueriesContext(connection) as captured:
        data = api.data("query($m: ID!) { mailbox(id: $m) { conversations(first: 0) { totalCount } } }", variables)
    assert data["mailbox"]["conversations"]["totalCount"] == 4
    assert len(_separate_counts(captured)) == 1
