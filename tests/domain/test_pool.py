"""Working the pool (SPEC §6): assignment, priority, waiting time, stats, internal notes, quick replies.

Every rule through the public API, with the database as the witness: what changed, what did not, what was audited.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import actions, waiting
from core.models import (
    AssignmentChange,
    AuditEvent,
    Conversation,
    ConversationStatus,
    Event,
    EventKind,
    MailboxSubscription,
    Message,
    QuickReply,
    ReadState,
    StaffResponse,
)
from tests.conftest import make_patient, make_user
from tests.graphql_client import Api, gid

pytestmark = pytest.mark.django_db

ASSIGN = """mutation($c: ID!, $u: ID, $r: String) { assignConversation(conversationId: $c, userId: $u, reason: $r) {
  id assignee { id fullName } assignmentHistory { assignee { id } previousAssignee { id } changedBy { id } reason at }
} }"""
PRIORITY = (
    "mutation($c: ID!, $p: ConversationPriority!) { setConversationPriority(conversationId: $c, priority: $p) "
    "{ priority } }"
)
NOTE = """mutation($c: ID!, $b: String, $k: String) {
  addInternalNote(conversationId: $c, body: $b, clientMessageId: $k) { id sequence direction body senderName } }"""
LIST = """query($m: ID!, $a: ID, $u: Boolean, $p: ConversationPriority, $w: Boolean, $o: ConversationOrder!) {
  mailbox(id: $m) { conversations(assigneeId: $a, unassigned: $u, priority: $p, waitingOnly: $w, order: $o, first: 50) {
    totalCount edges { node { id priority waitingSince assignee { id } patient { fullName } } } } } }"""
STATS = """query($m: ID!, $s: DateTime) { mailbox(id: $m) { stats(since: $s) {
  openCount waitingCount oldestWaitingSince medianFirstResponseSeconds medianResponseSeconds } } }"""


# Constant query counts (token check and audit rows included), the same on SQLite and PostgreSQL.
FILTERED_PAGE_QUERIES = 11
STATS_PAGE_QUERIES = 6
QUICK_REPLIES_QUERIES = 3


def cid(world) -> str:
    return gid("Conversation", world.conversation.pk)


def uid(user) -> str:
    return gid("User", user.pk)


def conversation(world) -> Conversation:
    return Conversation.objects.get(pk=world.conversation.pk)


# ---- assignment ------------------------------------------------------------------------------------


def test_claim_assign_reassign_and_unassign_keep_a_history_with_reasons(world):
    # given a subscriber and a mailbox admin of Billing
    sam, mia = Api.as_user(world.subscriber), Api.as_user(world.mailbox_admin)
    # when the subscriber claims it, the admin reassigns it to herself with a reason, then unassigns it
    claimed = sam.data(ASSIGN, {"c": cid(world), "u": uid(world.subscriber)})["assignConversation"]
    mia.data(ASSIGN, {"c": cid(world), "u": uid(world.mailbox_admin), "r": "  Sam is out today "})
    final = mia.data(ASSIGN, {"c": cid(world), "u": None, "r": "Back to the pool"})["assignConversation"]
    # then each change is in the history, oldest first, with who, from whom, by whom and why
    assert claimed["assignee"] == {"id": uid(world.subscriber), "fullName": "Sam Subscriber"}
    assert final["assignee"] is None
    history = [
        (h["assignee"], h["previousAssignee"], h["changedBy"]["id"], h["reason"]) for h in final["assignmentHistory"]
    ]
    assert history == [
        ({"id": uid(world.subscriber)}, None, uid(world.subscriber), ""),
        ({"id": uid(world.mailbox_admin)}, {"id": uid(world.subscriber)}, uid(world.mailbox_admin), "Sam is out today"),
        (None, {"id": uid(world.mailbox_admin)}, uid(world.mailbox_admin), "Back to the pool"),
    ]
    # and each is audited and logged as a live event
    audited = AuditEvent.objects.filter(operation="assignConversation").order_by("id")
    assert [a.detail["claim"] for a in audited] == [True, True, False]
    assert all(a.patient_id == world.patient.pk for a in audited)
    events = Event.objects.filter(kind=EventKind.CONVERSATION_ASSIGNED).order_by("id")
    assert [e.data["assignee_id"] for e in events] == [world.subscriber.pk, world.mailbox_admin.pk, None]
    assert all(e.patient_id is None for e in events)  # staff-only: never in a patient's log


def test_assigning_the_current_assignee_again_changes_and_records_nothing(world):
    sam = Api.as_user(world.subscriber)
    sam.data(ASSIGN, {"c": cid(world), "u": uid(world.subscriber)})
    sam.data(ASSIGN, {"c": cid(world), "u": uid(world.subscriber), "r": "again"})
    sam.data(ASSIGN, {"c": cid(world), "u": None})
    sam.data(ASSIGN, {"c": cid(world), "u": None})
    assert AssignmentChange.objects.count() == 2
    assert Event.objects.filter(kind=EventKind.CONVERSATION_ASSIGNED).count() == 2


@pytest.mark.parametrize("who", ["not_subscribed", "inactive", "other_practice", "unknown", "patient_id"])
def test_the_assignee_must_be_an_active_staff_member_subscribed_to_the_mailbox(world, who):
    # given candidates who are not active subscribers of Billing
    inactive = make_user("ivy_inactive", world.practice)
    MailboxSubscription.objects.create(mailbox=world.billing, user=inactive)
    inactive.is_active = False
    inactive.save()
    candidates = {
        "not_subscribed": uid(world.staff),
        "inactive": uid(inactive),
        "other_practice": uid(world.outsider),
        "unknown": gid("User", 987_654),
        "patient_id": gid("User", world.patient.pk + 10_000),
    }
    # when a subscriber assigns to one of them
    answer = Api.as_user(world.subscriber).post(ASSIGN, {"c": cid(world), "u": candidates[who]})
    # then it is refused with one message for every case (another practice's user is not told apart)
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert error["message"] == "Assign the conversation to an active staff member subscribed to 'Billing'."
    assert conversation(world).assignee_id is None
    assert not AssignmentChange.objects.exists()


def test_a_reason_longer_than_500_characters_is_refused_and_nothing_is_written(world):
    api = Api.as_user(world.subscriber)
    assert api.error_code(ASSIGN, {"c": cid(world), "u": uid(world.subscriber), "r": "x" * 501}) == "VALIDATION_ERROR"
    assert conversation(world).assignee_id is None
    assert not AssignmentChange.objects.exists()
    assert not AuditEvent.objects.filter(operation="assignConversation").exists()
    api.data(ASSIGN, {"c": cid(world), "u": uid(world.subscriber), "r": "x" * 500})
    assert AssignmentChange.objects.get().reason == "x" * 500


def test_a_deactivated_mailbox_s_conversations_cannot_be_assigned(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    api = Api.as_user(world.subscriber)
    assert api.error_code(ASSIGN, {"c": cid(world), "u": uid(world.subscriber)}) == "MAILBOX_DEACTIVATED"


# ---- priority and filters --------------------------------------------------------------------------


def test_priority_is_normal_by_default_and_changes_are_audited_and_logged(world):
    api = Api.as_user(world.subscriber)
    query = "query($c: ID!) { conversation(id: $c) { priority } }"
    assert api.data(query, {"c": cid(world)})["conversation"]["priority"] == "NORMAL"
    assert api.data(PRIORITY, {"c": cid(world), "p": "URGENT"})["setConversationPriority"]["priority"] == "URGENT"
    api.data(PRIORITY, {"c": cid(world), "p": "URGENT"})  # unchanged: nothing recorded
    audited = AuditEvent.objects.get(operation="setConversationPriority")
    assert audited.detail == {"priority": "URGENT", "previous": "NORMAL"}
    assert Event.objects.filter(kind=EventKind.CONVERSATION_PRIORITY_CHANGED).count() == 1


def _pool(world) -> dict[str, Conversation]:
    """Four Billing conversations: urgent+claimed, waiting long, waiting recently, answered (and the world's)."""
    names = {}
    for n, label in enumerate(["claimed", "long", "recent", "answered"]):
        patient = make_patient(world.practice, f"P-{n}", label.title(), "Pool")
        actions.send_patient_message(acting_patient=patient, mailbox_id=world.billing.pk, body=f"help {label}")
        names[label] = Conversation.objects.get(patient=patient)
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=names["answered"].pk, body="done")
    actions.assign_conversation(
        acting_user=world.subscriber, conversation_id=names["claimed"].pk, user_id=world.subscriber.pk
    )
    actions.set_conversation_priority(
        acting_user=world.subscriber, conversation_id=names["claimed"].pk, priority="URGENT"
    )
    now = timezone.now()
    Conversation.objects.filter(pk=names["long"].pk).update(waiting_since=now - dt.timedelta(days=2))
    Conversation.objects.filter(pk=names["recent"].pk).update(waiting_since=now - dt.timedelta(hours=1))
    Conversation.objects.filter(pk=names["claimed"].pk).update(waiting_since=now - dt.timedelta(hours=3))
    return names


def _listed(api, world, **filters) -> list[str]:
    variables = {"m": gid("Mailbox", world.billing.pk), "o": "RECENT_ACTIVITY", **filters}
    rows = api.data(LIST, variables)["mailbox"]["conversations"]
    names = [e["node"]["patient"]["fullName"].split()[0] for e in rows["edges"]]
    assert rows["totalCount"] == len(names)
    return names


def test_list_filters_assigned_to_me_unassigned_priority_and_waiting_keep_recent_activity_order(world):
    _pool(world)
    api = Api.as_user(world.subscriber)
    assert _listed(api, world) == ["Answered", "Recent", "Long", "Claimed", "María"]
    assert _listed(api, world, a=uid(world.subscriber)) == ["Claimed"]
    assert _listed(api, world, a=uid(world.mailbox_admin)) == []
    assert _listed(api, world, u=True) == ["Answered", "Recent", "Long", "María"]
    assert _listed(api, world, u=False) == ["Claimed"]
    assert _listed(api, world, p="URGENT") == ["Claimed"]
    assert _listed(api, world, p="NORMAL", w=True) == ["Recent", "Long"]
    assert (
        api.error_code(
            LIST, {"m": gid("Mailbox", world.billing.pk), "o": "RECENT_ACTIVITY", "a": uid(world.subscriber), "u": True}
        )
        == "VALIDATION_ERROR"
    )


def test_the_list_shows_urgent_first_or_longest_waiting_first(world):
    _pool(world)
    api = Api.as_user(world.subscriber)
    assert _listed(api, world, o="URGENT_FIRST") == ["Claimed", "Answered", "Recent", "Long", "María"]
    assert _listed(api, world, o="LONGEST_WAITING") == ["Long", "Claimed", "Recent"]


def test_longest_waiting_pages_with_cursors_without_repeats(world):
    _pool(world)
    api = Api.as_user(world.subscriber)
    query = """query($m: ID!, $after: String) { mailbox(id: $m) {
      conversations(order: LONGEST_WAITING, first: 2, after: $after) {
        pageInfo { hasNextPage endCursor } edges { node { patient { firstName } } } } } }"""
    first = api.data(query, {"m": gid("Mailbox", world.billing.pk)})["mailbox"]["conversations"]
    rest = api.data(query, {"m": gid("Mailbox", world.billing.pk), "after": first["pageInfo"]["endCursor"]})
    names = [e["node"]["patient"]["firstName"] for e in first["edges"] + rest["mailbox"]["conversations"]["edges"]]
    assert names == ["Long", "Claimed", "Recent"]
    assert first["pageInfo"]["hasNextPage"]


def _filtered_page_queries(world, rows: int) -> int:
    for n in range(rows):
        patient = make_patient(world.practice, f"QF-{rows}-{n}", f"Q{n}", "Filter")
        actions.send_patient_message(acting_patient=patient, mailbox_id=world.billing.pk, body="hello")
        c = Conversation.objects.get(patient=patient)
        actions.assign_conversation(
            acting_user=world.subscriber, conversation_id=c.pk, user_id=world.mailbox_admin.pk, reason="r"
        )
    api = Api.as_user(world.subscriber)
    query = """query($m: ID!, $a: ID) { mailbox(id: $m) { stats { openCount }
      conversations(assigneeId: $a, waitingOnly: true, order: URGENT_FIRST, first: 50) { totalCount edges { node {
      id priority waitingSince assignee { id fullName memberships { role } }
      assignmentHistory { reason at assignee { id } previousAssignee { id } changedBy { fullName } } } } } } }"""
    api.post("{ __typename }")
    with CaptureQueriesContext(connection) as captured:
        data = api.data(query, {"m": gid("Mailbox", world.billing.pk), "a": uid(world.mailbox_admin)})
    assert data["mailbox"]["conversations"]["totalCount"] >= rows
    return len(captured.captured_queries)


def test_a_filtered_page_with_assignees_history_and_stats_costs_the_same_queries_for_2_or_20_rows(world):
    small = _filtered_page_queries(world, 2)
    big = _filtered_page_queries(world, 18)  # 2, then 20 rows in the page
    print(f"filtered conversation page with assignees, history and stats: {small} queries for 2 rows, {big} for 20")
    assert big == small == FILTERED_PAGE_QUERIES


# ---- waiting time ----------------------------------------------------------------------------------


def test_waiting_since_is_the_oldest_unanswered_patient_message_and_a_staff_answer_ends_it(world):
    first = actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="one")
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="two")
    assert conversation(world).waiting_since == first.sent_at
    # a note does not answer
    actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="calling")
    assert conversation(world).waiting_since == first.sent_at
    # archiving does not answer either (nothing was said to the patient); it leaves the open pool
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    assert conversation(world).waiting_since == first.sent_at
    # the patient writes again (reactivates): still waiting since the first message
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="three")
    assert conversation(world).waiting_since == first.sent_at
    answer = actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="ok")
    assert conversation(world).waiting_since is None
    response = StaffResponse.objects.get()
    assert (response.message_id, response.waited_from, response.is_first) == (answer.pk, first.sent_at, True)
    assert response.seconds == (answer.sent_at - first.sent_at).total_seconds()
    # a second answer while nobody waits records nothing; the next wait starts at the next patient message
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="also")
    later = actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="four")
    assert conversation(world).waiting_since == later.sent_at
    actions.send_staff_message(acting_user=world.mailbox_admin, conversation_id=world.conversation.pk, body="yes")
    assert list(StaffResponse.objects.order_by("id").values_list("is_first", flat=True)) == [True, False]


def test_recompute_rebuilds_the_same_waiting_time_as_the_actions_kept(world):
    steps = ["p", "p", "n", "s", "s", "p", "n", "p", "s", "p"]
    for step in steps:
        if step == "p":
            actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="p")
        elif step == "s":
            actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="s")
        else:
            actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="n")
        kept = conversation(world)
        rebuilt = conversation(world)
        rebuilt.waiting_since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        waiting.recompute(rebuilt)
        assert rebuilt.waiting_since == kept.waiting_since, step
        Conversation.objects.filter(pk=kept.pk).update(waiting_since=kept.waiting_since)


# ---- stats -----------------------------------------------------------------------------------------


def _response(world, c: Conversation, seconds: float, *, first: bool, days_ago: float = 0) -> None:
    at = timezone.now() - dt.timedelta(days=days_ago)
    message = actions.send_staff_message(acting_user=world.subscriber, conversation_id=c.pk, body="answer")
    StaffResponse.objects.filter(message=message).delete()
    StaffResponse.objects.create(
        conversation=c,
        mailbox_id=c.mailbox_id,
        message=message,
        waited_from=at - dt.timedelta(seconds=seconds),
        answered_at=at,
        seconds=seconds,
        is_first=first,
    )


def test_stats_count_open_and_waiting_and_take_medians_since_a_date(world):
    names = _pool(world)
    # medians of [10, 20, 30, 1000] (even: mean of the middle two) and first responses of [10, 30, 1000]
    c = names["answered"]
    StaffResponse.objects.all().delete()
    for seconds, first in ((10, True), (20, False), (30, True), (1000, True)):
        _response(world, c, seconds, first=first)
    _response(world, c, 99_999, first=True, days_ago=40)  # before `since`
    Conversation.objects.filter(pk__in=[names["long"].pk, names["recent"].pk, names["claimed"].pk]).update(
        waiting_since=timezone.now() - dt.timedelta(hours=1)
    )
    oldest = timezone.now() - dt.timedelta(days=3)
    Conversation.objects.filter(pk=names["long"].pk).update(waiting_since=oldest)
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=names["recent"].pk)
    since = (timezone.now() - dt.timedelta(days=30)).isoformat()
    stats = Api.as_user(world.subscriber).data(STATS, {"m": gid("Mailbox", world.billing.pk), "s": since})
    stats = stats["mailbox"]["stats"]
    assert stats["openCount"] == 4  # archived "recent" left the open pool
    assert stats["waitingCount"] == 2
    assert dt.datetime.fromisoformat(stats["oldestWaitingSince"]) == oldest
    assert stats["medianResponseSeconds"] == 25
    assert stats["medianFirstResponseSeconds"] == 30
    every = Api.as_user(world.subscriber).data(STATS, {"m": gid("Mailbox", world.billing.pk)})["mailbox"]["stats"]
    assert every["medianResponseSeconds"] == 30  # [10, 20, 30, 1000, 99999]
    assert every["medianFirstResponseSeconds"] == 515  # [10, 30, 1000, 99999]


def test_stats_of_an_empty_mailbox_are_zero_and_null(world):
    MailboxSubscription.objects.create(mailbox=world.scheduling, user=world.subscriber)
    stats = Api.as_user(world.subscriber).data(STATS, {"m": gid("Mailbox", world.scheduling.pk)})["mailbox"]["stats"]
    assert stats == {
        "openCount": 0,
        "waitingCount": 0,
        "oldestWaitingSince": None,
        "medianFirstResponseSeconds": None,
        "medianResponseSeconds": None,
    }


@pytest.mark.parametrize(
    ("role", "wanted"),
    [
        ("subscriber", "OK"),
        ("mailbox_admin_unsubscribed", "OK"),
        ("staff", "NOT_SUBSCRIBED"),
        ("outsider", "NOT_FOUND"),
    ],
)
def test_stats_are_for_subscribers_and_mailbox_admins(world, role, wanted):
    MailboxSubscription.objects.filter(user=world.mailbox_admin).delete()
    user = world.mailbox_admin if role == "mailbox_admin_unsubscribed" else getattr(world, role)
    answer = Api.as_user(user).post(STATS, {"m": gid("Mailbox", world.billing.pk)})
    if wanted == "OK":
        assert not answer.get("errors")
        assert answer["data"]["mailbox"]["stats"]["openCount"] == 1
    else:
        assert answer["errors"][0]["extensions"]["code"] == wanted


def _stats_queries(world, conversations: int, mailboxes: int) -> int:
    from core.models import Mailbox

    for m in range(mailboxes):
        box = Mailbox.objects.create(practice=world.practice, name=f"Stats {conversations}-{m}")
        MailboxSubscription.objects.create(mailbox=box, user=world.subscriber)
        for n in range(conversations):
            patient = make_patient(world.practice, f"S-{conversations}-{m}-{n}", f"S{n}", "Stats")
            actions.send_patient_message(acting_patient=patient, mailbox_id=box.pk, body="hi")
            if n % 2:
                c = Conversation.objects.get(patient=patient)
                actions.send_staff_message(acting_user=world.subscriber, conversation_id=c.pk, body="ok")
    api = Api.as_user(world.subscriber)
    query = """query($p: ID!) { mailboxes(practiceId: $p, subscribedOnly: true) { stats {
      openCount waitingCount oldestWaitingSince medianFirstResponseSeconds medianResponseSeconds } } }"""
    api.post("{ __typename }")
    with CaptureQueriesContext(connection) as captured:
        data = api.data(query, {"p": gid("Practice", world.practice.pk)})
    assert sum(s["stats"]["openCount"] for s in data["mailboxes"]) >= conversations * mailboxes
    return len(captured.captured_queries)


def test_stats_cost_the_same_queries_for_1_or_30_conversations_and_1_or_6_mailboxes(world):
    counts = [_stats_queries(world, 1, 1), _stats_queries(world, 30, 1), _stats_queries(world, 3, 6)]
    print(f"mailboxes with stats: {counts} queries (1 x 1, 30 x 1, 3 x 6 conversations x mailboxes)")
    assert counts == [STATS_PAGE_QUERIES] * 3


# ---- internal notes --------------------------------------------------------------------------------


def test_a_note_is_shown_to_staff_marked_and_is_neither_unread_activity_nor_reactivation(world):
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="hello")
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=world.conversation.pk)
    before = conversation(world)
    mia = Api.as_user(world.mailbox_admin)
    note = mia.data(NOTE, {"c": cid(world), "b": "  Called her, left a voicemail "})["addInternalNote"]
    assert note["direction"] == "INTERNAL_NOTE"
    assert note["sequence"] == 2
    assert note["body"] == "Called her, left a voicemail"
    assert note["senderName"] == "Mia Mailboxadmin"
    after = conversation(world)
    assert after.status == ConversationStatus.ARCHIVED
    assert (after.last_message_at, after.last_activity_at) == (before.last_message_at, before.last_activity_at)
    assert after.patient_message_count == 1
    assert after.portal_last_sequence == 1
    # unread for nobody: the subscriber still has exactly the patient's message unread
    query = (
        "query($c: ID!) { conversation(id: $c) { unreadCount messages { totalCount edges { node { direction } } } } }"
    )
    seen = Api.as_user(world.subscriber).data(query, {"c": cid(world)})["conversation"]
    assert seen["unreadCount"] == 1
    assert [e["node"]["direction"] for e in seen["messages"]["edges"]] == ["FROM_PATIENT", "INTERNAL_NOTE"]
    assert seen["messages"]["totalCount"] == 2
    audited = AuditEvent.objects.get(operation="addInternalNote")
    assert (audited.action, audited.object_type, audited.patient_id) == ("CREATE", "Message", world.patient.pk)
    event = Event.objects.get(kind=EventKind.NOTE_ADDED)
    assert event.patient_id is None
    assert event.message_id == Message.objects.get(direction="INTERNAL_NOTE").pk


def test_a_note_is_idempotent_by_client_message_id_and_refused_when_empty_or_too_long(world):
    api = Api.as_user(world.subscriber)
    one = api.data(NOTE, {"c": cid(world), "b": "x", "k": "n-1"})["addInternalNote"]
    two = api.data(NOTE, {"c": cid(world), "b": "x", "k": "n-1"})["addInternalNote"]
    assert one["id"] == two["id"]
    assert api.error_code(NOTE, {"c": cid(world), "b": "   "}) == "VALIDATION_ERROR"
    assert api.error_code(NOTE, {"c": cid(world), "b": "x" * 20_001}) == "VALIDATION_ERROR"
    assert Message.objects.count() == 1


def test_notes_in_a_deactivated_mailbox_are_refused_even_from_the_chart(world):
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=world.billing.pk)
    from_chart = NOTE.replace("clientMessageId: $k", "clientMessageId: $k, via: CHART_SUMMARY")
    assert Api.as_user(world.subscriber).error_code(from_chart, {"c": cid(world), "b": "x"}) == "MAILBOX_DEACTIVATED"
    assert not Message.objects.exists()


PORTAL = """{ portalConversations { id lastMessageAt unreadCount assignee { id } priority waitingSince
  assignmentHistory { reason } mailbox { unreadCount }
  messages(last: 50) { totalCount pageInfo { hasPreviousPage } edges { cursor node { id sequence direction body
  attachments { id url } } } } } }"""


def test_the_patient_sees_no_trace_of_notes_in_portal_queries(world):
    # given a thread: patient, note, staff, note, patient — and the same thread's answers without the notes
    patient = Api.as_patient(world.patient)
    sent = patient.data(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "one") { sequence } }',
        {"m": gid("Mailbox", world.billing.pk)},
    )
    actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="SECRET-1")
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="two")
    actions.assign_conversation(
        acting_user=world.subscriber,
        conversation_id=world.conversation.pk,
        user_id=world.subscriber.pk,
        reason="SECRET-R",
    )
    actions.set_conversation_priority(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, priority="URGENT"
    )
    before_note = patient.data(PORTAL)
    actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="SECRET-2")
    second = patient.data(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "three") { sequence } }',
        {"m": gid("Mailbox", world.billing.pk)},
    )
    # when the patient reads their threads
    answer = patient.post(PORTAL)
    # then they see their numbering 1, 2, 3 with no gap, no note text, no staff-only field
    text = str(answer)
    assert "SECRET" not in text
    assert "INTERNAL_NOTE" not in text
    thread = answer["data"]["portalConversations"][0]
    assert [e["node"]["sequence"] for e in thread["messages"]["edges"]] == [1, 2, 3]
    assert [e["node"]["body"] for e in thread["messages"]["edges"]] == ["one", "two", "three"]
    assert thread["messages"]["totalCount"] == 3
    assert (sent["sendPortalMessage"]["sequence"], second["sendPortalMessage"]["sequence"]) == (1, 3)
    assert (thread["assignee"], thread["priority"], thread["waitingSince"], thread["assignmentHistory"]) == (
        None,
        None,
        None,
        [],
    )
    # and the note added after `before_note` left the thread as it was until the patient's own message
    assert before_note["portalConversations"][0]["messages"]["totalCount"] == 2


def test_a_note_between_reads_changes_nothing_the_portal_shows(world):
    patient = Api.as_patient(world.patient)
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="one")
    actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="two")
    before = patient.data(PORTAL)
    actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="note")
    assert patient.data(PORTAL) == before


def test_the_portal_pages_back_through_its_own_numbering(world):
    for n in range(5):
        actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body=f"p{n}")
        actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body=f"n{n}")
    patient = Api.as_patient(world.patient)
    query = """query { portalConversations { messages(last: 2, before: %s) { pageInfo { hasPreviousPage startCursor }
      edges { node { sequence body } } } } }"""
    page = patient.data(query % "null")["portalConversations"][0]["messages"]
    assert [e["node"]["body"] for e in page["edges"]] == ["p3", "p4"]
    cursor = page["pageInfo"]["startCursor"]
    back = patient.data(query % f'"{cursor}"')["portalConversations"][0]["messages"]
    assert [e["node"]["sequence"] for e in back["edges"]] == [2, 3]
    assert back["pageInfo"]["hasPreviousPage"]


def test_a_note_s_attachment_is_not_found_for_the_patient_as_an_unknown_one_is(world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    note = actions.add_internal_note(
        acting_user=world.subscriber,
        conversation_id=world.conversation.pk,
        body="scan",
        attachments=[SimpleUploadedFile("scan.txt", b"internal scan notes\n", content_type="text/plain")],
    )
    attachment = note.attachments.get()
    patient, staff = Api.as_patient(world.patient), Api.as_user(world.subscriber)
    url = f"/attachments/{attachment.pk}/download"
    refused = patient.client.get(url, headers={"Authorization": f"Bearer {patient.token}"})
    unknown = patient.client.get(
        f"/attachments/{attachment.pk + 999}/download", headers={"Authorization": f"Bearer {patient.token}"}
    )
    assert refused.status_code == unknown.status_code == 404
    assert refused.content == unknown.content
    assert staff.client.get(url, headers={"Authorization": f"Bearer {staff.token}"}).status_code == 200


def test_the_patient_s_unread_and_mailbox_counts_ignore_notes(world):
    actions.add_internal_note(acting_user=world.subscriber, conversation_id=world.conversation.pk, body="n")
    assert not ReadState.objects.filter(user=world.mailbox_admin).exists()
    query = "query($m: ID!) { mailbox(id: $m) { unreadCount } }"
    assert (
        Api.as_user(world.mailbox_admin).data(query, {"m": gid("Mailbox", world.billing.pk)})["mailbox"]["unreadCount"]
        == 0
    )
    portal = Api.as_patient(world.patient).data(
        "{ portalMailboxes { unreadCount } portalConversations { unreadCount messages { totalCount } } }"
    )
    assert portal["portalConversations"][0]["messages"]["totalCount"] == 0


# ---- quick replies ---------------------------------------------------------------------------------

QR_CREATE = (
    "mutation($p: ID!, $t: String!, $b: String!) { createQuickReply(practiceId: $p, title: $t, body: $b) "
    "{ id title body } }"
)
QR_UPDATE = (
    "mutation($q: ID!, $t: String!, $b: String!) { updateQuickReply(quickReplyId: $q, title: $t, body: $b) "
    "{ id title body } }"
)
QR_DELETE = "mutation($q: ID!) { deleteQuickReply(quickReplyId: $q) }"
QR_LIST = "query($p: ID!, $q: String) { quickReplies(practiceId: $p, query: $q) { id title body } }"


def test_mailbox_admins_manage_quick_replies_and_every_staff_member_finds_them_by_title(world):
    mia, stan = Api.as_user(world.mailbox_admin), Api.as_user(world.staff)
    p = gid("Practice", world.practice.pk)
    refill = mia.data(QR_CREATE, {"p": p, "t": " Refill  ready ", "b": "Your refill is ready for pick-up."})[
        "createQuickReply"
    ]
    mia.data(QR_CREATE, {"p": p, "t": "Billing address", "b": "Our billing address is 1 Main St."})
    assert refill["title"] == "Refill ready"
    assert [r["title"] for r in stan.data(QR_LIST, {"p": p})["quickReplies"]] == ["Billing address", "Refill ready"]
    assert [r["title"] for r in stan.data(QR_LIST, {"p": p, "q": "READY ref"})["quickReplies"]] == ["Refill ready"]
    assert stan.data(QR_LIST, {"p": p, "q": "zzz"})["quickReplies"] == []
    changed = mia.data(QR_UPDATE, {"q": refill["id"], "t": "Refill", "b": "Ready."})["updateQuickReply"]
    assert (changed["title"], changed["body"]) == ("Refill", "Ready.")
    assert mia.data(QR_DELETE, {"q": refill["id"]})["deleteQuickReply"] == refill["id"]
    assert [r["title"] for r in stan.data(QR_LIST, {"p": p})["quickReplies"]] == ["Billing address"]
    ops = list(AuditEvent.objects.filter(object_type="QuickReply").order_by("id").values_list("operation", "action"))
    assert ops == [
        ("createQuickReply", "CREATE"),
        ("createQuickReply", "CREATE"),
        ("updateQuickReply", "UPDATE"),
        ("deleteQuickReply", "DELETE"),
    ]
    assert Event.objects.filter(kind=EventKind.QUICK_REPLIES_CHANGED).count() == 4
    assert mia.error_code(QR_UPDATE, {"q": refill["id"], "t": "x", "b": "y"}) == "NOT_FOUND"


def test_quick_reply_titles_are_unique_ignoring_case_and_bad_input_writes_nothing(world):
    mia = Api.as_user(world.mailbox_admin)
    p = gid("Practice", world.practice.pk)
    first = mia.data(QR_CREATE, {"p": p, "t": "Refill", "b": "Ready."})["createQuickReply"]
    other = mia.data(QR_CREATE, {"p": p, "t": "Other", "b": "Other."})["createQuickReply"]
    assert mia.error_code(QR_CREATE, {"p": p, "t": "REFILL", "b": "x"}) == "DUPLICATE_NAME"
    assert mia.error_code(QR_UPDATE, {"q": other["id"], "t": "refill", "b": "x"}) == "DUPLICATE_NAME"
    assert mia.error_code(QR_CREATE, {"p": p, "t": "  ", "b": "x"}) == "VALIDATION_ERROR"
    assert mia.error_code(QR_CREATE, {"p": p, "t": "t" * 101, "b": "x"}) == "VALIDATION_ERROR"
    assert mia.error_code(QR_CREATE, {"p": p, "t": "Empty", "b": " "}) == "VALIDATION_ERROR"
    assert mia.error_code(QR_CREATE, {"p": p, "t": "Long", "b": "b" * 20_001}) == "VALIDATION_ERROR"
    assert list(QuickReply.objects.order_by("title").values_list("title", flat=True)) == ["Other", "Refill"]
    assert first["title"] == "Refill"
    # another practice's admin may use the same title in their own practice
    south = Api.as_user(world.outsider)
    assert south.data(QR_CREATE, {"p": gid("Practice", world.other_practice.pk), "t": "Refill", "b": "South."})


def test_quick_replies_list_costs_the_same_queries_for_1_or_40_replies(world):
    def count(n: int) -> int:
        QuickReply.objects.all().delete()
        QuickReply.objects.bulk_create(
            QuickReply(practice=world.practice, title=f"T{i:02}", body="b") for i in range(n)
        )
        api = Api.as_user(world.staff)
        api.post("{ __typename }")
        with CaptureQueriesContext(connection) as captured:
            assert len(api.data(QR_LIST, {"p": gid("Practice", world.practice.pk)})["quickReplies"]) == n
        return len(captured.captured_queries)

    assert count(1) == count(40) == QUICK_REPLIES_QUERIES
