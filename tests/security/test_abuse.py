"""Hostile documents are refused quickly, before any resolver runs.

1,000 aliases / 1,000 `__typename` / depth 30 → QUERY_TOO_COMPLEX (a GraphQL error, HTTP 200). A 5 MB
variables payload is refused by Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with HTTP 400 before the
body is parsed as JSON. "Before any resolver" is checked by SQL: no query at all for an anonymous caller,
and only the token lookup for a signed-in one (no audit row, no read).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from core.models import AuditEvent
from core.tokens import issue_token

LIMIT_SECONDS = 0.5


def aliases(n: int) -> str:
    return "query { " + " ".join(f"a{i}: __typename" for i in range(n)) + " }"


def aliased_fields(n: int) -> str:
    return "query { " + " ".join(f"a{i}: me {{ id }}" for i in range(n)) + " }"


def typenames(n: int) -> str:
    return "query { " + " __typename" * n + " }"


def nested(depth: int) -> str:
    """A valid document `depth` (= 4k + 2) levels deep: conversation, k times mailbox → conversations → edges →
    node, then id."""
    cycles = (depth - 2) // 4
    assert 4 * cycles + 2 == depth
    return (
        'query { conversation(id: "Q29udmVyc2F0aW9uOjE=") { '
        + "mailbox { conversations { edges { node { " * cycles
        + "id"
        + " } } } }" * cycles
        + " } }"
    )


HOSTILE = {
    "1000 aliases": aliases(1000),
    "1000 aliased fields": aliased_fields(1000),
    "1000 __typename": typenames(1000),
    "depth 30": nested(30),
}


def send(body: bytes, **headers: str) -> tuple[int, dict | bytes, float, list[str]]:
    """Posts the body three times; the time is the median, so one scheduler hiccup on a busy CI box does not count."""
    client = Client()
    client.post("/graphql", data=b'{"query": "{ __typename }"}', content_type="application/json")  # warm up
    timings = []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            started = time.perf_counter()
            response = client.post("/graphql", data=body, content_type="application/json", headers=headers)
            timings.append(time.perf_counter() - started)
    content = response.json() if response["Content-Type"].startswith("application/json") else response.content
    return response.status_code, content, statistics.median(timings), [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_document_is_refused_quickly_before_any_resolver(db, name):
    status, answer, elapsed, queries = send(json.dumps({"query": HOSTILE[name]}).encode())

    assert status == 200
    assert answer["data"] is None
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["QUERY_TOO_COMPLEX"]
    assert elapsed < LIMIT_SECONDS, f"{name}: {elapsed:.3f} s"
    assert queries == []


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_document_of_a_signed_in_user_reads_nothing_and_audits_nothing(world, name):
    token = issue_token(user=world.owner)

    _status, answer, elapsed, queries = send(
        json.dumps({"query": HOSTILE[name]}).encode(), Authorization=f"Bearer {token}"
    )

    assert [e["extensions"]["code"] for e in answer["errors"]] == ["QUERY_TOO_COMPLEX"]
    assert elapsed < LIMIT_SECONDS, f"{name}: {elapsed:.3f} s"
    assert all("core_apitoken" in sql for sql in queries), queries
    assert not AuditEvent.objects.exists()


def test_depth_just_under_the_limit_still_runs(world):
    """The refusals above come from the limits, not from a broken document."""
    status, answer, _, _ = send(json.dumps({"query": nested(10)}).encode())

    assert status == 200
    assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(("document", "allowed"), [(nested(14), False), (aliases(31), False), (aliases(30), True)])
def test_depth_and_alias_limits_hold_on_repeated_documents(world, document, allowed):
    """Validation results are cached per document: the second and third sending get the same answer."""
    for _ in range(3):
        status, answer, _, _ = send(json.dumps({"query": document}).encode())
        assert status == 200
        if allowed:
            assert "errors" not in answer
        else:
            assert answer["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


def test_a_repeated_document_is_validated_once(world, monkeypatch):
    """The validation cache keys on the rule classes: limits built per request made every request a miss."""
    import strawberry.schema.schema as strawberry_schema

    calls = []
    validate = strawberry_schema.validate
    monkeypatch.setattr(strawberry_schema, "validate", lambda *args, **kw: calls.append(1) or validate(*args, **kw))
    # a document no other test sent to this process (the caches are per process)
    document = f"query RepeatedForTheCache {{ a1: __typename b2: __typename n{uuid.uuid4().hex}: __typename }}"
    validated = []
    for _ in range(3):
        status, answer, _, _ = send(json.dumps({"query": document}).encode())
        assert status == 200
        assert "errors" not in answer
        validated.append(len(calls))
    assert validated[0] > 0  # the first sending is validated
    assert validated[2] == validated[0], validated  # the next two come from the cache


def test_five_megabyte_variables_payload_is_refused_with_400_before_parsing(db):
    body = json.dumps({"query": "query($b: String) { __typename }", "variables": {"b": "x" * 5_000_000}}).encode()

    status, _, elapsed, queries = send(body)

    assert status == 400
    assert elapsed < LIMIT_SECONDS, f"{elapsed:.3f} s"
    assert queries == []


def test_many_small_variables_within_the_body_limit_are_harmless(db):
    variables = {f"v{i}": "x" * 10 for i in range(50_000)}  # ~1 MB, under the body limit
    body = json.dumps({"query": "query { __typename }", "variables": variables}).encode()

    status, answer, elapsed, queries = send(body)

    assert status == 200
    assert answer == {"data": {"__typename": "Query"}}
    assert elapsed < LIMIT_SECONDS, f"{elapsed:.3f} s"
    assert queries == []
