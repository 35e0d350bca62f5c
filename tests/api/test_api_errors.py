"""The error contract over HTTP: every error has `extensions.code`; unexpected failures are masked with a
request id and no internals; hostile documents are refused quickly before any resolver; introspection and
GraphiQL follow the settings."""

from __future__ import annotations

import json
import statistics
import time

import pytest
import strawberry
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import path

from graph.schema import MailboxSchema, Mutation, Query, _extensions
from graph.views import MailboxGraphQLView
from tests.graphql_client import Api, gid

# ---- a schema with one failing field, served by the real view at /graphql (test URLconf below) ----------


@strawberry.type(name="Query")
class QueryWithAFailingField(Query):
    @strawberry.field
    def broken_report(self) -> int | None:
        # A genuine database failure (unknown table), inside a savepoint so the test transaction stays usable.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT secret_column FROM table_that_does_not_exist")
        return 0


failing_schema = MailboxSchema(query=QueryWithAFailingField, mutation=Mutation, extensions=_extensions())
urlpatterns = [path("graphql", MailboxGraphQLView.as_view(schema=failing_schema))]


@pytest.mark.urls(__name__)
def test_an_unexpected_failure_is_masked_with_a_request_id_and_no_internals(world):
    # given a signed-in user asking for a field whose resolver fails in the database, beside a working one
    api = Api.as_user(world.subscriber)
    response = api.client.post(
        "/graphql",
        data=json.dumps({"query": "{ me { username } brokenReport }"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
    )
    # then the failure is one masked error carrying the request id, and the rest of the answer stands
    body = response.json()
    request_id = response["X-Request-ID"]
    assert body["data"] == {"me": {"username": "sam_subscriber"}, "brokenReport": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    assert request_id in error["message"]
    # and nothing of the internals leaks
    text = response.content.decode()
    for internal in ("table_that_does_not_exist", "secret_column", "SELECT", "Traceback", "Error:", 'File "'):
        assert internal not in text


@pytest.mark.urls(__name__)
def test_the_client_request_id_is_the_reference_of_a_masked_failure(world):
    api = Api.as_user(world.subscriber)
    answer = api.post("{ brokenReport }", **{"X-Request-ID": "support-ticket-1234"})
    assert answer["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "support-ticket-1234"}


# ---- invalid documents ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ("{ me { id ", {}),
        ("{ me { shoeSize } }", {}),
        ("{ mailboxes { id } }", {}),
        ("query($p: ID!) { mailboxes(practiceId: $p) { id } }", {}),
        ('query($n: Int) { searchPatients(practiceId: "x", query: "a", first: $n) { id } }', {"n": "many"}),
        ('{ mailboxes(practiceId: "x", status: CLOSED) { id } }', {}),
    ],
    ids=["syntax", "unknown-field", "missing-argument", "missing-variable", "bad-variable", "bad-enum"],
)
def test_invalid_documents_are_validation_errors(world, document, variables):
    answer = Api.as_user(world.subscriber).post(document, variables)
    assert answer["errors"]
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"VALIDATION_ERROR"}


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        ("{ me { id ", {}),
        ("query($p: ID!) { mailboxes(practiceId: $p) { id } }", {}),
        ('query($n: Int) { searchPatients(practiceId: "x", query: "a", first: $n) { id } }', {"n": "many"}),
        (
            "query($p: ID!, $d: DateTime) { auditEvents(practiceId: $p, since: $d) { totalCount } }",
            {"p": "x", "d": "x"},
        ),
        ("query($i: ID!) { conversation(id: $i) { id } }", {"i": None}),
    ],
    ids=["syntax", "missing-variable", "bad-variable", "bad-date-time", "null-for-non-null"],
)
def test_invalid_documents_are_not_logged_as_server_errors(world, caplog, document, variables):
    # given a client sending a document the schema refuses (its mistake, answered VALIDATION_ERROR)
    with caplog.at_level("INFO"):
        answer = Api.as_user(world.subscriber).post(document, variables)
    assert {e["extensions"]["code"] for e in answer["errors"]} == {"VALIDATION_ERROR"}
    # then no error and no traceback reaches the server's log (they are for faults of ours: an alert, a reference)
    assert [r for r in caplog.records if r.levelno >= 40] == []


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("failing", [1, 2])
def test_an_unexpected_failure_is_logged_once_with_its_traceback_and_request_id(world, caplog, failing):
    # given a request whose resolvers fail unexpectedly, once or twice (aliases), beside a working field
    document = "{ me { username } " + " ".join(f"f{n}: brokenReport" for n in range(failing)) + " }"
    # when it is answered
    with caplog.at_level("INFO"):
        response = Api.as_user(world.subscriber).client.post(
            "/graphql",
            data=json.dumps({"query": document}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {Api.as_user(world.subscriber).token}"},
        )
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["INTERNAL_SERVER_ERROR"] * failing
    # then the log has one error record per failure, with the traceback and the request id the answer quotes
    logged = [r for r in caplog.records if r.levelno >= 40]
    assert len(logged) == failing, [(r.name, r.getMessage()) for r in logged]
    assert {r.name for r in logged} == {"graph.errors"}
    assert all(r.exc_info is not None for r in logged)
    assert all(response["X-Request-ID"] in r.getMessage() for r in logged)
    assert sorted(r.getMessage().split(" [request")[0] for r in logged) == [
        f"unexpected error in ['f{n}']" for n in range(failing)
    ]


def test_every_error_has_a_code_and_a_message_saying_what_to_do(world):
    answer = Api.as_user(world.staff).post(
        "query($m: ID!) { mailbox(id: $m) { conversations { totalCount } } }", {"m": gid("Mailbox", world.billing.pk)}
    )
    [error] = answer["errors"]
    assert error["extensions"] == {"code": "NOT_SUBSCRIBED"}
    assert error["message"] == "Subscribe to the mailbox 'Billing' to see and work its conversations."
    assert error["path"] == ["mailbox", "conversations"]


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


def test_anonymous_caller_is_unauthenticated_even_with_a_malformed_id(db):
    assert Api().error_code('query { practiceUsers(practiceId: "nope") { role } }') == "UNAUTHENTICATED"


# ---- hostile documents ------------------------------------------------------------------------------

DEPTH_30 = '{ mailbox(id: "x") { ' + "conversations { edges { node { mailbox { " * 8 + "id" + " } } } }" * 8 + " } }"
HOSTILE = {
    "1000-aliases": "{ " + " ".join(f"a{n}: __typename" for n in range(1000)) + " }",
    "1000-typenames": "{ " + "__typename " * 1000 + "}",
    "depth-30": DEPTH_30,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_documents_are_too_complex_refused_in_milliseconds_without_touching_the_database(db, name):
    client = Client()
    client.post("/graphql", data=json.dumps({"query": "{ __typename }"}), content_type="application/json")  # warm
    timings = []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):  # the median, so one scheduler hiccup on a busy CI machine does not count
            started = time.perf_counter()
            body = json.dumps({"query": HOSTILE[name]})
            response = client.post("/graphql", data=body, content_type="application/json")
            timings.append(time.perf_counter() - started)
    elapsed = statistics.median(timings)
    errors = response.json()["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COMPLEX"], errors
    assert response.json().get("data") is None
    assert len(queries) == 0, "refused before any resolver: no SQL at all"
    assert elapsed < 0.5, f"{name} took {elapsed * 1000:.0f} ms"


def test_a_rich_real_page_is_not_too_complex(world):
    from tests.perf.test_query_counts import MAILBOXES_PAGE

    # Every field at every level, 20 conversations of each mailbox with their newest 5 messages: within the
    # field, alias, depth and cost limits. With 50 conversations under every mailbox the same document is
    # estimated at about 11,600 rows, over the default cost limit (tests/security/test_query_cost.py).
    paged = MAILBOXES_PAGE.replace("conversations(first: 50)", "conversations(first: 20)")
    answer = Api.as_user(world.subscriber).post(paged, {"p": gid("Practice", world.practice.pk)})
    assert "QUERY_TOO_COMPLEX" not in json.dumps(answer)
    assert answer["data"]["mailboxes"][0]["conversations"] is not None


# ---- introspection and GraphiQL ----------------------------------------------------------------------


def test_introspection_is_off_unless_the_setting_enables_it(world, settings):
    api = Api.as_user(world.subscriber)
    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": False}
    refused = api.post("{ __schema { queryType { name } } }")
    assert refused["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert api.data("{ __typename }") == {"__typename": "Query"}
    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": True}
    assert api.data("{ __schema { queryType { name } } }") == {"__schema": {"queryType": {"name": "Query"}}}


def test_the_graphiql_introspection_query_fits_the_limits(world, settings):
    from graphql import get_introspection_query

    settings.MAILBOX = {**settings.MAILBOX, "GRAPHQL_INTROSPECTION": True}
    answer = Api.as_user(world.subscriber).post(get_introspection_query(descriptions=True))
    assert not answer.get("errors"), answer.get("errors")


def test_graphiql_is_served_only_in_debug(db, settings):
    client = Client()
    settings.DEBUG = False
    refused = client.get("/graphql", headers={"Accept": "text/html"})
    assert refused.status_code in (400, 404)
    assert b"graphiql" not in refused.content.lower()
    settings.DEBUG = True
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert b"graphiql" in page.content.lower()


def test_each_caller_of_the_wrong_kind_is_told_what_the_operation_is_for(world):
    # given a staff token, a portal token, a revoked token and no token at all
    from django.utils import timezone

    from core.models import ApiToken
    from core.tokens import INVALID_TOKEN_MESSAGE, issue_token

    revoked = issue_token(user=world.subscriber)
    ApiToken.objects.filter(user=world.subscriber).update(revoked_at=timezone.now())
    callers = {
        "staff": Api.as_user(world.owner),
        "patient": Api.as_patient(world.patient),
        "revoked": Api(revoked),
        "nobody": Api(),
    }
    staff_only = ("query($p: ID!) { mailboxes(practiceId: $p) { id } }", {"p": gid("Practice", world.practice.pk)})
    portal_only = ("query { portalConversations { id } }", {})

    def refusal(who: str, operation: tuple) -> tuple | None:
        errors = callers[who].post(*operation).get("errors")
        return (errors[0]["extensions"]["code"], errors[0]["message"]) if errors else None

    signed_out = ("UNAUTHENTICATED", "Sign in or send 'Authorization: Bearer <token>'.")
    # then a staff operation answers staff, tells a patient it is for staff, and a refused token its own refusal
    assert refusal("staff", staff_only) is None
    assert refusal("patient", staff_only) == (
        "FORBIDDEN",
        "This operation is for practice staff; patients use the portal.",
    )
    assert refusal("revoked", staff_only) == ("UNAUTHENTICATED", INVALID_TOKEN_MESSAGE)
    assert refusal("nobody", staff_only) == signed_out
    # and a portal operation the other way round
    assert refusal("patient", portal_only) is None
    assert refusal("staff", portal_only) == ("FORBIDDEN", "This operation is for patients (portal tokens).")
    assert refusal("revoked", portal_only) == ("UNAUTHENTICATED", INVALID_TOKEN_MESSAGE)
    assert refusal("nobody", portal_only) == signed_out
