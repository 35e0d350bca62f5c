"""Message search (SPEC §6): words in any order, by prefix, ignoring case and accents, newest first, only in the
viewer's subscribed mailboxes, with snippets that mark the matching words as plain text.

The same table runs on SQLite (FTS5) and on PostgreSQL (tsvector + GIN): CI runs this file on both databases, so
the two must give the same answers.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from core import actions, message_search
from core.models import AuditEvent, Conversation, Mailbox, MailboxSubscription, Message, PracticeSetting
from tests.graphql_client import Api, gid

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)

SEARCH = """
query($p: ID!, $q: String!, $m: ID, $first: Int, $after: String) {
  searchMessages(practiceId: $p, query: $q, mailboxId: $m, first: $first, after: $after) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges {
      cursor
      node { id sequence direction body sentAt senderName attachments { id filename } }
      conversation { id status unreadCount mailbox { id name } patient { id fullName } }
      snippet { text highlighted }
    }
  }
}
"""

BODIES = [
    "Your lab results are ready; everything looks normal.",
    "Can I move my appointment to next Tuesday morning?",
    "María García-López asked about the café's bill.",
    "Łukasz Øster paid the Straße invoice: $25.00",
    "O'Brien's follow-up is booked.",
    "<b>bold</b> & <script>alert(1)</script> results",
]


def add_message(conversation: Conversation, body: str, minutes_ago: int, *, from_patient: bool = True) -> Message:
    sequence = conversation.last_sequence + 1
    conversation.last_sequence = sequence
    conversation.portal_last_sequence += 1  # every message here is one the patient sees (no notes)
    conversation.save(update_fields=["last_sequence", "portal_last_sequence"])
    sender = {"sender_patient": conversation.patient} if from_patient else {"sender_user_id": _a_staff_member()}
    return Message.objects.create(
        conversation=conversation,
        sequence=sequence,
        portal_sequence=conversation.portal_last_sequence,
        direction="FROM_PATIENT" if from_patient else "TO_PATIENT",
        body=body,
        sent_at=NOW - dt.timedelta(minutes=minutes_ago),
        **sender,
    )


def _a_staff_member() -> int:
    return MailboxSubscription.objects.order_by("pk").values_list("user_id", flat=True).first()


@pytest.fixture
def thread(world) -> list[Message]:
    """BODIES in the Billing conversation, the first the oldest."""
    return [add_message(world.conversation, body, 100 - i) for i, body in enumerate(BODIES)]


def search(world, query: str, user=None, **variables):
    api = Api.as_user(user or world.subscriber)
    return api.post(SEARCH, {"p": gid("Practice", world.practice.pk), "q": query, **variables})


def bodies(world, query: str, user=None, **variables) -> list[str]:
    answer = search(world, query, user, **variables)
    assert not answer.get("errors"), answer["errors"]
    return [e["node"]["body"] for e in answer["data"]["searchMessages"]["edges"]]


def error(world, query: str, user=None, **variables) -> tuple[str, str]:
    answer = search(world, query, user, **variables)
    assert answer.get("errors"), answer
    assert answer["data"] is None
    return answer["errors"][0]["extensions"]["code"], answer["errors"][0]["message"]


LAB, APPOINTMENT, GARCIA, LUKASZ, OBRIEN, MARKUP = BODIES


ANSWERS = [
    ("results", [MARKUP, LAB]),  # newest first
    ("RESULT", [MARKUP, LAB]),
    ("res lab", [LAB]),  # words in any order, each a prefix
    ("lab res", [LAB]),
    ("resultados", []),
    ("ults", []),  # the start of a word, not any part of it
    ("garcia", [GARCIA]),
    ("GARCÍA", [GARCIA]),
    ("maría garc", [GARCIA]),
    ("lopez", [GARCIA]),  # each part of a hyphenated word
    ("garcía-lópez", [GARCIA]),
    ("cafe", [GARCIA]),
    ("café", [GARCIA]),
    ("lukasz", [LUKASZ]),  # Latin letters that NFKD keeps whole
    ("Łuk", [LUKASZ]),
    ("oster", [LUKASZ]),
    ("strasse", [LUKASZ]),
    ("straße", [LUKASZ]),
    ("25", [LUKASZ]),
    ("00", [LUKASZ]),
    ("$25.00", [LUKASZ]),
    ("brien", [OBRIEN]),
    ("o'brien", [OBRIEN]),
    ("follow-up", [OBRIEN]),
    ("up follow", [OBRIEN]),
    ("script alert", [MARKUP]),
    ("tues appoint", [APPOINTMENT]),
    ("appointment tuesday bill", []),  # every word must match the same message
    ("b", [MARKUP, OBRIEN, GARCIA]),  # one letter: every word it starts
    ("res results", [MARKUP, LAB]),  # a word that is a prefix of another asks nothing more
]


@pytest.mark.parametrize(("query", "expected"), ANSWERS)
def test_words_match_by_prefix_in_any_order_ignoring_case_and_accents(world, thread, query, expected):
    assert bodies(world, query) == expected


def test_the_index_follows_edited_and_new_messages(world, thread):
    Message.objects.filter(pk=thread[0].pk).update(body="Your prescription is at the pharmacy")
    add_message(world.conversation, "Another lab visit tomorrow", 1)

    assert bodies(world, "lab") == ["Another lab visit tomorrow"]
    assert bodies(world, "prescr pharm") == ["Your prescription is at the pharmacy"]


def test_only_messages_of_the_viewer_s_subscribed_active_mailboxes(world, thread):
    # given a Scheduling conversation and one of the other practice, both with a matching message
    scheduling = Conversation.objects.create(
        practice=world.practice, mailbox=world.scheduling, patient=world.other_patient, last_activity_at=NOW
    )
    add_message(scheduling, "Lab appointment moved", 0)
    outside = Conversation.objects.create(
        practice=world.other_practice,
        mailbox=world.outside_mailbox,
        patient=world.outside_patient,
        last_activity_at=NOW,
    )
    add_message(outside, "Lab results of the other practice", 0)

    # then the subscriber of Billing finds Billing's only, the unsubscribed staff member nothing
    assert bodies(world, "lab") == [LAB]
    assert bodies(world, "lab", world.staff) == []

    # when they subscribe to Scheduling, its message comes first (newest)
    actions.subscribe_to_mailbox(acting_user=world.subscriber, mailbox_id=world.scheduling.pk)
    assert bodies(world, "lab") == ["Lab appointment moved", LAB]

    # when Billing is deactivated, its messages leave the results
    Mailbox.objects.filter(pk=world.billing.pk).update(is_active=False)
    assert bodies(world, "lab") == ["Lab appointment moved"]


def test_mailbox_id_narrows_to_one_subscribed_mailbox(world, thread):
    actions.subscribe_to_mailbox(acting_user=world.subscriber, mailbox_id=world.scheduling.pk)
    scheduling = Conversation.objects.create(
        practice=world.practice, mailbox=world.scheduling, patient=world.other_patient, last_activity_at=NOW
    )
    add_message(scheduling, "Lab appointment moved", 0)

    assert bodies(world, "lab", m=gid("Mailbox", world.billing.pk)) == [LAB]
    assert bodies(world, "lab", m=gid("Mailbox", world.scheduling.pk)) == ["Lab appointment moved"]


@pytest.mark.parametrize(
    ("mailbox", "code"),
    [
        ("scheduling", "NOT_SUBSCRIBED"),
        ("deactivated", "MAILBOX_DEACTIVATED"),
        ("outside", "NOT_FOUND"),
        ("made-up", "NOT_FOUND"),
        ("malformed", "NOT_FOUND"),
    ],
)
def test_a_mailbox_the_viewer_cannot_search_is_refused(world, thread, mailbox, code):
    Mailbox.objects.filter(pk=world.billing.pk).update(is_active=mailbox != "deactivated")
    ids = {
        "scheduling": gid("Mailbox", world.scheduling.pk),
        "deactivated": gid("Mailbox", world.billing.pk),
        "outside": gid("Mailbox", world.outside_mailbox.pk),
        "made-up": gid("Mailbox", 987_654_321),
        "malformed": "not-an-id",
    }

    assert error(world, "lab", m=ids[mailbox])[0] == code


def test_another_practice_s_mailbox_answers_like_a_made_up_one(world, thread):
    answers = [search(world, "lab", world.outsider, m=gid("Mailbox", pk)) for pk in (world.billing.pk, 987_654_321)]
    answers = [
        {**a, "errors": [{k: v for k, v in e.items() if k != "locations"} for e in a["errors"]]} for a in answers
    ]
    assert answers[0] == answers[1]
    assert answers[0]["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_pages_follow_the_cursor_newest_first_without_gaps_or_repeats(world):
    # given 7 matching messages, three of them sent in the same second
    for i in range(7):
        add_message(world.conversation, f"Refill number {i}", 10 - (i if i < 4 else 4))

    seen, after = [], None
    for _ in range(4):
        answer = search(world, "refill", first=3, after=after)
        assert not answer.get("errors"), answer["errors"]
        page = answer["data"]["searchMessages"]
        seen += [e["node"]["body"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert sorted(seen) == sorted(f"Refill number {i}" for i in range(7))
    assert len(seen) == 7
    assert seen[:3] == ["Refill number 6", "Refill number 5", "Refill number 4"]  # same second: newest id first
    assert seen[3:] == ["Refill number 3", "Refill number 2", "Refill number 1", "Refill number 0"]


def test_each_edge_carries_its_message_conversation_and_snippet(world, thread):
    answer = search(world, "garc cafe")
    (edge,) = answer["data"]["searchMessages"]["edges"]

    assert edge["node"]["body"] == GARCIA
    assert edge["node"]["senderName"] == "María García"
    assert edge["conversation"]["id"] == gid("Conversation", world.conversation.pk)
    assert edge["conversation"]["mailbox"]["name"] == "Billing"
    assert edge["conversation"]["patient"]["fullName"] == "María García"
    assert edge["snippet"] == [
        {"text": "María ", "highlighted": False},
        {"text": "García", "highlighted": True},
        {"text": "-López asked about the ", "highlighted": False},
        {"text": "café", "highlighted": True},
        {"text": "'s bill.", "highlighted": False},
    ]


def test_markup_in_a_body_is_plain_text_in_the_snippet(world, thread):
    (edge,) = search(world, "script")["data"]["searchMessages"]["edges"]

    assert "".join(s["text"] for s in edge["snippet"]) == MARKUP
    assert [s["text"] for s in edge["snippet"] if s["highlighted"]] == ["script", "script"]


def test_a_long_message_shows_the_part_around_its_first_match(world):
    body = ("Lorem ipsum dolor sit amet. " * 20) + "The invoice number is 4711. " + ("Consectetur adipiscing. " * 20)
    add_message(world.conversation, body, 1)

    (edge,) = search(world, "invoice")["data"]["searchMessages"]["edges"]
    text = "".join(s["text"] for s in edge["snippet"])

    assert text.startswith("…")
    assert text.endswith("…")
    assert "The invoice number is 4711." in text
    assert len(text) < 300
    assert [s["text"] for s in edge["snippet"] if s["highlighted"]] == ["invoice"]


@pytest.mark.parametrize(
    ("variables", "field_hint"),
    [
        ({"q": ""}, "at least one word"),
        ({"q": "   "}, "at least one word"),
        ({"q": "?!  -- ..."}, "at least one word"),
        ({"q": "a" * 201}, "at most 200"),
        ({"q": " ".join(f"w{i}" for i in range(11))}, "at most 10"),
        ({"first": 0}, "between 1 and 50"),
        ({"first": -1}, "between 1 and 50"),
        ({"first": 51}, "between 1 and 50"),
        ({"after": "not a cursor"}, "cursor"),
        ({"after": "WzFd"}, "cursor"),  # [1]: the wrong shape
        ({"after": "WyJub3QgYSB0aW1lIiwgMV0="}, "cursor"),  # ["not a time", 1]
    ],
)
def test_bad_input_is_a_validation_error_saying_what_to_fix(world, thread, variables, field_hint):
    query = variables.pop("q", "lab")

    code, message = error(world, query, **variables)

    assert code == "VALIDATION_ERROR"
    assert field_hint in message


def test_staff_only_with_the_workbench_on(world, thread):
    patient_answer = Api.as_patient(world.patient).post(SEARCH, {"p": gid("Practice", world.practice.pk), "q": "lab"})
    assert patient_answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    PracticeSetting.objects.filter(practice=world.practice, key="ui.pat_messages_mailbox.enable").update(value="F")
    assert error(world, "lab")[0] == "FEATURE_DISABLED"


def test_a_search_is_audited_with_its_query_text_per_patient_shown(world, thread):
    scheduling = Conversation.objects.create(
        practice=world.practice, mailbox=world.scheduling, patient=world.other_patient, last_activity_at=NOW
    )
    add_message(scheduling, "Lab appointment moved", 0)
    actions.subscribe_to_mailbox(acting_user=world.subscriber, mailbox_id=world.scheduling.pk)

    bodies(world, "Lab")
    bodies(world, "nothing-matches-this")

    rows = list(AuditEvent.objects.filter(operation="searchMessages").order_by("pk"))
    assert [(r.query, r.patient_id, r.action, r.actor_user_id, r.practice_id) for r in rows] == [
        ("Lab", world.other_patient.pk, "EXECUTE", world.subscriber.pk, world.practice.pk),
        ("Lab", world.patient.pk, "EXECUTE", world.subscriber.pk, world.practice.pk),
        ("nothing-matches-this", None, "EXECUTE", world.subscriber.pk, world.practice.pk),
    ]
    assert rows[1].detail["message_ids"] == [thread[0].pk]
    assert rows[2].detail["results"] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("synchronous", [False, True])
def test_a_search_s_audit_rows_commit_in_their_own_transaction(world, thread, settings, synchronous):
    # given no transaction around the request (as served), with or without waiting for the disk flush
    settings.MAILBOX = {**settings.MAILBOX, "AUDIT_READ_SYNCHRONOUS_COMMIT": synchronous}

    bodies(world, "lab")

    # then the row is there, and the relaxed commit did not outlive its transaction on this connection
    assert AuditEvent.objects.get(operation="searchMessages").query == "lab"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


def test_a_refused_search_is_audited_with_its_query_text(world, thread):
    error(world, "lab", m=gid("Mailbox", world.scheduling.pk))

    row = AuditEvent.objects.get(operation="searchMessages")
    assert (row.outcome, row.query, row.action) == ("NOT_SUBSCRIBED", "lab", "EXECUTE")


def test_searching_writes_nothing_but_its_audit_rows(world, thread):
    counts = (Message.objects.count(), Conversation.objects.count())

    bodies(world, "lab")

    assert (Message.objects.count(), Conversation.objects.count()) == counts


def _statement_hits(world, first: int, count: int) -> None:
    for i in range(first, first + count):
        patient = world.patient if i % 2 == 0 else world.other_patient
        mailbox = world.billing if i % 3 else world.scheduling
        conversation, _ = Conversation.objects.get_or_create(
            practice=world.practice, mailbox=mailbox, patient=patient, defaults={"last_activity_at": NOW}
        )
        add_message(conversation, f"Statement {i} is ready", i)


def test_a_page_of_results_costs_the_same_queries_for_2_or_12_hits(world, django_assert_max_num_queries):
    # given 2 matching messages over conversations of two mailboxes and two patients
    MailboxSubscription.objects.get_or_create(mailbox=world.scheduling, user=world.subscriber)
    _statement_hits(world, 0, 2)
    api = Api.as_user(world.subscriber)
    variables = {"p": gid("Practice", world.practice.pk), "q": "statem"}
    api.post(SEARCH, variables)  # the token's first use records itself once
    with CaptureQueriesContext(connection) as two:
        answer = api.post(SEARCH, variables)
    assert len(answer["data"]["searchMessages"]["edges"]) == 2

    # when 10 more match, then the page of 12 costs the same statements
    _statement_hits(world, 2, 10)
    with CaptureQueriesContext(connection) as twelve:
        answer = api.post(SEARCH, variables)
    assert len(answer["data"]["searchMessages"]["edges"]) == 12
    assert len(twelve.captured_queries) == len(two.captured_queries)
    # token, membership, (PostgreSQL: the words' lexemes,) the search, messages with conversations, attachments,
    # the audit rows
    assert len(two.captured_queries) <= (7 if connection.vendor == "postgresql" else 6)


def test_a_page_without_attachments_or_mailbox_facts_does_not_load_them(world):
    # given two hits in two mailboxes, and a selection with neither attachments nor a mailbox's counts
    MailboxSubscription.objects.get_or_create(mailbox=world.scheduling, user=world.subscriber)
    _statement_hits(world, 0, 2)
    api = Api.as_user(world.subscriber)
    query = """query($p: ID!) { searchMessages(practiceId: $p, query: "statem") {
        edges { node { id body } conversation { id mailbox { id name } patient { id fullName } } } } }"""
    api.post(query, {"p": gid("Practice", world.practice.pk)})  # the token's first use records itself once

    # when searching
    with CaptureQueriesContext(connection) as captured:
        edges = api.data(query, {"p": gid("Practice", world.practice.pk)})["searchMessages"]["edges"]

    # then the page is the search (on PostgreSQL after its words' lexemes), its messages and the audit rows after
    # the sign-in checks: nothing else
    statements = [q["sql"] for q in captured.captured_queries]
    assert len(edges) == 2
    assert {e["conversation"]["mailbox"]["name"] for e in edges} == {world.billing.name, world.scheduling.name}
    assert len(statements) == (6 if connection.vendor == "postgresql" else 5), statements
    assert not [s for s in statements if "core_attachment" in s or s.startswith('SELECT "core_mailbox"')]


def test_rare_words_are_found_past_the_newest_messages_checked_first(world, thread, monkeypatch):
    # given more messages than the window PostgreSQL checks first, the match the oldest of them
    monkeypatch.setattr(message_search, "RECENT_WINDOW", 3)
    for i in range(5):
        add_message(world.conversation, f"Filler message {i}", 50 - i)

    assert bodies(world, "normal") == [LAB]
    assert bodies(world, "results", first=1) == [MARKUP]
    assert bodies(world, "fill", first=2) == ["Filler message 4", "Filler message 3"]


def test_timestamps_are_compared_in_the_database_s_own_format(world):
    # a message at a whole second and one a microsecond later: the cursor of the first lets the second through
    a = add_message(world.conversation, "Fax one", 0)
    b = add_message(world.conversation, "Fax two", 0)
    Message.objects.filter(pk=b.pk).update(sent_at=a.sent_at + dt.timedelta(microseconds=1))

    first = search(world, "fax", first=1)["data"]["searchMessages"]
    second = search(world, "fax", first=1, after=first["pageInfo"]["endCursor"])["data"]["searchMessages"]

    assert [e["node"]["body"] for e in first["edges"] + second["edges"]] == ["Fax two", "Fax one"]
    assert connection.vendor in ("sqlite", "postgresql")
    assert timezone.is_aware(Message.objects.get(pk=a.pk).sent_at)


def test_a_result_s_conversation_answers_as_the_conversation_query_does(world):
    # given two unread patient messages in the Billing conversation
    for body in ("Question about my invoice", "Second invoice question"):
        actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body=body)
    api = Api.as_user(world.subscriber)
    fields = "id status unreadCount lastMessageAt mailbox { id name unreadCount } patient { id fullName }"

    edges = api.data(
        f'query($p: ID!) {{ searchMessages(practiceId: $p, query: "invoice") '
        f"{{ edges {{ conversation {{ {fields} }} }} }} }}",
        {"p": gid("Practice", world.practice.pk)},
    )["searchMessages"]["edges"]
    opened = api.data(
        f"query($c: ID!) {{ conversation(id: $c) {{ {fields} }} }}", {"c": gid("Conversation", world.conversation.pk)}
    )

    assert [e["conversation"] for e in edges] == [opened["conversation"]] * 2
    assert opened["conversation"]["unreadCount"] == 2


def test_a_result_s_message_answers_as_the_thread_shows_it(world):
    # given a thread with a patient's question, a staff answer and a staff message withdrawn with a reason
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Invoice question")
    conversation = world.conversation.pk
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=conversation, body="Invoice answered")
    wrong = actions.send_staff_message(acting_user=world.mailbox_admin, conversation_id=conversation, body="Invoice 2")
    actions.retract_message(acting_user=world.mailbox_admin, message_id=wrong.pk, reason="wrong patient")
    api = Api.as_user(world.subscriber)
    fields = "id sequence direction body sentAt senderName isAutomatic retracted { at reason by { id fullName } }"

    # when the messages are found by a search and read in their thread
    edges = api.data(
        f'query($p: ID!) {{ searchMessages(practiceId: $p, query: "invoice") {{ edges {{ node {{ {fields} }} }} }} }}',
        {"p": gid("Practice", world.practice.pk)},
    )["searchMessages"]["edges"]
    thread = api.data(
        f"query($c: ID!) {{ conversation(id: $c) {{ messages(last: 10) {{ edges {{ node {{ {fields} }} }} }} }} }}",
        {"c": gid("Conversation", conversation)},
    )["conversation"]["messages"]["edges"]

    # then each answers the same: senders (patient and staff) and who withdrew one (read without joins)
    assert [e["node"] for e in edges] == [e["node"] for e in reversed(thread)]
    names = [e["node"]["senderName"] for e in edges]
    assert names == [world.mailbox_admin.display_name(), world.subscriber.display_name(), "María García"]
    assert edges[0]["node"]["retracted"]["by"]["id"] == gid("User", world.mailbox_admin.pk)


# Words of a few letters in either case and digits, between any ASCII punctuation and spacing, so that query
# words often start them.
_ascii_text = st.lists(
    st.text(alphabet="abAB1_", min_size=1, max_size=4) | st.text(alphabet=" .,'-$_\n!", min_size=1, max_size=2),
    max_size=20,
).map("".join)
_query_word = st.text(alphabet="ab1", min_size=1, max_size=2)


@given(body=_ascii_text, words=st.lists(_query_word, min_size=1, max_size=3))
def test_an_ascii_body_is_highlighted_as_the_general_path_does(body, words):
    general = [(s, e) for s, e in message_search._words_with_spans(body) if message_search._matches(body[s:e], words)]
    assert message_search._matching_spans(body, words) == general


def test_a_word_no_message_has_is_answered_without_searching(world, thread):
    # given a search whose second word is a prefix of no word of any message
    assert bodies(world, "normal") == [LAB]
    with CaptureQueriesContext(connection) as captured:
        found = bodies(world, "normal zzyzx")

    # then nothing is found, and on PostgreSQL only the words' lexemes were read: no message was scanned
    assert found == []
    statements = [q["sql"] for q in captured.captured_queries]
    if connection.vendor == "postgresql":
        assert not [s for s in statements if "@@" in s], statements
