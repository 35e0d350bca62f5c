"""Conversations and messages over HTTP: unread counts, archive and reactivation, the chart summary,
idempotent sends, and keyset pagination in both directions."""

from __future__ import annotations

import base64
import datetime as dt
import json
from io import StringIO

import pytest
from django.utils import timezone

from core.models import AuditEvent, Conversation, Message
from tests.conftest import make_patient
from tests.graphql_client import Api, gid

PAGE_INFO = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
MESSAGES = (
    "query($c: ID!, $first: Int, $after: String, $last: Int, $before: String) { conversation(id: $c) { "
    f"messages(first: $first, after: $after, last: $last, before: $before) {{ {PAGE_INFO} "
    "edges { cursor node { sequence } } } } }"
)


def portal_send(world, body: str, patient=None, mailbox=None) -> dict:
    return Api.as_patient(patient or world.patient).data(
        "mutation($m: ID!, $b: String) { sendPortalMessage(mailboxId: $m, body: $b) { id sequence direction } }",
        {"m": gid("Mailbox", (mailbox or world.billing).pk), "b": body},
    )["sendPortalMessage"]


def unread(api: Api, world) -> tuple[int, int]:
    data = api.data(
        "query($m: ID!) { mailbox(id: $m) { unreadCount conversations { edges { node { unreadCount } } } } }",
        {"m": gid("Mailbox", world.billing.pk)},
    )["mailbox"]
    return data["unreadCount"], data["conversations"]["edges"][0]["node"]["unreadCount"]


def test_patient_messages_raise_unread_counts_and_mark_read_brings_them_to_zero(world):
    subscriber, admin = Api.as_user(world.subscriber), Api.as_user(world.mailbox_admin)
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    assert unread(subscriber, world) == (0, 0)
    # when the patient writes twice
    portal_send(world, "one")
    portal_send(world, "two")
    # then every subscriber sees two unread, per mailbox and per conversation
    assert unread(subscriber, world) == (2, 2)
    assert unread(admin, world) == (2, 2)
    # when one subscriber marks the conversation read
    marked = subscriber.data(
        "mutation($c: ID!) { markConversationRead(conversationId: $c) { unreadCount } }", conversation
    )
    # then it is 0 for them only
    assert marked["markConversationRead"]["unreadCount"] == 0
    assert unread(subscriber, world) == (0, 0)
    assert unread(admin, world) == (2, 2)
    # and a new patient message counts again; the other subscriber's reply reads the thread for them
    portal_send(world, "three")
    assert unread(subscriber, world) == (1, 1)
    admin.data('mutation($c: ID!) { sendMessage(conversationId: $c, body: "On it") { sequence } }', conversation)
    assert unread(admin, world) == (0, 0)
    assert unread(subscriber, world) == (1, 1)


MAILBOXES_WITH_THREADS = """
query($practiceId: ID!) {
  mailboxes(practiceId: $practiceId) {
    id name status isSubscribed subscriberCount unreadCount
    subscribers { id fullName }
    conversations(first: 10) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node {
        id status lastMessageAt unreadCount patient { fullName accountNumber }
        messages(last: 5) {
          totalCount edges { node { sequence direction body senderName attachments { id url } } }
        }
      } }
    }
  }
}
"""


def test_subscriber_lists_mailboxes_and_reads_a_thread(world):
    patient_api = Api.as_patient(world.patient)
    sent = patient_api.data(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "My bill is wrong") { sequence direction } }',
        {"m": gid("Mailbox", world.billing.pk)},
    )
    assert sent["sendPortalMessage"] == {"sequence": 1, "direction": "FROM_PATIENT"}

    api = Api.as_user(world.subscriber)
    answer = api.post(MAILBOXES_WITH_THREADS, {"practiceId": gid("Practice", world.practice.pk)})
    # Scheduling is not subscribed: its conversations are refused, the rest of the answer stands.
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["NOT_SUBSCRIBED"]
    data = answer["data"]
    billing = next(m for m in data["mailboxes"] if m["name"] == "Billing")
    assert billing["isSubscribed"] is True
    assert billing["unreadCount"] == 1
    conversation = billing["conversations"]["edges"][0]["node"]
    assert conversation["unreadCount"] == 1
    assert conversation["messages"]["edges"][0]["node"]["body"] == "My bill is wrong"


MAILBOX_UNREAD = "query($m: ID!) { mailbox(id: $m) { unreadCount } }"


def mailbox_unread(api: Api, world) -> int:
    return api.data(MAILBOX_UNREAD, {"m": gid("Mailbox", world.billing.pk)})["mailbox"]["unreadCount"]


def test_mailbox_unread_count_covers_only_the_active_conversations_it_shows(world):
    # given two patients' unread messages in Billing: María's (2, then archived) and John's (1)
    subscriber, admin = Api.as_user(world.subscriber), Api.as_user(world.mailbox_admin)
    portal_send(world, "one")
    portal_send(world, "two")
    portal_send(world, "three", patient=world.other_patient)
    admin.data(
        "mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }",
        {"c": gid("Conversation", world.conversation.pk)},
    )
    assert (mailbox_unread(subscriber, world), mailbox_unread(admin, world)) == (3, 1)

    # when María's conversation is archived
    subscriber.data(
        "mutation($c: ID!) { archiveConversation(conversationId: $c) { status } }",
        {"c": gid("Conversation", world.conversation.pk)},
    )

    # then the mailbox badge counts only John's, the one the mailbox view lists, for everyone
    assert (mailbox_unread(subscriber, world), mailbox_unread(admin, world)) == (1, 1)
    archived = subscriber.data(
        "query($m: ID!) { mailbox(id: $m) { conversations(status: ARCHIVED) { edges { node { unreadCount } } } } }",
        {"m": gid("Mailbox", world.billing.pk)},
    )["mailbox"]["conversations"]["edges"]
    assert [e["node"]["unreadCount"] for e in archived] == [2]  # the conversation itself still says so
    # and a read of the archived thread leaves the mailbox count alone
    subscriber.data(
        "mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }",
        {"c": gid("Conversation", world.conversation.pk)},
    )
    assert mailbox_unread(subscriber, world) == 1

    # when the patient writes again, the conversation is active and its unread messages count again
    portal_send(world, "four")
    assert (mailbox_unread(subscriber, world), mailbox_unread(admin, world)) == (2, 2)

    # and archive + reactivate from the archive (or a staff send) bring back exactly what was unread
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    subscriber.data("mutation($c: ID!) { archiveConversation(conversationId: $c) { status } }", conversation)
    assert (mailbox_unread(subscriber, world), mailbox_unread(admin, world)) == (1, 1)
    admin.data("mutation($c: ID!) { unarchiveConversation(conversationId: $c) { status } }", conversation)
    assert (mailbox_unread(subscriber, world), mailbox_unread(admin, world)) == (2, 2)
    subscriber.data("mutation($c: ID!) { archiveConversation(conversationId: $c) { status } }", conversation)
    admin.data('mutation($c: ID!) { sendMessage(conversationId: $c, body: "Noted") { id } }', conversation)
    assert (mailbox_unread(subscriber, world), mailbox_unread(admin, world)) == (2, 1)


def test_demo_scheduling_badge_counts_only_what_its_mailbox_view_shows(db):
    # given the demo, whose only Scheduling thread is archived with two patient messages Mia never read
    from django.core.management import call_command

    from core.models import User

    call_command("load_demo", stdout=StringIO())
    mia = Api.as_user(User.objects.get(username="mia"))
    data = mia.data(
        "query($p: ID!) { mailboxes(practiceId: $p) { name unreadCount "
        "conversations { edges { node { unreadCount } } } } }",
        {"p": gid("Practice", Conversation.objects.get(patient__account_number="N-10002").practice_id)},
    )["mailboxes"]

    # then every badge is the sum of the unread counts of the conversations its view lists
    for row in data:
        assert row["unreadCount"] == sum(e["node"]["unreadCount"] for e in row["conversations"]["edges"]), row
    assert {r["name"]: r["unreadCount"] for r in data}["Scheduling"] == 0


def test_archived_conversation_is_reactivated_by_patient_or_staff_message_or_unarchive(world):
    subscriber = Api.as_user(world.subscriber)
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    lists = (
        "query($m: ID!) { mailbox(id: $m) { active: conversations { totalCount } "
        "archived: conversations(status: ARCHIVED) { totalCount } all: conversations(status: null) { totalCount } } }"
    )

    def counts() -> tuple[int, int, int]:
        box = subscriber.data(lists, {"m": gid("Mailbox", world.billing.pk)})["mailbox"]
        return box["active"]["totalCount"], box["archived"]["totalCount"], box["all"]["totalCount"]

    archive = "mutation($c: ID!) { archiveConversation(conversationId: $c) { status } }"
    # when a subscriber archives it, it is archived for everyone
    assert subscriber.data(archive, conversation)["archiveConversation"]["status"] == "ARCHIVED"
    assert counts() == (0, 1, 1)
    assert (
        Api.as_user(world.mailbox_admin).data("query($c: ID!) { conversation(id: $c) { status } }", conversation)[
            "conversation"
        ]["status"]
        == "ARCHIVED"
    )
    # and a patient message makes it active again
    portal_send(world, "Any news?")
    assert counts() == (1, 0, 1)
    # so does a staff message
    subscriber.data(archive, conversation)
    subscriber.data('mutation($c: ID!) { sendMessage(conversationId: $c, body: "Yes") { id } }', conversation)
    assert counts() == (1, 0, 1)
    # and reactivating by hand
    subscriber.data(archive, conversation)
    reactivated = subscriber.data(
        "mutation($c: ID!) { unarchiveConversation(conversationId: $c) { status } }", conversation
    )
    assert reactivated["unarchiveConversation"]["status"] == "ACTIVE"


def test_any_staff_member_works_a_patients_conversations_from_the_chart_without_subscribing(world):
    # given a staff member subscribed to nothing, and a patient thread in Billing
    portal_send(world, "Question about my bill")
    staff = Api.as_user(world.staff)
    # when they open the patient's chart
    chart = staff.data(
        "query($x: ID!) { patient(id: $x) { fullName conversations { id status mailbox { name isSubscribed } "
        "messages(last: 10) { edges { node { body direction senderName } } } } } }",
        {"x": gid("Patient", world.patient.pk)},
    )["patient"]
    # then they read every conversation across mailboxes
    assert chart["fullName"] == "María García"
    [thread] = chart["conversations"]
    assert thread["mailbox"] == {"name": "Billing", "isSubscribed": False}
    assert thread["messages"]["edges"][0]["node"] == {
        "body": "Question about my bill",
        "direction": "FROM_PATIENT",
        "senderName": "María García",
    }
    # and answer from the chart, and start a conversation in a mailbox they do not follow
    conversation = {"c": thread["id"]}
    sent = staff.data(
        'mutation($c: ID!) { sendMessage(conversationId: $c, body: "Checking", via: CHART_SUMMARY) { senderName } }',
        conversation,
    )
    assert sent["sendMessage"]["senderName"] == "Stan Staff"
    started = staff.data(
        "mutation($m: ID!, $x: ID!) { startConversation(mailboxId: $m, patientId: $x, via: CHART_SUMMARY) "
        "{ mailbox { name } patient { accountNumber } } }",
        {"m": gid("Mailbox", world.scheduling.pk), "x": gid("Patient", world.patient.pk)},
    )
    assert started["startConversation"] == {"mailbox": {"name": "Scheduling"}, "patient": {"accountNumber": "A-1001"}}
    # while the same from the mailbox view needs a subscription
    assert staff.error_code(
        'mutation($c: ID!) { sendMessage(conversationId: $c, body: "x") { id } }', conversation
    ) == ("NOT_SUBSCRIBED")
    # and the trail records where the access came from
    assert AuditEvent.objects.filter(actor_user=world.staff, operation="sendMessage", via="CHART_SUMMARY").count() == 1


def test_starting_an_existing_conversation_returns_it(world):
    subscriber = Api.as_user(world.subscriber)
    start = "mutation($m: ID!, $x: ID!) { startConversation(mailboxId: $m, patientId: $x) { id } }"
    ids = {"m": gid("Mailbox", world.billing.pk), "x": gid("Patient", world.patient.pk)}
    assert subscriber.data(start, ids)["startConversation"]["id"] == gid("Conversation", world.conversation.pk)
    assert Conversation.objects.filter(mailbox=world.billing).count() == 1


def test_a_repeated_client_message_id_returns_the_first_message(world):
    subscriber = Api.as_user(world.subscriber)
    send = (
        'mutation($c: ID!, $b: String) { sendMessage(conversationId: $c, body: $b, clientMessageId: "tab-1:42") '
        "{ id sequence body clientMessageId } }"
    )
    conversation = gid("Conversation", world.conversation.pk)
    first = subscriber.data(send, {"c": conversation, "b": "Your refund is on its way."})["sendMessage"]
    again = subscriber.data(send, {"c": conversation, "b": "Your refund is on its way."})["sendMessage"]
    assert again == first
    assert first["clientMessageId"] == "tab-1:42"
    assert Message.objects.filter(conversation=world.conversation).count() == 1
    repeated_portal = [
        Api.as_patient(world.patient).data(
            'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "Thanks", clientMessageId: "p-9") { id } }',
            {"m": gid("Mailbox", world.billing.pk)},
        )
        for _ in range(2)
    ]
    assert repeated_portal[0] == repeated_portal[1]


def seven_messages(world) -> dict:
    for n in range(7):
        portal_send(world, f"message {n + 1}")
    return {"c": gid("Conversation", world.conversation.pk)}


def page(api: Api, variables: dict) -> tuple[list[int], dict, int]:
    messages = api.data(MESSAGES, variables)["conversation"]["messages"]
    return [e["node"]["sequence"] for e in messages["edges"]], messages["pageInfo"], messages["totalCount"]


def test_last_then_before_pages_back_in_time_from_the_newest_messages(world):
    variables = seven_messages(world)
    api = Api.as_user(world.subscriber)
    # the newest two
    sequences, info, total = page(api, {**variables, "last": 2})
    assert (sequences, info["hasPreviousPage"], info["hasNextPage"], total) == ([6, 7], True, False, 7)
    # then back in time, two at a time
    seen = [sequences]
    while info["hasPreviousPage"]:
        sequences, info, _ = page(api, {**variables, "last": 2, "before": info["startCursor"]})
        assert info["hasNextPage"] is True
        seen.append(sequences)
    assert seen == [[6, 7], [4, 5], [2, 3], [1]]


def test_first_then_after_pages_forward_from_the_oldest_messages(world):
    variables = seven_messages(world)
    api = Api.as_user(world.subscriber)
    sequences, info, _ = page(api, {**variables, "first": 3})
    assert (sequences, info["hasNextPage"], info["hasPreviousPage"]) == ([1, 2, 3], True, False)
    sequences, info, _ = page(api, {**variables, "first": 3, "after": info["endCursor"]})
    assert (sequences, info["hasNextPage"], info["hasPreviousPage"]) == ([4, 5, 6], True, True)
    sequences, info, _ = page(api, {**variables, "first": 3, "after": info["endCursor"]})
    assert (sequences, info["hasNextPage"], info["hasPreviousPage"]) == ([7], False, True)
    # an edge's cursor resumes right after it
    assert page(api, {**variables, "first": 1, "after": info["startCursor"]})[0] == []


def test_conversations_page_most_recent_activity_first_with_stable_cursors(world):
    # given five threads in Billing with distinct activity times
    now = timezone.now()
    Conversation.objects.filter(pk=world.conversation.pk).update(last_activity_at=now - dt.timedelta(hours=10))
    for n in range(4):
        patient = make_patient(world.practice, f"P-{n}", f"Pat{n}", "Page")
        Conversation.objects.create(
            practice=world.practice,
            mailbox=world.billing,
            patient=patient,
            last_activity_at=now - dt.timedelta(hours=n),
        )
    api = Api.as_user(world.subscriber)
    query = (
        "query($m: ID!, $after: String) { mailbox(id: $m) { conversations(first: 2, after: $after) { "
        f"{PAGE_INFO} edges {{ node {{ patient {{ accountNumber }} }} }} }} }} }}"
    )
    seen, after = [], None
    while True:
        connection = api.data(query, {"m": gid("Mailbox", world.billing.pk), "after": after})["mailbox"][
            "conversations"
        ]
        assert connection["totalCount"] == 5
        seen.append([e["node"]["patient"]["accountNumber"] for e in connection["edges"]])
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert seen == [["P-0", "P-1"], ["P-2", "P-3"], ["A-1001"]]


def test_page_sizes_are_capped_at_page_max_size(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "PAGE_MAX_SIZE": 3}
    variables = seven_messages(world)
    sequences, info, total = page(Api.as_user(world.subscriber), {**variables, "first": 1000})
    assert (sequences, info["hasNextPage"], total) == ([1, 2, 3], True, 7)


def _cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


@pytest.mark.parametrize(
    "arguments",
    [
        {"first": 2, "last": 2},
        {"first": -1},
        {"first": 2, "after": "not a cursor"},
        {"first": 2, "after": _cursor(["seven"])},
        {"first": 2, "after": _cursor([10**30])},
        {"first": 2, "after": _cursor([True])},
        {"first": 2, "after": _cursor([1, 2])},
        {"last": 2, "before": _cursor([{"sequence": 3}])},
    ],
    ids=["first-and-last", "negative", "garbage", "text", "huge", "boolean", "arity", "object"],
)
def test_bad_paging_arguments_are_validation_errors_not_server_errors(world, arguments):
    variables = seven_messages(world)
    answer = Api.as_user(world.subscriber).post(MESSAGES, {**variables, **arguments})
    assert answer["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR", answer


def test_a_bad_conversation_cursor_is_a_validation_error(world):
    api = Api.as_user(world.subscriber)
    query = "query($m: ID!, $a: String) { mailbox(id: $m) { conversations(first: 2, after: $a) { totalCount } } }"
    for cursor in (_cursor(["yesterday", 1]), _cursor(["2026-01-01T00:00:00", 1]), _cursor([1, "x"])):
        answer = api.post(query, {"m": gid("Mailbox", world.billing.pk), "a": cursor})
        assert answer["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR", cursor


def test_nested_message_pages_of_a_list_of_conversations_are_each_the_newest_in_order(world):
    # given two threads of the patient, in Billing (3 messages) and Scheduling (2 messages)
    for n in range(3):
        portal_send(world, f"billing {n + 1}")
    for n in range(2):
        portal_send(world, f"scheduling {n + 1}", mailbox=world.scheduling)
    # when the chart lists them with the newest two messages of each
    chart = Api.as_user(world.staff).data(
        "query($x: ID!) { patient(id: $x) { conversations { mailbox { name } messages(last: 2) { totalCount "
        "pageInfo { hasPreviousPage hasNextPage } edges { node { body } } } } } }",
        {"x": gid("Patient", world.patient.pk)},
    )["patient"]["conversations"]
    # then each thread has its own newest page, oldest first, most recent thread first
    assert [
        (c["mailbox"]["name"], [e["node"]["body"] for e in c["messages"]["edges"]], c["messages"]["totalCount"])
        for c in chart
    ] == [("Scheduling", ["scheduling 1", "scheduling 2"], 2), ("Billing", ["billing 2", "billing 3"], 3)]
    assert [c["messages"]["pageInfo"]["hasPreviousPage"] for c in chart] == [False, True]


def test_a_patient_message_names_its_own_sender_even_when_not_the_conversations_patient(world):
    # Pages of messages take a patient sender from the conversation's own patient row; no rule ties the two.
    portal_send(world, "mine")
    portal_send(world, "also mine")
    Message.objects.filter(conversation=world.conversation, sequence=2).update(sender_patient=world.other_patient)
    page = "messages(last: 5) { edges { node { sequence senderName } } }"
    listed = Api.as_user(world.subscriber).data(
        f"query($m: ID!) {{ mailbox(id: $m) {{ conversations {{ edges {{ node {{ {page} }} }} }} }} }}",
        {"m": gid("Mailbox", world.billing.pk)},
    )["mailbox"]["conversations"]["edges"][0]["node"]["messages"]["edges"]
    opened = Api.as_user(world.subscriber).data(
        f"query($c: ID!) {{ conversation(id: $c) {{ {page} }} }}", {"c": gid("Conversation", world.conversation.pk)}
    )["conversation"]["messages"]["edges"]
    expected = [{"sequence": 1, "senderName": "María García"}, {"sequence": 2, "senderName": "John Smith"}]
    assert [e["node"] for e in listed] == expected
    assert [e["node"] for e in opened] == expected
