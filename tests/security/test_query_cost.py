"""Cost and answer-size limits: a document within the field, alias and depth limits can still ask for tens of
thousands of rows (`conversations(first: 100) { … messages(last: 100) }` under a few aliases took 16.8 s).
The estimate multiplies page sizes through nesting and refuses with QUERY_TOO_COMPLEX before any resolver runs;
the encoded answer is bounded too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from graphql import parse

from bench import queries as bench_queries
from core import actions
from core.live import SHARED, encode_cursor
from core.live_db import live_db, release_connection
from core.models import AuditEvent, Conversation, Event, Message, MessageDirection
from core.tokens import issue_token
from graph.cost import estimate_rows
from graph.schema import schema
from tests.graphql_client import Api, gid
from tests.live_client import CONVERSATION_EVENTS, LiveClient

WEB_JS = Path(__file__).resolve().parents[2] / "web" / "static" / "web" / "js"


def mailbox_pages(aliases: int, conversations: str = "first: 100", messages: str = "last: 100") -> str:
    """The issue's document: each alias a mailbox's conversations with their messages."""
    one = (
        "mailbox(id: $m) {{ conversations{c} {{ edges {{ node {{ id messages{m} {{ edges {{ node {{ "
        "id sequence body sentAt }} }} }} }} }} }} }}"
    ).format(c=f"({conversations})" if conversations else "", m=f"({messages})" if messages else "")
    variables = "$m: ID!, $n: Int" if "$n" in conversations + messages else "$m: ID!"
    return f"query({variables}) {{ " + " ".join(f"a{i}: {one}" for i in range(aliases)) + " }"


def test_the_issue_document_is_refused_before_any_resolver_with_estimate_and_limit(world):
    api = Api.as_user(world.subscriber)
    api.post("{ __typename }")  # the token's first use records it
    with CaptureQueriesContext(connection) as captured:
        answer = api.post(mailbox_pages(4), {"m": gid("Mailbox", world.billing.pk)})

    assert answer["data"] is None
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["estimatedRows"] > error["extensions"]["limit"] == 10_000
    assert "10,000" in error["message"]
    assert "first/last" in error["message"]
    assert all("core_apitoken" in q["sql"] for q in captured.captured_queries), captured.captured_queries
    assert not AuditEvent.objects.exists()  # nothing was read


def test_the_estimate_multiplies_page_sizes_through_nesting(world):
    document = parse(mailbox_pages(1))
    # 100 conversations + 100 × 100 messages
    assert estimate_rows(schema._schema, document, operation_name=None, variables={}, stop_above=10**9) == 10_100
    no_arguments = parse(mailbox_pages(1, conversations="", messages=""))
    # the default page (50) at both levels
    assert estimate_rows(schema._schema, no_arguments, operation_name=None, variables={}, stop_above=10**9) == 2_550
    # a list without paging counts 10 items; a list of scalars (permissions) is part of its row
    users = parse('{ practiceUsers(practiceId: "x") { role permissions user { id } } }')
    assert estimate_rows(schema._schema, users, operation_name=None, variables={}, stop_above=10**9) == 10
    capped = parse(mailbox_pages(1, conversations="first: 5000", messages="last: 1"))
    # capped at PAGE_MAX_SIZE (100), as the server caps the page
    assert estimate_rows(schema._schema, capped, operation_name=None, variables={}, stop_above=10**9) == 200


def test_default_page_sizes_count_when_first_and_last_are_not_given(world):
    answer = Api.as_user(world.subscriber).post(
        mailbox_pages(4, conversations="", messages=""), {"m": gid("Mailbox", world.billing.pk)}
    )
    assert answer["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"  # 4 × (50 + 50 × 50)


@pytest.mark.parametrize("order", [(5, 100), (100, 5)])
def test_page_sizes_in_variables_are_resolved_on_every_request_of_a_cached_document(world, order):
    """Validation results are cached per document; the estimate per document and page size, since `$n` changes
    per request."""
    api = Api.as_user(world.subscriber)
    document = mailbox_pages(1, conversations="first: $n", messages="last: $n")
    for n in order:
        answer = api.post(document, {"m": gid("Mailbox", world.billing.pk), "n": n})
        if n == 100:
            assert answer["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", answer
        else:
            assert "errors" not in answer, answer
            assert answer["data"]["a0"]["conversations"]["edges"][0]["node"]["id"]


def test_a_page_size_sent_as_a_whole_float_counts_as_that_many_rows(world):
    # graphql-core takes 100.0 for an Int: the estimate must too, or it would fall back to the default page size
    api = Api.as_user(world.subscriber)
    document = mailbox_pages(1, conversations="first: $n", messages="last: $n")
    answer = api.post(document, {"m": gid("Mailbox", world.billing.pk), "n": 100.0})
    assert answer["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", answer


def test_the_limit_is_a_setting(world, settings):
    api = Api.as_user(world.subscriber)
    document = mailbox_pages(1, conversations="first: 10", messages="last: 10")  # 110 rows
    assert "errors" not in api.post(document, {"m": gid("Mailbox", world.billing.pk)})

    settings.MAILBOX = {**settings.MAILBOX, "QUERY_MAX_COST": 100}
    answer = api.post(document, {"m": gid("Mailbox", world.billing.pk)})
    assert answer["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert "the limit is 100" in answer["errors"][0]["message"]


def _workbench_documents() -> dict[str, str]:
    """Every GraphQL document the web client sends, with its `${…}` field constants filled in."""
    sources = {path.name: path.read_text() for path in sorted(WEB_JS.glob("*.js"))}
    constants = {
        name: body for text in sources.values() for name, body in re.findall(r"const (\w+_FIELDS) = `([^`]*)`", text)
    }
    for _ in range(3):  # constants built from constants
        known = dict(constants)
        constants = {k: re.sub(r"\$\{(\w+)\}", lambda m, known=known: known[m.group(1)], v) for k, v in known.items()}
    documents = {}
    for name, text in sources.items():
        for match in re.finditer(r"`\s*((?:query|subscription|mutation)\b[^`]*|\{[^`]*)`", text):
            body = re.sub(r"\$\{(\w+)\}", lambda m: constants.get(m.group(1), m.group(0)), match.group(1))
            if "${" not in body and ("{" in body):
                documents[f"{name}:{text.count(chr(10), 0, match.start()) + 1}"] = body
    return documents


def test_every_workbench_and_bench_document_is_within_the_default_limit(settings):
    limit = settings.MAILBOX["QUERY_MAX_COST"]
    documents = {key: (body, {}) for key, body in _workbench_documents().items()}
    assert len(documents) > 20
    assert any("messages(last: 50)" in body for body, _ in documents.values())
    bench = {
        "mailboxes page": (bench_queries.MAILBOXES_PAGE, {"conversations": 2, "messages": 3}),
        "conversations page 100": (bench_queries.CONVERSATIONS_PAGE, {"conversations": 1000, "messages": 3}),
        "conversations page 50": (bench_queries.CONVERSATIONS_PAGE, {"conversations": 50, "messages": 5}),
        "messages page": (bench_queries.MESSAGES_PAGE, {"messages": 1000}),
        "thread": (bench_queries.THREAD_PAGE_WITH_MAILBOX, {"messages": 50}),
    }
    for key, (body, variables) in {**documents, **bench}.items():
        estimate = estimate_rows(
            schema._schema, parse(body), operation_name=None, variables=variables, stop_above=limit
        )
        assert estimate <= limit, f"{key}: {estimate} rows"


def _long_thread(world, messages: int, size: int) -> Conversation:
    conversation = world.conversation
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            sequence=n,
            portal_sequence=n,
            direction=MessageDirection.FROM_PATIENT,
            sender_patient=world.patient,
            body="é" * size,
            sent_at=timezone.now(),
        )
        for n in range(1, messages + 1)
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_sequence=messages, portal_last_sequence=messages)
    return conversation


THREAD = "query($c: ID!) { conversation(id: $c) { id messages(last: 50) { edges { node { sequence body } } } } }"


def test_an_answer_over_the_byte_limit_is_replaced_by_a_clear_error(world, settings):
    conversation = _long_thread(world, 20, 5_000)  # ~ 20 × 30 kB once escaped
    settings.MAILBOX = {**settings.MAILBOX, "RESPONSE_MAX_BYTES": 100_000}
    api = Api.as_user(world.subscriber)

    answer = api.post(THREAD, {"c": gid("Conversation", conversation.pk)})
    [error] = answer["errors"]
    assert answer["data"] is None
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["responseBytes"] > 100_000 == error["extensions"]["limit"]
    assert "100,000" in error["message"]
    assert "smaller pages" in error["message"]

    small = api.post(THREAD.replace("last: 50", "last: 2"), {"c": gid("Conversation", conversation.pk)})
    assert [e["node"]["sequence"] for e in small["data"]["conversation"]["messages"]["edges"]] == [19, 20]


@pytest.mark.django_db(transaction=True)
async def test_the_byte_limit_and_the_cost_limit_hold_over_the_websocket_too(world, settings):
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    after = await database_sync_to_async(_cursor_now)(world)
    client = LiveClient()
    try:
        assert (await client.open(token))["type"] == "connection_ack"
        await client.subscribe(
            "c", CONVERSATION_EVENTS, {"conversationId": gid("Conversation", world.conversation.pk), "after": after}
        )
        await client.nothing_for(0.2)
        settings.MAILBOX = {**settings.MAILBOX, "RESPONSE_MAX_BYTES": 20_000}

        # an event too large to send arrives as the error, and the stream goes on
        await _patient_sends(world, "é" * 10_000)
        message = await client.next_for("c")
        assert message["payload"]["data"] is None
        assert message["payload"]["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        await _patient_sends(world, "short")
        assert (await client.event("c", "conversationEvents"))["message"]["body"] == "short"

        # a subscription document over the cost limit is refused when it subscribes
        settings.MAILBOX = {**settings.MAILBOX, "QUERY_MAX_COST": 0}
        await client.subscribe(
            "costly",
            CONVERSATION_EVENTS.replace("direction", "direction attachments { filename }"),
            {"conversationId": gid("Conversation", world.conversation.pk)},
        )
        assert await client.refusal("costly") == "QUERY_TOO_COMPLEX"
    finally:
        await client.close()
        await database_sync_to_async(connections.close_all)()
        await live_db(SHARED.clear)()
        await release_connection()


def _cursor_now(world) -> str:
    mailbox = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Baseline")
    return encode_cursor(Event.objects.get(mailbox_id=mailbox.pk).pk)


def _patient_sends(world, body: str):
    return database_sync_to_async(actions.send_patient_message)(
        acting_patient=world.patient, mailbox_id=world.billing.pk, body=body
    )


def test_a_page_size_of_the_wrong_type_is_refused_and_not_kept_by_the_estimate_cache(world):
    from graph import cost

    api = Api.as_user(world.subscriber)
    document = mailbox_pages(1, conversations="first: $n", messages="last: $n")
    sent = "9" * 50_000
    answer = api.post(document, {"m": gid("Mailbox", world.billing.pk), "n": sent})
    assert answer["errors"][0]["extensions"]["code"] != "INTERNAL_SERVER_ERROR", answer
    assert answer.get("data") is None
    kept = [key for _, _, by_values in cost._ESTIMATES.values() for key in by_values]
    assert not any(value == sent for key in kept for _, value in key)
    # a number is kept: the next request of that size reads it
    assert "errors" not in api.post(document, {"m": gid("Mailbox", world.billing.pk), "n": 5})
    assert any((int, 5) in key for _, _, by_values in cost._ESTIMATES.values() for key in by_values)
