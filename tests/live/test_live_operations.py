"""Queries and mutations sent over the graphql-transport-ws socket answer exactly as over HTTP (same data, errors,
audit rows, rate limits), and documents that cannot run get the protocol's `error` message, on both transports
the same VALIDATION_ERROR, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from django.test import Client, override_settings

from core import actions
from core.live_db import release_connection
from core.models import AuditEvent, Message
from core.tokens import issue_token, revoke_tokens
from tests.attachment_samples import pdf_bytes, upload
from tests.conftest import World
from tests.graphql_client import Api, gid
from tests.live_client import MAILBOX_EVENTS, LiveClient

pytestmark = pytest.mark.django_db(transaction=True)

HOST = [(b"host", b"testserver")]

ME = "query Me { me { id username fullName memberships { practice { id name } role isClinician permissions } } }"
MAILBOXES = """query($p: ID!) { mailboxes(practiceId: $p) {
  id name status isSubscribed subscriberCount unreadCount conversations(first: 10) { totalCount edges { node {
    id status unreadCount patient { fullName } } } } } }"""
CONVERSATION = """query($id: ID!, $via: AccessSource) { conversation(id: $id, via: $via) {
  id status unreadCount mailbox { name } patient { fullName preferredPronoun }
  messages(last: 50) { totalCount pageInfo { hasPreviousPage startCursor } edges { node {
    id sequence direction body sentAt senderName attachments { filename contentType size url } } } } } }"""
SEARCH = "query($p: ID!, $q: String!) { searchPatients(practiceId: $p, query: $q) { id fullName accountNumber } }"
SEND = """mutation($c: ID!, $body: String) { sendMessage(conversationId: $c, body: $body) {
  body direction senderName clientMessageId attachments { filename } } }"""
MARK_READ = "mutation($c: ID!) { markConversationRead(conversationId: $c) { id unreadCount status } }"


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()
    await release_connection()


@pytest.fixture
def storage_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


@pytest.fixture
def limits(settings):
    def set_limits(**limits: int) -> None:
        settings.MAILBOX = {**settings.MAILBOX, **{name: (count, 3600) for name, count in limits.items()}}

    return set_limits


@dataclass
class Viewer:
    token: str
    http: Api
    ws: LiveClient

    async def over_http(self, query: str, variables: dict | None = None) -> dict:
        return await database_sync_to_async(self.http.post)(query, variables)

    async def over_ws(self, query: str, variables: dict | None = None, op_id: str = "op") -> dict:
        """The answer of one query or mutation on the socket: its `next` payload, then `complete`."""
        await self.ws.subscribe(op_id, query, variables)
        message = await self.ws.next_for(op_id)
        assert message["type"] == "next", message
        assert (await self.ws.next_for(op_id))["type"] == "complete"
        return {key: value for key, value in message["payload"].items() if key in ("data", "errors")}


async def viewer(user=None, patient=None, headers=HOST) -> Viewer:
    token = await database_sync_to_async(issue_token)(user=user, patient=patient)
    client = LiveClient(headers=list(headers))
    assert (await client.open(token))["type"] == "connection_ack"
    return Viewer(token=token, http=Api(token, Client()), ws=client)


def audit_rows_between(first: int, last: int | None = None) -> list[tuple]:
    """Who did what to which record, from where: everything of a row but its time, IP and request id."""
    rows = AuditEvent.objects.filter(pk__gt=first).order_by("pk")
    if last is not None:
        rows = rows.filter(pk__lte=last)
    return [
        (r.operation, r.action, r.actor_user_id, r.actor_patient_id, r.patient_id, r.object_type, r.object_id, r.via)
        for r in rows
    ]


def last_audit_id() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def http_answer(answer: dict) -> dict:
    return {key: value for key, value in answer.items() if key in ("data", "errors")}


async def both(v: Viewer, query: str, variables: dict) -> tuple[dict, list, dict, list]:
    """The HTTP answer and its audit rows, then the socket's answer and its audit rows."""
    before = await database_sync_to_async(last_audit_id)()
    over_http = http_answer(await v.over_http(query, variables))
    middle = await database_sync_to_async(last_audit_id)()
    over_ws = await v.over_ws(query, variables)
    http_rows = await database_sync_to_async(audit_rows_between)(before, middle)
    ws_rows = await database_sync_to_async(audit_rows_between)(middle)
    return over_http, http_rows, over_ws, ws_rows


def _with_attachment(world: World) -> None:
    actions.send_staff_message(
        acting_user=world.subscriber,
        conversation_id=world.conversation.pk,
        body="Your statement",
        attachments=[upload("statement.pdf", pdf_bytes(), "application/pdf")],
    )


QUERIES: dict[str, tuple[str, Callable[[World], dict]]] = {
    "me": (ME, lambda w: {}),
    "mailboxes": (MAILBOXES, lambda w: {"p": gid("Practice", w.practice.pk)}),
    "conversation": (CONVERSATION, lambda w: {"id": gid("Conversation", w.conversation.pk)}),
    "searchPatients": (SEARCH, lambda w: {"p": gid("Practice", w.practice.pk), "q": "garc mar"}),
}


@pytest.mark.parametrize("name", list(QUERIES))
async def test_a_query_over_the_socket_answers_and_audits_as_over_http(world, storage_dir, name):
    # given a conversation with a message carrying an attachment, and a subscriber's socket
    await database_sync_to_async(_with_attachment)(world)
    v = await viewer(world.subscriber)
    query, variables = QUERIES[name]

    # when the same query is sent over HTTP, then over the socket
    over_http, http_rows, over_ws, ws_rows = await both(v, query, variables(world))

    # then both answer the same data and errors (the unsubscribed mailbox's conversations are NOT_SUBSCRIBED),
    # and write the same audit rows
    assert over_http["data"] is not None, over_http
    assert [e["extensions"]["code"] for e in over_http.get("errors", [])] == (
        ["NOT_SUBSCRIBED"] if name == "mailboxes" else []
    )
    assert over_ws == over_http
    assert ws_rows == http_rows
    if name == "conversation":
        [edge] = over_ws["data"]["conversation"]["messages"]["edges"]
        [attachment] = edge["node"]["attachments"]
        assert attachment["url"].startswith("http://testserver/attachments/")
    if name in ("conversation", "searchPatients"):
        assert ws_rows  # reads of patient data are audited on the socket too
    await v.ws.close()


async def test_send_message_over_the_socket_answers_and_audits_as_over_http(world):
    v = await viewer(world.subscriber)
    variables = {"c": gid("Conversation", world.conversation.pk), "body": "Your refund was issued."}

    over_http, http_rows, over_ws, ws_rows = await both(v, SEND, variables)

    assert not over_http.get("errors"), over_http
    assert over_ws == over_http
    # the same rows, each naming its own new message
    without_object_id = [row[:6] + row[7:] for row in ws_rows]
    assert without_object_id == [row[:6] + row[7:] for row in http_rows]
    assert any(row[0] == "sendMessage" for row in ws_rows)
    bodies = await database_sync_to_async(lambda: list(Message.objects.values_list("sequence", "body")))()
    assert sorted(bodies) == [(1, "Your refund was issued."), (2, "Your refund was issued.")]
    await v.ws.close()


async def test_mark_read_over_the_socket_answers_and_audits_as_over_http(world):
    await database_sync_to_async(actions.send_patient_message)(
        acting_patient=world.patient, mailbox_id=world.billing.pk, body="Hello?"
    )
    v = await viewer(world.subscriber)
    variables = {"c": gid("Conversation", world.conversation.pk)}

    over_http, http_rows, over_ws, ws_rows = await both(v, MARK_READ, variables)

    assert not over_http.get("errors"), over_http
    assert over_ws == over_http
    assert over_ws["data"]["markConversationRead"]["unreadCount"] == 0
    assert ws_rows == http_rows
    await v.ws.close()


REFUSALS = {
    # another practice's conversation: NOT_FOUND, exactly like an unknown id (no existence leak)
    "other practice": ("subscriber", CONVERSATION, lambda w: {"id": gid("Conversation", 10**6)}, "NOT_FOUND"),
    "outsider": ("outsider", CONVERSATION, lambda w: {"id": gid("Conversation", w.conversation.pk)}, "NOT_FOUND"),
    "not subscribed": (
        "staff",
        CONVERSATION,
        lambda w: {"id": gid("Conversation", w.conversation.pk)},
        "NOT_SUBSCRIBED",
    ),
    "send unsubscribed": (
        "staff",
        SEND,
        lambda w: {"c": gid("Conversation", w.conversation.pk), "body": "x"},
        "NOT_SUBSCRIBED",
    ),
    "mark read outsider": ("outsider", MARK_READ, lambda w: {"c": gid("Conversation", w.conversation.pk)}, "NOT_FOUND"),
    "search other practice": (
        "outsider",
        SEARCH,
        lambda w: {"p": gid("Practice", w.practice.pk), "q": "garc"},
        "NOT_FOUND",
    ),
    "empty body": (
        "subscriber",
        SEND,
        lambda w: {"c": gid("Conversation", w.conversation.pk), "body": " "},
        "VALIDATION_ERROR",
    ),
}


@pytest.mark.parametrize("name", list(REFUSALS))
async def test_refusals_over_the_socket_give_the_http_codes_and_audit_rows(world, name):
    who, query, variables, code = REFUSALS[name]
    v = await viewer(getattr(world, who))

    over_http, http_rows, over_ws, ws_rows = await both(v, query, variables(world))

    assert over_http["errors"][0]["extensions"]["code"] == code
    assert over_ws == over_http
    assert ws_rows == http_rows
    assert await database_sync_to_async(Message.objects.count)() == 0
    await v.ws.close()


async def test_patient_token_asking_staff_queries_is_forbidden_on_the_socket(world):
    v = await viewer(patient=world.patient)
    variables = {"p": gid("Practice", world.practice.pk)}

    over_http, _, over_ws, _ = await both(v, MAILBOXES, variables)

    assert over_ws == over_http
    assert over_ws["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    await v.ws.close()


async def test_a_revoked_token_is_unauthenticated_on_the_socket_as_over_http(world, settings):
    # given a socket whose token is revoked (before the periodic re-check closes the socket)
    settings.MAILBOX = {**settings.MAILBOX, "LIVE_RECHECK_SECONDS": 60}
    v = await viewer(world.subscriber)
    await database_sync_to_async(revoke_tokens)(user=world.subscriber)

    over_http = http_answer(await v.over_http(ME))
    over_ws = await v.over_ws(ME)

    assert over_http["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert over_ws == over_http
    await v.ws.close()


async def test_the_send_rate_limit_counts_socket_and_http_sends_together(world, limits):
    limits(SEND_RATE_LIMIT=2)
    v = await viewer(world.subscriber)
    variables = {"c": gid("Conversation", world.conversation.pk), "body": "hello"}
    assert not (await v.over_http(SEND, variables)).get("errors")
    assert not (await v.over_ws(SEND, variables, "a")).get("errors")

    refused = await v.over_ws(SEND, variables, "b")

    [error] = refused["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert "try again in" in error["message"]
    assert await database_sync_to_async(Message.objects.count)() == 2
    await v.ws.close()


async def test_attachment_urls_on_a_secure_socket_are_https(world, storage_dir):
    await database_sync_to_async(_with_attachment)(world)
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient(headers=[(b"host", b"mail.example.org")])
    client.ws.scope["scheme"] = "wss"  # as daphne sets it behind TLS
    v = Viewer(token=token, http=Api(token), ws=client)
    with override_settings(ALLOWED_HOSTS=["mail.example.org"]):
        assert (await client.open(token))["type"] == "connection_ack"
        answer = await v.over_ws(CONVERSATION, {"id": gid("Conversation", world.conversation.pk)})
    [edge] = answer["data"]["conversation"]["messages"]["edges"]
    assert edge["node"]["attachments"][0]["url"].startswith("https://mail.example.org/attachments/")
    await client.close()


async def test_each_socket_operation_is_audited_under_its_own_request_id(world):
    v = await viewer(world.subscriber)
    variables = {"p": gid("Practice", world.practice.pk), "q": "garc"}
    before = await database_sync_to_async(last_audit_id)()
    await v.over_ws(SEARCH, variables, "a")
    await v.over_ws(SEARCH, variables, "b")

    ids = await database_sync_to_async(
        lambda: list(
            AuditEvent.objects.filter(pk__gt=before, operation="searchPatients").values_list("request_id", flat=True)
        )
    )()
    assert len(ids) == 2
    assert all(ids)
    assert ids[0] != ids[1]
    await v.ws.close()


# -- documents that cannot run ------------------------------------------------------------------------------------


async def error_frame(client: LiveClient, op_id: str) -> list[dict]:
    message = await client.next_for(op_id)
    assert message["type"] == "error", message
    return message["payload"]


SOCKET_REFUSALS = {
    "syntax error": ({"query": "query { me { id "}, "VALIDATION_ERROR", "Syntax Error"),
    "unknown operationName": (
        {"query": ME, "operationName": "Nope"},
        "VALIDATION_ERROR",
        'no operation named "Nope"',
    ),
    "two anonymous operations": (
        {"query": "query { me { id } } query { practices { id } }"},
        "VALIDATION_ERROR",
        "name the operation to run in operationName",
    ),
    "unknown subscription operationName": (
        {"query": MAILBOX_EVENTS, "operationName": "Nope"},
        "VALIDATION_ERROR",
        'no operation named "Nope"',
    ),
    "unknown field": ({"query": "query { me { shoeSize } }"}, "VALIDATION_ERROR", "shoeSize"),
    "unknown field in a subscription": (
        {"query": "subscription { portalEvents { shoeSize } }"},
        "VALIDATION_ERROR",
        "shoeSize",
    ),
    "query not a string": ({"query": 42}, "VALIDATION_ERROR", "query"),
    "variables not an object": ({"query": ME, "variables": [1]}, "VALIDATION_ERROR", "variables"),
    "too many tokens": ({"query": "query { " + "me { id } " * 1500 + "}"}, "QUERY_TOO_COMPLEX", "Simplify"),
}


@pytest.mark.parametrize("name", list(SOCKET_REFUSALS))
async def test_a_document_that_cannot_run_gets_the_protocol_error_message(world, caplog, name):
    payload, code, text = SOCKET_REFUSALS[name]
    v = await viewer(world.subscriber)
    caplog.set_level(logging.INFO)

    await v.ws.send({"id": "bad", "type": "subscribe", "payload": payload})

    # then an `error` message in the SPEC shape; the socket stays open and usable; nothing is logged as an error
    errors = await error_frame(v.ws, "bad")
    assert errors
    assert {error["extensions"]["code"] for error in errors} == {code}
    assert any(text in error["message"] for error in errors), errors
    assert "data" not in errors[0]
    answer = await v.over_ws(ME, {}, "after")
    assert answer["data"]["me"]["username"] == world.subscriber.username
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text
    await v.ws.close()


async def test_socket_and_http_refuse_an_invalid_query_with_the_same_errors(world):
    v = await viewer(world.subscriber)
    query = "query { me { shoeSize } }"
    over_http = http_answer(await v.over_http(query))

    await v.ws.subscribe("bad", query)
    errors = await error_frame(v.ws, "bad")

    assert errors == over_http["errors"]
    await v.ws.close()


def test_a_subscription_posted_over_http_is_refused_with_a_validation_error(world, caplog):
    api = Api.as_user(world.subscriber)
    caplog.set_level(logging.INFO)
    response = api.client.post(
        "/graphql",
        data={"query": MAILBOX_EVENTS, "variables": {"practiceId": gid("Practice", world.practice.pk)}},
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert error["message"] == "Subscriptions run over WebSocket (graphql-transport-ws) on this path."
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize(
    ("payload", "status", "text"),
    [
        ({"query": ME, "operationName": "Nope"}, 400, 'no operation named "Nope"'),
        ({"query": "fragment F on Query { me { id } }"}, 400, "name the operation to run in operationName"),
        ({"query": "query { me { id } } query { practices { id } }"}, 200, "must be the only defined operation"),
    ],
)
def test_http_refuses_an_operation_it_cannot_choose_with_a_validation_error(world, payload, status, text):
    api = Api.as_user(world.subscriber)
    response = api.client.post(
        "/graphql", data=payload, content_type="application/json", headers={"Authorization": f"Bearer {api.token}"}
    )

    assert response.status_code == status
    errors = response.json()["errors"]
    assert {error["extensions"]["code"] for error in errors} == {"VALIDATION_ERROR"}
    assert text in errors[0]["message"]
    assert Message.objects.count() == 0


async def test_a_browser_session_socket_answers_queries_until_the_session_ends(world):
    # given a socket opened with a signed-in browser session (no token)
    def make_session() -> SessionStore:
        session = SessionStore()
        session[SESSION_KEY] = str(world.subscriber.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = world.subscriber.get_session_auth_hash()
        session.save()
        return session

    session = await database_sync_to_async(make_session)()
    headers = [(b"cookie", f"sessionid={session.session_key}".encode()), *HOST, (b"origin", b"http://testserver")]
    client = LiveClient(headers=headers)
    assert (await client.open(payload={}))["type"] == "connection_ack"
    v = Viewer(token="", http=Api(), ws=client)

    # then its queries run as that user
    assert (await v.over_ws(ME, {}, "a"))["data"]["me"]["username"] == world.subscriber.username

    # and once the session is signed out, they are UNAUTHENTICATED, as an HTTP request with that cookie would be
    await database_sync_to_async(session.delete)()
    answer = await v.over_ws(ME, {}, "b")
    assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await client.close()


async def test_a_query_s_rows_over_the_socket_are_freed_when_it_ends_not_by_the_collector(world, cyclic_garbage):
    # given a subscriber's socket that has answered the conversation query once
    from core.models import Conversation, Mailbox, Patient

    v = await viewer(world.subscriber)
    variables = {"id": gid("Conversation", world.conversation.pk)}
    await v.over_ws(CONVERSATION, variables)
    cyclic_garbage()
    # when it is sent again
    answer = await v.over_ws(CONVERSATION, variables, op_id="again")
    left = [row for row in cyclic_garbage() if isinstance(row, (Conversation, Message, Mailbox, Patient))]
    await v.ws.close()

    # then the rows it loaded went when it ended (the executor and the operation's request are reference
    # cycles: rows its context still held would be unreachable garbage here, freed only by a collection)
    assert answer["data"]["conversation"]["patient"]["fullName"]
    assert not left, sorted({type(row).__name__ for row in left})
