"""GET never runs GraphQL operations: a cross-site link with the session cookie must not read or search in the
user's name (no CSRF token protects a GET), and query text must stay out of URLs and access logs. A POST riding
on a session cookie needs its CSRF token; one with no session at all is simply not signed in."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from core.models import AuditEvent
from core.tokens import issue_token
from tests.graphql_client import gid

pytestmark = pytest.mark.django_db


def search_url(world) -> str:
    from urllib.parse import urlencode

    query = 'query($p: ID!) { searchPatients(practiceId: $p, query: "garc") { fullName } }'
    return "/graphql?" + urlencode({"query": query, "variables": json.dumps({"p": gid("Practice", world.practice.pk)})})


def test_a_get_query_with_the_session_cookie_is_refused_and_leaves_no_trace(world):
    # given a signed-in browser that follows a link made by another site
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.staff)
    before = AuditEvent.objects.count()
    # when the link runs a patient search by GET
    response = browser.get(search_url(world), headers={"Referer": "https://evil.example/"})
    # then nothing runs: 405 with the GraphQL error shape saying to POST, and no audit row in the user's name
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "VALIDATION_ERROR"
    assert "POST" in error["message"]
    assert "García" not in response.content.decode()
    assert AuditEvent.objects.count() == before


def test_a_get_query_with_a_bearer_token_is_refused_too(world):
    token = issue_token(user=world.staff)

    response = Client().get(search_url(world), headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert response["X-Request-ID"]
    assert not AuditEvent.objects.filter(operation="searchPatients").exists()


def test_a_get_mutation_is_refused_before_it_runs(world):
    browser = Client()
    browser.force_login(world.owner)

    response = browser.get("/graphql", {"query": 'mutation { createMailbox(practiceId: "x", name: "Evil") { id } }'})

    assert response.status_code == 405
    assert not world.practice.mailboxes.filter(name="Evil").exists()


def test_the_same_search_by_post_with_the_csrf_token_still_answers(world):
    # given the Workbench's own page: session cookie and CSRF token
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.staff)
    browser.get("/")
    csrf = browser.cookies["csrftoken"].value
    # when it posts the search
    response = browser.post(
        "/graphql",
        data=json.dumps(
            {
                "query": 'query($p: ID!) { searchPatients(practiceId: $p, query: "garc") { fullName } }',
                "variables": {"p": gid("Practice", world.practice.pk)},
            }
        ),
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    # then it answers
    assert response.json() == {"data": {"searchPatients": [{"fullName": "María García"}]}}


def test_graphiql_still_opens_by_get_in_development(db, settings):
    settings.DEBUG = True

    page = Client().get("/graphql", headers={"Accept": "text/html"})

    assert page.status_code == 200
    assert b"graphiql" in page.content.lower()


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
