"""With introspection off, error messages do not describe the schema: no "Did you mean …?" for any typo."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from core.tokens import issue_token
from tests.graphql_client import Api
from tests.live_client import LiveClient

# A typo of each kind graphql-core suggests for, with the name it would suggest.
TYPOS = [
    ("{ mailboxe(id: 1) { id } }", "mailboxes"),  # field
    ('{ mailbox(idd: "1") { id } }', "'id'"),  # argument
    ("query($s: MailboxStatu) { me { id } }", "MailboxStatus"),  # type
    ('{ mailboxes(practiceId: "1", status: ACTIV) { id } }', "ACTIVE"),  # enum literal
    ('{ mailbox(id: "1") { nam } }', "'name'"),  # field of a type
]
ENUM_VARIABLE = 'query($s: MailboxStatus) { mailboxes(practiceId: "1", status: $s) { id } }'


def messages(answer: dict) -> list[str]:
    return [error["message"] for error in answer["errors"]]


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "staff"])
@pytest.mark.parametrize(("document", "suggestion"), TYPOS, ids=[d for d, _ in TYPOS])
def test_a_typo_gets_no_suggestion_while_introspection_is_off(world, settings, signed_in, document, suggestion):
    # given production settings
    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": False}
    api = Api.as_user(world.subscriber) if signed_in else Api()

    # when a document with a typo is sent
    answer = api.post(document)

    # then it is refused as invalid, saying what is wrong but not what exists
    assert {error["extensions"]["code"] for error in answer["errors"]} == {"VALIDATION_ERROR"}
    for message in messages(answer):
        assert "Did you mean" not in message
        assert suggestion not in message
    assert messages(answer)[-1].endswith(".")


def test_a_bad_enum_variable_gets_no_suggestion_while_introspection_is_off(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": False}

    answer = Api.as_user(world.subscriber).post(ENUM_VARIABLE, {"s": "ACTIV"})

    assert messages(answer) == [
        "Variable '$s' has invalid value: Value 'ACTIV' does not exist in 'MailboxStatus' enum."
    ]
    assert answer["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"


def test_suggestions_stay_where_introspection_is_on(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": True}

    answer = Api.as_user(world.subscriber).post("{ mailboxe(id: 1) { id } }")

    assert messages(answer) == ["Cannot query field 'mailboxe' on type 'Query'. Did you mean 'mailbox' or 'mailboxes'?"]


@pytest.fixture
async def _close_worker_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_worker_thread_connections")
async def test_a_subscription_typo_gets_no_suggestion_over_the_websocket(world, settings):
    # given production settings and a signed-in socket
    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": False}
    client = LiveClient()
    assert (await client.open(await database_sync_to_async(issue_token)(user=world.subscriber)))["type"] == (
        "connection_ack"
    )

    # when a subscription with a misspelt field is sent
    await client.subscribe("s", 'subscription { mailboxEvent(practiceId: "1") { cursor } }')
    message = await client.next_for("s")

    # then it is refused without naming the real field
    errors = message["payload"] if isinstance(message["payload"], list) else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert "Did you mean" not in errors[0]["message"]
    assert "mailboxEvents" not in errors[0]["message"]
    await client.close()
