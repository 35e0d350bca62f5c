"""A first pass over the API over HTTP: the main staff and portal flows."""

from __future__ import annotations

from tests.graphql_client import Api, gid

MAILBOXES = """
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
    answer = api.post(MAILBOXES, {"practiceId": gid("Practice", world.practice.pk)})
    # Scheduling is not subscribed: its conversations are refused, the rest of the answer stands.
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["NOT_SUBSCRIBED"]
    data = answer["data"]
    billing = next(m for m in data["mailboxes"] if m["name"] == "Billing")
    assert billing["isSubscribed"] is True
    assert billing["unreadCount"] == 1
    conversation = billing["conversations"]["edges"][0]["node"]
    assert conversation["unreadCount"] == 1
    assert conversation["messages"]["edges"][0]["node"]["body"] == "My bill is wrong"


def test_unsubscribed_staff_gets_not_subscribed_for_conversations(world):
    api = Api.as_user(world.staff)
    answer = api.post(
        "query($id: ID!) { mailbox(id: $id) { name conversations { totalCount } } }",
        {"id": gid("Mailbox", world.billing.pk)},
    )
    assert answer["errors"][0]["extensions"]["code"] == "NOT_SUBSCRIBED"


def test_other_practice_ids_are_not_found(world):
    api = Api.as_user(world.outsider)
    code = api.error_code("query($id: ID!) { mailbox(id: $id) { name } }", {"id": gid("Mailbox", world.billing.pk)})
    assert code == "NOT_FOUND"
    assert api.error_code('query { mailbox(id: "garbage") { name } }') == "NOT_FOUND"


def test_unknown_token_is_unauthenticated(db):
    api = Api("pmm_not-a-token")
    assert api.error_code("query { me { id } }") == "UNAUTHENTICATED"


def test_unreadable_requests_still_answer_with_a_graphql_error_code(world):
    from django.test import Client

    api = Api.as_user(world.subscriber)
    not_json = Client().post(
        "/graphql", data="{not json", content_type="application/json", headers={"Authorization": f"Bearer {api.token}"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"

    cookie_without_csrf = Client(enforce_csrf_checks=True)
    cookie_without_csrf.force_login(world.subscriber)
    refused = cookie_without_csrf.post("/graphql", data='{"query": "{ me { id } }"}', content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_a_post_without_any_cookie_is_unauthenticated_not_a_csrf_refusal(db, settings):
    from django.test import Client

    # given a client that enforces CSRF like a browser-facing server, with no session cookie at all
    # as in development, where GraphiQL's own requests take this path too
    settings.DEBUG = True
    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": True}
    bare = Client(enforce_csrf_checks=True)
    only_csrf_cookie = Client(enforce_csrf_checks=True)
    only_csrf_cookie.cookies["csrftoken"] = "x" * 32

    # when each posts an operation
    answers = [
        client.post("/graphql", data='{"query": "{ me { id } }"}', content_type="application/json")
        for client in (bare, only_csrf_cookie)
    ]
    introspection = bare.post(
        "/graphql", data='{"query": "{ __schema { queryType { name } } }"}', content_type="application/json"
    )

    # then the answer says to sign in: nothing was there for a forged request to ride on
    for answer in answers:
        assert answer.status_code == 200
        assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert introspection.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


def test_a_session_cookie_without_its_csrf_token_is_still_refused_even_when_stale(world):
    from django.test import Client

    stale = Client(enforce_csrf_checks=True)
    stale.cookies["sessionid"] = "no-such-session"

    refused = stale.post("/graphql", data='{"query": "{ me { id } }"}', content_type="application/json")

    assert refused.status_code == 403
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_anonymous_caller_is_unauthenticated_even_with_a_malformed_id(db):
    assert Api().error_code('query { practiceUsers(practiceId: "nope") { role } }') == "UNAUTHENTICATED"


def test_a_cross_practice_probe_is_audited_without_revealing_who_probed(world):
    # given an outsider probing one of this practice's conversations
    outsider = Api.as_user(world.outsider)
    probe = "query($id: ID!) { conversation(id: $id) { id } }"
    assert outsider.error_code(probe, {"id": gid("Conversation", world.conversation.pk)}) == "NOT_FOUND"
    # when this practice's owner reads the audit trail
    trail = Api.as_user(world.owner).data(
        "query($p: ID!) { auditEvents(practiceId: $p, first: 50) {"
        " edges { node { outcome actorUser { username } } } } }",
        {"p": gid("Practice", world.practice.pk)},
    )
    # then the refusal is there, but the other practice's user is not named
    refusals = [e["node"] for e in trail["auditEvents"]["edges"] if e["node"]["outcome"] == "NOT_FOUND"]
    assert refusals
    assert all(r["actorUser"] is None for r in refusals)
    assert "oscar" not in str(trail)
