"""Field-level guards: protected fields are checked wherever they are reached, not only at the root."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.errors import DomainError
from core.models import Mailbox, MailboxSubscription
from core.viewer_facts import annotate_mailboxes
from graph import guards
from graph.context import Context
from tests.graphql_client import Api, gid


def codes(answer: dict) -> dict[str, str]:
    return {".".join(str(p) for p in e["path"]): e["extensions"]["code"] for e in answer.get("errors", [])}


def test_unsubscribed_staff_gets_not_subscribed_for_conversations(world):
    api = Api.as_user(world.staff)
    answer = api.post(
        "query($id: ID!) { mailbox(id: $id) { name conversations { totalCount } } }",
        {"id": gid("Mailbox", world.billing.pk)},
    )
    assert answer["errors"][0]["extensions"]["code"] == "NOT_SUBSCRIBED"


def test_a_patient_never_reaches_staff_data_through_the_portal(world):
    # given a patient with a thread in Billing, which two staff members follow
    patient = Api.as_patient(world.patient)
    patient.data(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "Hi") { id } }',
        {"m": gid("Mailbox", world.billing.pk)},
    )
    # when the patient walks from their conversations to the mailbox and on to staff-only fields
    answer = patient.post(
        "{ portalConversations { id messages { totalCount } patient { fullName } mailbox { name "
        "subscribers { username } } } "
        "c2: portalConversations { mailbox { conversations { totalCount } } } "
        "c3: portalConversations { mailbox { subscriberCount } } "
        "c4: portalConversations { patient { conversations { id } } } "
        "portalMailboxes { name isSubscribed unreadCount subscribers { username } } }"
    )
    # then each staff-only field is refused, their own thread stays readable
    assert codes(answer) == {
        "portalConversations.0.mailbox.subscribers": "FORBIDDEN",
        "c2.0.mailbox.conversations": "FORBIDDEN",
        "c3.0.mailbox.subscriberCount": "FORBIDDEN",
        "c4.0.patient.conversations": "FORBIDDEN",
        "portalMailboxes.0.subscribers": "FORBIDDEN",
        "portalMailboxes.1.subscribers": "FORBIDDEN",
    }
    text = json.dumps(answer)
    assert "sam_subscriber" not in text
    assert "mia_mailboxadmin" not in text
    assert answer["data"]["c2"] == [{"mailbox": {"conversations": None}}]
    assert answer["data"]["portalMailboxes"][0] == {
        "name": "Billing",
        "isSubscribed": False,
        "unreadCount": 0,
        "subscribers": None,
    }
    own = patient.data("{ portalConversations { patient { fullName } messages { totalCount } mailbox { name } } }")
    assert own["portalConversations"] == [
        {"patient": {"fullName": "María García"}, "messages": {"totalCount": 1}, "mailbox": {"name": "Billing"}}
    ]


def test_another_patient_of_the_practice_sees_none_of_it(world):
    Api.as_patient(world.patient).data(
        'mutation($m: ID!) { sendPortalMessage(mailboxId: $m, body: "Private") { id } }',
        {"m": gid("Mailbox", world.billing.pk)},
    )
    other = Api.as_patient(world.other_patient)
    assert other.data("{ portalConversations { id } }") == {"portalConversations": []}
    assert (
        other.error_code(
            "query($c: ID!) { conversation(id: $c) { id } }", {"c": gid("Conversation", world.conversation.pk)}
        )
        == "FORBIDDEN"
    )


def test_a_conversation_reached_from_the_chart_does_not_open_its_mailbox_view(world):
    # given a staff member who may read the chart but follows no mailbox
    staff = Api.as_user(world.staff)
    # when they go from the chart's conversation to its mailbox's conversations
    answer = staff.post(
        "query($c: ID!) { conversation(id: $c, via: CHART_SUMMARY) { messages { totalCount } "
        "mailbox { name subscriberCount subscribers { username } conversations { totalCount } } } }",
        {"c": gid("Conversation", world.conversation.pk)},
    )
    # then the mailbox view is re-checked there: NOT_SUBSCRIBED, the rest answers
    assert codes(answer) == {"conversation.mailbox.conversations": "NOT_SUBSCRIBED"}
    mailbox = answer["data"]["conversation"]["mailbox"]
    assert (mailbox["name"], mailbox["subscriberCount"]) == ("Billing", 2)


def test_an_admin_page_does_not_open_mailboxes_the_admin_does_not_follow(world):
    # given the mailbox admin follows Billing, not Scheduling
    answer = Api.as_user(world.mailbox_admin).post(
        "query($u: ID!) { userMailboxAccess(userId: $u) "
        "{ mailboxes { mailbox { name conversations { totalCount } } } } }",
        {"u": gid("User", world.subscriber.pk)},
    )
    # then Scheduling's conversations are refused from the admin page too
    assert codes(answer) == {"userMailboxAccess.0.mailboxes.1.mailbox.conversations": "NOT_SUBSCRIBED"}
    billing = answer["data"]["userMailboxAccess"][0]["mailboxes"][0]["mailbox"]
    assert billing == {"name": "Billing", "conversations": {"totalCount": 1}}


def test_losing_a_subscription_closes_the_mailbox_view_on_the_next_request(world):
    subscriber = Api.as_user(world.subscriber)
    query = "query($c: ID!) { conversation(id: $c) { messages { totalCount } } }"
    variables = {"c": gid("Conversation", world.conversation.pk)}
    assert subscriber.data(query, variables)["conversation"]["messages"]["totalCount"] == 0
    MailboxSubscription.objects.filter(user=world.subscriber).delete()
    assert subscriber.error_code(query, variables) == "NOT_SUBSCRIBED"


def test_one_subscribed_mailbox_in_a_list_answers_while_the_others_are_refused(world):
    answer = Api.as_user(world.subscriber).post(
        "query($p: ID!) { mailboxes(practiceId: $p) { name conversations { totalCount } } }",
        {"p": gid("Practice", world.practice.pk)},
    )
    assert codes(answer) == {"mailboxes.1.conversations": "NOT_SUBSCRIBED"}
    assert answer["data"]["mailboxes"] == [
        {"name": "Billing", "conversations": {"totalCount": 1}},
        {"name": "Scheduling", "conversations": None},
    ]


def test_the_subscription_read_with_the_mailbox_decides_its_conversations_without_a_query_of_its_own(world):
    # given a subscriber asking for a mailbox's conversations, without selecting isSubscribed
    api = Api.as_user(world.subscriber)
    query = "query($id: ID!) { mailbox(id: $id) { name conversations { edges { node { id } } } } }"
    variables = {"id": gid("Mailbox", world.billing.pk)}
    api.post("{ __typename }")
    # when the page is read
    with CaptureQueriesContext(connection) as captured:
        answer = api.post(query, variables)
    # then it answers, and no statement reads the viewer's subscriptions apart from the mailbox's own read
    assert not answer.get("errors")
    assert len(answer["data"]["mailbox"]["conversations"]["edges"]) == 1
    reads = [q["sql"] for q in captured.captured_queries if "core_mailboxsubscription" in q["sql"]]
    assert len(reads) == 1, reads
    assert reads[0].startswith('SELECT "core_mailbox"."id"'), reads
    # and an unsubscribed staff member asking the same is still refused
    assert Api.as_user(world.staff).error_code(query, variables) == "NOT_SUBSCRIBED"


def test_a_subscription_annotated_for_someone_else_decides_nothing_for_the_viewer(world):
    # given Billing read with the subscriber's facts (subscribed), and a viewer who follows no mailbox
    row = annotate_mailboxes(Mailbox.objects.filter(pk=world.billing.pk), world.subscriber).get()
    assert row.is_subscribed
    context = Context(request=None, user=world.staff)
    # when the viewer's mailbox view is decided on that row
    with pytest.raises(DomainError) as refused:
        guards.mailbox_view(context, row)
    # then the viewer's own subscriptions decide it
    assert refused.value.code == "NOT_SUBSCRIBED"
    guards.mailbox_view(Context(request=None, user=world.subscriber), row)
