"""Schema-driven fuzzing over HTTP: every generated operation, as every role, gets a well-formed answer.

Valid queries and mutations come from the live schema (hypothesis-graphql), with IDs drawn from both
practices plus malformed ones, sent as practice A's owner, A's patient, practice B's owner, and anonymously.
Invalid operations (schema violations, random text, wrong variable types), strings holding NUL, lone surrogates or
invisible characters, and malformed HTTP bodies (not UTF-8, not an object, nested too deeply, multipart of any
shape) are sent too. Every answer must
be below 500, carry only SPEC error codes (never INTERNAL_SERVER_ERROR), and B's answers never contain
A's names or account numbers.

CI runs a bounded, derandomized sample (FUZZ_EXAMPLES per role, 150 by default). A longer run:

    FUZZ_EXAMPLES=5000 python -m pytest -q tests/security/test_fuzz.py
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import graphql
import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema

from core.errors import ErrorCode
from core.text import has_unstorable_characters
from core.tokens import issue_token
from graph.schema import schema
from tests.graphql_client import gid

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
SPEC_CODES = {code.value for code in ErrorCode}
ROLES = ("owner_a", "patient_a", "owner_b", "anonymous")

fuzz_settings = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Invalid input is cheaper to cover: a third as many examples.
invalid_settings = settings(fuzz_settings, max_examples=max(1, EXAMPLES // 3))


def practice_a_markers(world) -> list[str]:
    """Strings only practice A's records hold (B's patient shares the account number A-1001, so not that)."""
    return [
        world.practice.name, world.patient.first_name, world.patient.last_name, world.other_patient.last_name,
        world.other_patient.account_number, world.owner.username, world.subscriber.username,
        world.owner.full_name, world.clinician.username,
    ]  # fmt: skip


def ids_of(world) -> list[str]:
    return [
        gid("Practice", world.practice.pk), gid("Practice", world.other_practice.pk),
        gid("Mailbox", world.billing.pk), gid("Mailbox", world.scheduling.pk), gid("Mailbox", world.outside_mailbox.pk),
        gid("Conversation", world.conversation.pk), gid("Patient", world.patient.pk),
        gid("Patient", world.outside_patient.pk), gid("User", world.subscriber.pk), gid("User", world.outsider.pk),
        gid("Message", 1), gid("Mailbox", 2**63), gid("Conversation", -1), gid("Nope", 1),
        "garbage", "", "UHJhY3RpY2U6", "Q29udmVyc2F0aW9uOjFlMTAw",
    ]  # fmt: skip


def string_node(values: st.SearchStrategy[str]) -> st.SearchStrategy[graphql.ValueNode]:
    return values.map(lambda v: graphql.StringValueNode(value=v))


def scalars(world) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    return {
        # Mostly real ids of both practices, so operations get past the lookup; sometimes anything at all.
        "ID": string_node(st.sampled_from(ids_of(world)) | st.sampled_from(ids_of(world)) | st.text(max_size=30)),
        "DateTime": string_node(
            st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-13-45T99:00:00", "yesterday", ""])
            | st.datetimes().map(lambda d: d.isoformat())
        ),
        "Date": string_node(st.sampled_from(["1980-04-02", "1980-02-30", "04/02/1980", "0000-00-00"])),
        "Upload": string_node(st.sampled_from(["", "0", "file.pdf"])) | st.just(graphql.NullValueNode()),
    }


def operations(world, mode: Mode) -> st.SearchStrategy[str]:
    """One root field per valid operation: a refused first mutation would stop the ones after it from running."""
    graphql_schema = schema._schema
    custom = scalars(world)
    # allow_x00: string literals may hold NUL (sent as a \u0000 escape), which must be a VALIDATION_ERROR
    if mode == Mode.NEGATIVE:  # (a field without arguments has nothing to violate on its own)
        return from_schema(graphql_schema, custom_scalars=custom, mode=mode, allow_x00=True)
    roots = [*graphql_schema.query_type.fields, *graphql_schema.mutation_type.fields]
    return st.one_of(
        [from_schema(graphql_schema, fields=[root], custom_scalars=custom, mode=mode, allow_x00=True) for root in roots]
    )


def clients(world) -> dict[str, Client]:
    tokens = {
        "owner_a": issue_token(user=world.owner),
        "patient_a": issue_token(patient=world.patient),
        "owner_b": issue_token(user=world.outsider),
    }
    made = {role: Client(headers={"Authorization": f"Bearer {token}"}) for role, token in tokens.items()}
    made["anonymous"] = Client()
    return made


def check_answer(response, role: str, markers: list[str], sent: str, outcomes: Counter | None = None) -> None:
    assert response.status_code < 500, (role, sent, response.content[:500])
    if not response["Content-Type"].startswith("application/json"):
        return
    answer = response.json()
    if outcomes is not None:
        outcomes.update({(e.get("extensions") or {}).get("code") for e in answer.get("errors") or []} or {"OK"})
    for error in answer.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code in SPEC_CODES, (role, sent, error)
    if role == "owner_b":
        text = response.content.decode()
        leaked = [m for m in markers if m in text and m not in sent]
        assert not leaked, (sent, leaked, text[:500])


def post(client: Client, query: str, variables: object = None):
    body = {"query": query} if variables is None else {"query": query, "variables": variables}
    return client.post("/graphql", data=json.dumps(body), content_type="application/json")


@dataclass(repr=False)
class FuzzState:
    clients: dict[str, Client]
    markers: list[str]
    valid: st.SearchStrategy[str]
    invalid: st.SearchStrategy[str]
    sent: int = 0
    outcomes: Counter = field(default_factory=Counter)

    def __repr__(self) -> str:  # keeps Hypothesis' failure report readable
        return f"FuzzState(sent={self.sent})"


@pytest.fixture
def fuzz(world):
    """One set of clients and strategies per test; counts what was sent, for the report."""
    state = FuzzState(
        clients=clients(world),
        markers=practice_a_markers(world),
        valid=operations(world, Mode.POSITIVE),
        invalid=operations(world, Mode.NEGATIVE),
    )
    yield state
    print(f"\nfuzz: {state.sent} operations sent; answers by code: {dict(state.outcomes.most_common())}")


@pytest.mark.parametrize("role", ROLES)
@fuzz_settings
@given(data=st.data())
def test_valid_operations_get_well_formed_answers_for_every_role(fuzz, world, role, data):
    query = data.draw(fuzz.valid, label="operation")

    response = post(fuzz.clients[role], query)

    fuzz.sent += 1
    check_answer(response, role, fuzz.markers, query, fuzz.outcomes)


@pytest.mark.parametrize("role", ["owner_a", "anonymous"])
@invalid_settings
@given(data=st.data())
def test_schema_violations_are_validation_errors_not_crashes(fuzz, world, role, data):
    query = data.draw(fuzz.invalid, label="operation")

    response = post(fuzz.clients[role], query)

    fuzz.sent += 1
    check_answer(response, role, fuzz.markers, query, fuzz.outcomes)
    assert response.json()["errors"], query


@invalid_settings
@given(text=st.text(max_size=200))
def test_random_text_is_refused_without_a_crash(fuzz, text):
    response = post(fuzz.clients["owner_a"], text)

    fuzz.sent += 1
    check_answer(response, "owner_a", fuzz.markers, text, fuzz.outcomes)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)

TYPED_OPERATIONS = [
    "query($id: ID!) { conversation(id: $id) { id messages(last: 5) { totalCount } } }",
    "query($p: ID!, $q: String!, $n: Int) { searchPatients(practiceId: $p, query: $q, first: $n) { id } }",
    "query($p: ID!, $s: MailboxStatus, $o: Boolean) { mailboxes(practiceId: $p, status: $s, subscribedOnly: $o) "
    "{ id } }",
    "query($p: ID!, $n: Int, $a: String, $t: DateTime) { auditEvents(practiceId: $p, first: $n, after: $a, since: $t) "
    "{ totalCount } }",
    "mutation($c: ID!, $b: String, $v: AccessSource) { sendMessage(conversationId: $c, body: $b, via: $v) { id } }",
    "mutation($u: ID!, $p: ID!, $ids: [ID!]) { setUserMailboxAccess(userId: $u, practiceId: $p, mailboxIds: $ids) "
    "{ allMailboxes } }",
]


@invalid_settings
@given(
    query=st.sampled_from(TYPED_OPERATIONS),
    variables=st.dictionaries(st.sampled_from(["id", "p", "q", "n", "s", "o", "a", "t", "c", "b", "v", "u", "ids"]),
                              JSON_VALUES, max_size=6) | JSON_VALUES,
)  # fmt: skip
def test_wrong_variable_types_are_refused_without_a_crash(fuzz, query, variables):
    response = post(fuzz.clients["owner_a"], query, variables)

    fuzz.sent += 1
    check_answer(response, "owner_a", fuzz.markers, query, fuzz.outcomes)


# NUL, lone surrogates (JSON "\udc00" escapes decode to them), format characters (zero-width space, joiners,
# byte-order mark, soft hyphen) mixed with ordinary text.
HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from(["\x00", "\udc00", "\ud83d", "\u200b", "\u200d", "\ufeff", "\u2060", "\u00ad", " "])
    | st.characters(codec="utf-8"),
    max_size=30,
)

STRING_OPERATIONS = [
    *TYPED_OPERATIONS,
    "mutation($c: ID!, $b: String, $cid: String) { sendMessage(conversationId: $c, body: $b, clientMessageId: $cid) "
    "{ id } }",
    "mutation($p: ID!, $n: String!) { createMailbox(practiceId: $p, name: $n) { id } }",
    "mutation($id: ID!, $n: String!) { renameMailbox(mailboxId: $id, name: $n) { id } }",
    "mutation($p: ID!, $k: String!, $v: String!) { setPracticeSetting(practiceId: $p, key: $k, value: $v) { key } }",
    "mutation($id: ID!, $b: String, $cid: String) { sendPortalMessage(mailboxId: $id, body: $b, clientMessageId: $cid) "
    "{ id } }",
]
STRING_VARIABLES = ["id", "p", "q", "a", "c", "b", "cid", "n", "k", "v", "u"]


@invalid_settings
@given(data=st.data(), query=st.sampled_from(STRING_OPERATIONS), role=st.sampled_from(["owner_a", "patient_a"]))
def test_hostile_strings_in_every_string_variable_are_refused_without_a_crash(fuzz, world, data, query, role):
    ids = st.sampled_from(ids_of(world))
    variables = {
        name: data.draw(
            HOSTILE_TEXT | ids.map(lambda i: i + "\x00") | (ids if name in ("id", "p", "c", "u") else HOSTILE_TEXT)
        )
        for name in STRING_VARIABLES
        if f"${name}:" in query
    }
    if "$ids:" in query:
        variables["ids"] = data.draw(st.lists(HOSTILE_TEXT, max_size=3))

    response = post(fuzz.clients[role], query, variables)

    fuzz.sent += 1
    check_answer(response, role, fuzz.markers, query, fuzz.outcomes)
    assert response.status_code == 200
    if any(has_unstorable_characters(text) for text in _strings(variables)):
        # refused before any resolver, whoever asks: nothing of it reached a database
        assert {e["extensions"]["code"] for e in response.json()["errors"]} == {"VALIDATION_ERROR"}


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


MALFORMED_BODIES = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"42", b"null", b'"query"', b"true", b"[]", b"[1]", b"\xff\xfe{}", b'{"query": "\xc3\x28"}']),
    st.integers(1, 6000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 6000).map(
        lambda depth: b'{"query": "{ me { id } }", "variables": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    ),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
)


@invalid_settings
@given(body=MALFORMED_BODIES)
def test_malformed_json_bodies_are_answered_below_500_in_the_graphql_shape(fuzz, body):
    response = fuzz.clients["owner_a"].post("/graphql", data=body, content_type="application/json")

    fuzz.sent += 1
    check_answer(response, "owner_a", fuzz.markers, repr(body), fuzz.outcomes)
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Request-ID"]


@invalid_settings
@given(operations=JSON_VALUES | st.just({"query": "mutation($c: ID!, $f: [Upload!]) { sendMessage(conversationId: $c, "
                                                  "body: \"x\", attachments: $f) { id } }",
                                         "variables": {"c": None, "f": [None]}}),
       files_map=JSON_VALUES | st.dictionaries(st.sampled_from(["0", "1"]), st.lists(
           st.sampled_from(["variables.f.0", "variables.c", "variables.f", "query", "x.y", "variables.f.9"])
           | st.text(max_size=10), max_size=3), max_size=2))  # fmt: skip
def test_multipart_requests_of_any_shape_are_answered_below_500(fuzz, operations, files_map):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("note.txt", b"hello", content_type="text/plain")
    response = fuzz.clients["owner_a"].post(
        "/graphql", data={"operations": json.dumps(operations), "map": json.dumps(files_map), "0": upload}
    )

    fuzz.sent += 1
    check_answer(response, "owner_a", fuzz.markers, repr((operations, files_map)), fuzz.outcomes)
    assert response["Content-Type"].startswith("application/json")
    assert b"instance>" not in response.content


# ---- regressions found by fuzzing --------------------------------------------------------------------


@pytest.mark.parametrize("attachments", ['["file.pdf"]', '[""]', '["0", "1"]'])
def test_attachments_given_as_text_instead_of_files_are_a_validation_error(world, attachments):
    """Found with FUZZ_EXAMPLES=5000: a JSON body can put strings where the Upload scalar expects files."""
    client = Client(headers={"Authorization": f"Bearer {issue_token(user=world.subscriber)}"})
    query = f'mutation($c: ID!) {{ sendMessage(conversationId: $c, body: "x", attachments: {attachments}) {{ id }} }}'

    response = post(client, query, {"c": gid("Conversation", world.conversation.pk)})

    assert response.status_code == 200
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["VALIDATION_ERROR"]
