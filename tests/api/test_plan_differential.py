"""The compiled execution path (`graph.compiled`) answers exactly what graphql-core answers: the gate for changing
it, and for upgrading strawberry or graphql-core.

Every query document the suite and the Workbench send (string literals of `tests/`, templates of `web/`), and
documents generated from the schema with random variables, run over HTTP twice on the same data and viewer: from
the plan and on graphql-core alone. Each run is rolled back (the audit rows one writes would be data for the other),
and both carry the same request id. Their `data` must be the same JSON text (key order included), their errors the
same messages, paths and codes, in the same order.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import graphql
import orjson
import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema

from core.actions.conversations import retract_message, send_patient_message, send_staff_message
from core.actions.pool import add_internal_note, assign_conversation
from core.tokens import issue_token
from graph import compiled
from graph.schema import schema
from tests.graphql_client import gid
from tests.security.test_fuzz import ids_of, scalars
from tests.sent_documents import valid_operations, web_templates

ROOT = Path(__file__).resolve().parents[2]
VIEWERS = ("owner_a", "subscriber_a", "patient_a", "owner_b", "anonymous")


class _RolledBack(Exception):
    pass


def _query_documents() -> list[str]:
    """Query documents written in the tests and the Workbench's scripts that are valid for the schema."""
    texts: set[str] = set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "{" in node.value:
                texts.add(node.value)
    return valid_operations(texts | web_templates(), graphql.OperationType.QUERY)


DOCUMENTS = _query_documents()


@pytest.fixture
def rich_world(world):
    """The world with a thread worth reading: the patient's message, an answer, a note, a withdrawn answer, an
    assignment, and the patient's message in a second mailbox."""
    conversation_id = send_patient_message(
        acting_patient=world.patient, mailbox_id=world.billing.pk, body="Is my bill right?"
    ).conversation_id
    send_staff_message(acting_user=world.subscriber, conversation_id=conversation_id, body="Looking into it.")
    add_internal_note(acting_user=world.subscriber, conversation_id=conversation_id, body="Check the 2025 invoice.")
    wrong = send_staff_message(acting_user=world.subscriber, conversation_id=conversation_id, body="Paid in full.")
    retract_message(acting_user=world.subscriber, message_id=wrong.pk, reason="Wrong patient")
    assign_conversation(acting_user=world.subscriber, conversation_id=conversation_id, user_id=world.subscriber.pk)
    send_patient_message(acting_patient=world.other_patient, mailbox_id=world.billing.pk, body="Hello")
    world.thread_id = conversation_id
    return world


def _clients(world) -> dict[str, Client]:
    tokens = {
        "owner_a": issue_token(user=world.owner),
        "subscriber_a": issue_token(user=world.subscriber),
        "patient_a": issue_token(patient=world.patient),
        "owner_b": issue_token(user=world.outsider),
    }
    made = {role: Client(headers={"Authorization": f"Bearer {token}"}) for role, token in tokens.items()}
    made["anonymous"] = Client()
    return made


def _answer(client: Client, query: str, variables: dict, *, planned: bool) -> tuple[int, dict]:
    body = json.dumps({"query": query, "variables": variables})
    try:
        with transaction.atomic(), compiled.plans_switched(planned):
            response = client.post(
                "/graphql", data=body, content_type="application/json", headers={"X-Request-ID": "differential"}
            )
            raise _RolledBack(response)
    except _RolledBack as rolled_back:
        response = rolled_back.args[0]
    return response.status_code, response.json()


def _comparable(answer: dict) -> tuple[bytes, list]:
    errors = [
        (error.get("message"), error.get("path"), (error.get("extensions") or {}).get("code"))
        for error in answer.get("errors") or []
    ]
    return orjson.dumps(answer.get("data")), errors


def assert_same_answers(client: Client, query: str, variables: dict) -> dict:
    before = compiled.STATS["planned"]
    planned = _answer(client, query, variables, planned=True)
    ran_planned = compiled.STATS["planned"] > before
    reference = _answer(client, query, variables, planned=False)
    assert planned[0] == reference[0], (query, variables, planned, reference)
    assert _comparable(planned[1]) == _comparable(reference[1]), (query, variables)
    return {"planned": ran_planned, "errors": bool(reference[1].get("errors"))}


def _variable_values(document: str, world) -> list[dict]:
    """Two assignments per document: the world's own records, then the other practice's and odd values."""
    operation = next(d for d in graphql.parse(document).definitions if isinstance(d, graphql.OperationDefinitionNode))
    own = {
        "practice": gid("Practice", world.practice.pk),
        "mailbox": gid("Mailbox", world.billing.pk),
        "patient": gid("Patient", world.patient.pk),
        "user": gid("User", world.subscriber.pk),
        "assignee": gid("User", world.subscriber.pk),
        "": gid("Conversation", world.thread_id),
        "String": "bill",
        "Int": 5,
        "Boolean": True,
    }
    other = {
        "practice": gid("Practice", world.other_practice.pk),
        "mailbox": gid("Mailbox", world.outside_mailbox.pk),
        "patient": gid("Patient", world.outside_patient.pk),
        "user": gid("User", world.outsider.pk),
        "assignee": "garbage",
        "": gid("Conversation", -1),
        "String": "",
        "Int": 1,
        "Boolean": False,
    }
    assignments = []
    for pool in (own, other):
        values = {}
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            named = graphql.get_named_type(graphql.type_from_ast(schema._schema, definition.type))
            values[name] = _value_for(name, named, pool)
        assignments.append(values)
    return assignments


def _value_for(name: str, named, pool: dict):
    if named.name == "ID":
        return next(
            pool[key] for key in ("practice", "mailbox", "patient", "assignee", "user", "") if key in name.lower()
        )
    if isinstance(named, graphql.GraphQLEnumType):
        return next(iter(named.values))
    return pool.get(named.name)


def test_the_suite_and_the_workbench_send_enough_query_documents_to_compare():
    assert len(DOCUMENTS) >= 80, len(DOCUMENTS)


def test_every_query_document_of_the_suite_answers_alike_from_the_plan_and_graphql_core(rich_world):
    clients = _clients(rich_world)
    outcomes = {"planned": 0, "errors": 0, "runs": 0}

    for document in DOCUMENTS:
        for variables in _variable_values(document, rich_world):
            for viewer in VIEWERS:
                outcome = assert_same_answers(clients[viewer], document, variables)
                outcomes["runs"] += 1
                outcomes["planned"] += outcome["planned"]
                outcomes["errors"] += outcome["errors"]

    print(f"\ndifferential: {len(DOCUMENTS)} documents, {outcomes}")
    assert outcomes["planned"] > outcomes["runs"] * 0.9  # the plan really ran (a few fall back: `node`)
    assert 0 < outcomes["errors"] < outcomes["runs"]  # refusals and errors were compared too


GENERATED_EXAMPLES = 60


@settings(
    max_examples=GENERATED_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_generated_query_documents_with_random_variables_answer_alike(rich_world, data):
    graphql_schema = schema._schema
    custom = scalars(rich_world)
    roots = list(graphql_schema.query_type.fields)
    query = data.draw(
        st.one_of([from_schema(graphql_schema, fields=[root], custom_scalars=custom) for root in roots]),
        label="query",
    )
    document, variables = _with_variables(query, data, rich_world)
    viewer = data.draw(st.sampled_from(VIEWERS), label="viewer")

    assert_same_answers(_clients_of(rich_world)[viewer], document, variables)


def _clients_of(world) -> dict[str, Client]:
    if not hasattr(world, "_clients"):
        world._clients = _clients(world)
    return world._clients


def _with_variables(query: str, data, world) -> tuple[str, dict]:
    """The generated document with some of its literal ID, Int and Boolean arguments made variables, and a
    `@skip`/`@include` on a random field bound to a random Boolean variable."""
    document = graphql.parse(query)
    ids = ids_of(world)
    values: dict = {}
    definitions: list[graphql.VariableDefinitionNode] = []

    def variable(type_name: str, value) -> graphql.VariableNode:
        name = f"v{len(values)}"
        values[name] = value
        definitions.append(
            graphql.VariableDefinitionNode(
                variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                type=graphql.NamedTypeNode(name=graphql.NameNode(value=type_name)),
                directives=(),
            )
        )
        return graphql.VariableNode(name=graphql.NameNode(value=name))

    class Variables(graphql.Visitor):
        def enter_argument(self, node, *_):
            value = node.value
            if isinstance(value, graphql.StringValueNode) and value.value in ids and data.draw(st.booleans()):
                return graphql.ArgumentNode(name=node.name, value=variable("ID", data.draw(st.sampled_from(ids))))
            if isinstance(value, graphql.IntValueNode) and data.draw(st.booleans()):
                return graphql.ArgumentNode(
                    name=node.name, value=variable("Int", data.draw(st.integers(min_value=-2, max_value=60)))
                )
            return None

        def enter_field(self, node, *_):
            if node.name.value != "__typename" and data.draw(st.integers(0, 5)) == 0:
                directive = data.draw(st.sampled_from(["skip", "include"]))
                condition = graphql.DirectiveNode(
                    name=graphql.NameNode(value=directive),
                    arguments=(
                        graphql.ArgumentNode(
                            name=graphql.NameNode(value="if"), value=variable("Boolean", data.draw(st.booleans()))
                        ),
                    ),
                )
                return graphql.FieldNode(
                    alias=node.alias,
                    name=node.name,
                    arguments=node.arguments,
                    directives=(*(node.directives or ()), condition),
                    selection_set=node.selection_set,
                )
            return None

    changed = graphql.visit(document, Variables())
    operation = changed.definitions[0]
    operation = graphql.OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=tuple(definitions),
        directives=operation.directives,
        selection_set=operation.selection_set,
    )
    return graphql.print_ast(graphql.DocumentNode(definitions=(operation,))), values


def test_the_plan_gives_no_info_only_to_methods_that_read_nothing_of_it_but_its_context():
    from graph.compiled import _reads_only_context

    def reads_context(self, info):
        return info.context.patient is not None and info.context.memo("k", lambda: 1)

    def passes_info_on(self, info):
        return len(str(info.context)) + len(str(info))

    def captures_info(self, info):
        return (lambda: info.context)()

    def reads_the_path(self, info):
        return info.path

    def reassigns(self, info):
        info = None
        return info

    assert _reads_only_context(reads_context, "info")
    for function in (passes_info_on, captures_info, reads_the_path, reassigns):
        assert not _reads_only_context(function, "info"), function.__name__
