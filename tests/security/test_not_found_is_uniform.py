"""Another practice's record answers exactly like an id that never existed, on every id argument of the schema.

Ids are sequential: if the answers differed, probing ids one by one would count another practice's mailboxes,
conversations and patients. The root fields and their ID-typed arguments are read from the schema itself, so a
new query, mutation or subscription is probed without changing this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connections
from django.utils import timezone
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_non_null_type,
)

from core import actions
from core.errors import NOT_FOUND_MESSAGE
from core.live import SHARED
from core.live_db import live_db, release_connection
from core.models import Conversation, QuickReply
from core.tokens import issue_token
from graph.schema import schema
from tests.graphql_client import Api, gid
from tests.live_client import LiveClient

MADE_UP_PK = 987_654_321
# Argument names that do not spell their record type (`<type>Id` / `<type>Ids` is the convention).
TYPE_OF_ARGUMENT = {"assignee": "User", "sender": "User"}


@dataclass(frozen=True)
class Probe:
    root: str  # Query, Mutation or Subscription
    field: str
    argument: str
    record_type: str


@dataclass
class Records:
    """Per record type: a pk in the viewer's own practice (so the other arguments pass) and one in the other."""

    own: dict[str, int]
    others: dict[str, int]


def id_probes(root: GraphQLObjectType | None) -> list[Probe]:
    probes = []
    for name, field in (root.fields if root else {}).items():
        for argument, definition in field.args.items():
            named = get_named_type(definition.type)
            if isinstance(named, GraphQLScalarType) and named.name == "ID":
                probes.append(Probe(root.name, name, argument, _record_type(field, argument)))
    return probes


def _record_type(field: GraphQLField, argument: str) -> str:
    if argument == "id":
        return get_named_type(field.type).name
    stem = argument.removesuffix("Ids").removesuffix("Id")
    return TYPE_OF_ARGUMENT.get(stem, stem[:1].upper() + stem[1:])


def records(world) -> Records:
    """The other practice (`south`) is the viewer's own; `north` is the practice being probed."""
    own_conversation = Conversation.objects.create(
        practice=world.other_practice,
        mailbox=world.outside_mailbox,
        patient=world.outside_patient,
        last_activity_at=timezone.now(),
    )
    own_message = actions.send_staff_message(
        acting_user=world.outsider, conversation_id=own_conversation.pk, body="Our own thread"
    )
    their_message = actions.send_staff_message(
        acting_user=world.subscriber, conversation_id=world.conversation.pk, body="Their thread"
    )
    own_reply = QuickReply.objects.create(practice=world.other_practice, title="Ours", body="Our text")
    their_reply = QuickReply.objects.create(practice=world.practice, title="Theirs", body="Their text")
    return Records(
        own={
            "Practice": world.other_practice.pk,
            "Mailbox": world.outside_mailbox.pk,
            "Conversation": own_conversation.pk,
            "Patient": world.outside_patient.pk,
            "User": world.outsider.pk,
            "Message": own_message.pk,
            "QuickReply": own_reply.pk,
        },
        others={
            "Practice": world.practice.pk,
            "Mailbox": world.billing.pk,
            "Conversation": world.conversation.pk,
            "Patient": world.patient.pk,
            "User": world.owner.pk,  # a member of the probed practice only
            "Message": their_message.pk,
            "QuickReply": their_reply.pk,
        },
    )


def operation(probe: Probe, records: Records, pk: int) -> tuple[str, dict[str, Any]]:
    """A document calling the field with every required argument filled from the viewer's own practice, the
    probed argument set to `pk` of its record type."""
    root = getattr(schema._schema, f"{probe.root.lower()}_type")
    field = root.fields[probe.field]
    declarations, arguments, variables = [], [], {}
    for name, definition in field.args.items():
        if name != probe.argument and not is_non_null_type(definition.type):
            continue
        if name == probe.argument:
            value: Any = gid(probe.record_type, pk)
        else:
            value = _own_value(probe, name, definition.type, records)
        if isinstance(_nullable(definition.type), GraphQLList):
            value = [value]
        declarations.append(f"${name}: {definition.type}")
        arguments.append(f"{name}: ${name}")
        variables[name] = value
    selection = " { __typename }" if isinstance(get_named_type(field.type), GraphQLObjectType) else ""
    document = f"{probe.root.lower()}({', '.join(declarations)}) {{ {probe.field}({', '.join(arguments)}){selection} }}"
    return document, variables


def _nullable(type_: GraphQLInputType) -> GraphQLInputType:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _own_value(probe: Probe, name: str, type_: GraphQLInputType, records: Records) -> Any:
    named = get_named_type(type_)
    if isinstance(named, GraphQLEnumType):
        return next(iter(named.values))
    if isinstance(named, GraphQLScalarType):
        if named.name == "ID":
            record_type = _record_type(getattr(schema._schema, f"{probe.root.lower()}_type").fields[probe.field], name)
            return gid(record_type, records.own[record_type])
        plain = {"String": "Probe", "Boolean": False, "Int": 1}
        if named.name in plain:
            return plain[named.name]
    pytest.fail(f"{probe.root}.{probe.field}: teach this test a value for the required argument {name}: {type_}")


def pk_of_other_practice(probe: Probe, records: Records) -> int:
    if probe.record_type not in records.others:
        pytest.fail(f"{probe.root}.{probe.field}({probe.argument}): add a {probe.record_type} record to records()")
    return records.others[probe.record_type]


def outcome(answer: dict[str, Any]) -> tuple:
    errors = tuple(
        (e.get("extensions", {}).get("code"), e["message"], tuple(e.get("path") or ()))
        for e in answer.get("errors") or ()
    )
    return errors, answer.get("data")


def viewer_token(world, viewer: str) -> str:
    return issue_token(user=world.outsider) if viewer == "staff" else issue_token(patient=world.outside_patient)


QUERY_AND_MUTATION_PROBES = id_probes(schema._schema.query_type) + id_probes(schema._schema.mutation_type)
SUBSCRIPTION_PROBES = id_probes(schema._schema.subscription_type)


def test_the_probes_cover_the_id_arguments_the_issue_names():
    probed = {(p.root, p.field, p.argument) for p in QUERY_AND_MUTATION_PROBES + SUBSCRIPTION_PROBES}
    assert {
        ("Query", "mailbox", "id"),
        ("Query", "conversation", "id"),
        ("Query", "patient", "id"),
        ("Query", "searchMessages", "practiceId"),
        ("Query", "searchMessages", "mailboxId"),
        ("Mutation", "setMailboxSubscribers", "userIds"),
        ("Mutation", "startConversation", "patientId"),
        ("Subscription", "mailboxEvents", "practiceId"),
        ("Subscription", "conversationEvents", "conversationId"),
    } <= probed


@pytest.mark.parametrize("viewer", ["staff", "patient"])
@pytest.mark.parametrize("probe", QUERY_AND_MUTATION_PROBES, ids=lambda p: f"{p.field}.{p.argument}")
def test_another_practice_s_id_answers_like_a_made_up_one_over_http(world, probe, viewer):
    # given a staff user (or patient) of the other practice, with everything else valid in their own practice
    known = records(world)
    api = Api(viewer_token(world, viewer))

    # when they send this practice's real id, then an id that never existed
    real = api.post(*operation(probe, known, pk_of_other_practice(probe, known)))
    made_up = api.post(*operation(probe, known, MADE_UP_PK))

    # then both answers are the same, word for word (a refusal; for a filter argument, the same empty answer)
    assert outcome(real) == outcome(made_up)


def test_the_mailbox_example_of_the_issue_names_no_record_type(world):
    api = Api(issue_token(user=world.outsider))
    document = "query($id: ID!) { mailbox(id: $id) { name } }"

    answers = [api.post(document, {"id": gid("Mailbox", pk)}) for pk in (world.billing.pk, MADE_UP_PK)]

    for answer in answers:
        assert [(e["extensions"]["code"], e["message"]) for e in answer["errors"]] == [("NOT_FOUND", NOT_FOUND_MESSAGE)]


# ---- subscriptions, over a real WebSocket ---------------------------------------------------------


@pytest.fixture
async def _close_worker_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()
    await live_db(SHARED.clear)()
    await release_connection()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_worker_thread_connections")
@pytest.mark.parametrize("viewer", ["staff", "patient"])
@pytest.mark.parametrize("probe", SUBSCRIPTION_PROBES, ids=lambda p: f"{p.field}.{p.argument}")
async def test_another_practice_s_id_answers_like_a_made_up_one_over_the_websocket(world, probe, viewer):
    # given a staff user (or patient) of the other practice on a socket
    known = await database_sync_to_async(records)(world)
    token = await database_sync_to_async(viewer_token)(world, viewer)
    client = LiveClient()
    assert (await client.open(token))["type"] == "connection_ack"

    # when they subscribe with this practice's real id, then with an id that never existed
    answers = []
    for op_id, pk in (("real", pk_of_other_practice(probe, known)), ("made-up", MADE_UP_PK)):
        document, variables = operation(probe, known, pk)
        await client.subscribe(op_id, document, variables)
        message = await client.next_for(op_id)
        payload = message.get("payload")  # an `error` message carries the list of errors itself
        answers.append((message["type"], outcome({"errors": payload} if isinstance(payload, list) else payload)))

    # then both are the same refusal, word for word
    real, made_up = answers
    assert real == made_up
    assert real[1][0], real
    await client.close()
