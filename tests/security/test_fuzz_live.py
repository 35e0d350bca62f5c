"""Schema-driven fuzzing of live events: every generated subscription answers each event as HTTP would.

hypothesis-graphql only generates queries and mutations, so the documents come from a schema whose `Query` is
our `Subscription` type; each is turned into a subscription with one root field (`mailboxEvents`,
`conversationEvents` or `portalEvents`) and real root arguments (practice A, the world conversation, `via`,
`after` at the newest event; sometimes a foreign or malformed id or cursor). Nested page arguments are drawn
within sane bounds, with some invalid ones (negative, above the page limit, garbage cursors, `first` with
`last`).

Each document is subscribed over a real WebSocket by a staff member (mailbox and conversation streams) or the
patient (portal stream); then the patient (or, for the portal, staff) sends a message. The `next` that
follows carries only SPEC error codes (never INTERNAL_SERVER_ERROR); its `mailbox`, `conversation` and
`message` equal the same selections asked over HTTP right after (`mailbox(id:)` / `portalMailboxes`,
`conversation(id:, via:)` / `portalConversations`, the thread's `messages(last: 1)`), errors included (same
codes at the same paths), and its own fields (`cursor`, `kind`, ids…) equal the event log's row. A refusal at
subscribe time is expected exactly when a root argument was made wrong, and carries a SPEC code.

With DATABASE_URL (PostgreSQL) and REDIS_URL, a smaller sample runs against two real daphne processes: the
subscription on process B, the message sent over HTTP through process A, the comparison asked of B (the host
the subscriber used, so attachment URLs agree).

CI runs a bounded, derandomized sample (FUZZ_LIVE_EXAMPLES in process, 25 by default; FUZZ_LIVE_PROCESS_EXAMPLES
against the two processes, 5). A longer run:

    FUZZ_LIVE_EXAMPLES=1000 FUZZ_LIVE_PROCESS_EXAMPLES=100 python -m pytest -q -n 0 tests/security/test_fuzz_live.py

and `FUZZ_LIVE_SEED=<number>` draws another sample than CI's (the same one again for the same number).
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

import graphql
import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries

from core import actions
from core.errors import ErrorCode
from core.live import SHARED, encode_cursor
from core.live_db import live_db, release_connection
from core.models import Event, EventKind
from core.tokens import issue_token
from graph.live_exec import AUDIT
from graph.schema import schema
from tests import processes
from tests.graphql_client import Api, gid
from tests.live_client import LiveClient

EXAMPLES = int(os.environ.get("FUZZ_LIVE_EXAMPLES", "25"))
PROCESS_EXAMPLES = int(os.environ.get("FUZZ_LIVE_PROCESS_EXAMPLES", "5"))
SEED = os.environ.get("FUZZ_LIVE_SEED")
SPEC_CODES = {code.value for code in ErrorCode}
ROOTS = ("mailboxEvents", "conversationEvents", "portalEvents")
EVENT_OBJECTS = ("mailbox", "conversation", "message")
# Picks the event's own record out of a portal list; no generated selection uses this alias.
PICK = "fuzzPickId"

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async

# Another sample than CI's fixed one, reproducible by its number.
sample = seed(int(SEED)) if SEED else (lambda test: test)
fuzz_settings = settings(
    max_examples=EXAMPLES,
    derandomize=not SEED,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- documents -----------------------------------------------------------------------------------------------


def _placeholder(value: str) -> st.SearchStrategy[graphql.ValueNode]:
    return st.just(graphql.StringValueNode(value=value))


@functools.cache
def subscription_documents() -> st.SearchStrategy[graphql.DocumentNode]:
    """Queries of a schema whose root is `Subscription`: one root field each, arguments filled in later."""
    full = schema._schema
    as_query = graphql.GraphQLSchema(query=full.subscription_type, types=list(full.type_map.values()))
    scalars = {
        "ID": _placeholder("id"),
        "DateTime": _placeholder(""),
        "Date": _placeholder(""),
        "Upload": _placeholder(""),
    }
    return st.one_of(
        [queries(as_query, fields=[root], custom_scalars=scalars, print_ast=lambda doc: doc) for root in ROOTS]
    )


@dataclass
class Case:
    """One generated subscription, who follows it, and whether its root arguments are the real ones."""

    document: graphql.DocumentNode
    root: str
    viewer: str  # a World attribute: subscriber, mailbox_admin, staff, patient
    via: str
    accepted: bool  # real root arguments a viewer may follow: an event must arrive
    with_attachment: bool
    root_field: graphql.FieldNode = field(init=False)

    def __post_init__(self) -> None:
        self.root_field = self.document.definitions[0].selection_set.selections[0]

    @property
    def text(self) -> str:
        return graphql.print_ast(self.document)

    @property
    def staff(self) -> bool:
        return self.viewer != "patient"


def _string(value: str) -> graphql.StringValueNode:
    return graphql.StringValueNode(value=value)


def _argument(name: str, value: graphql.ValueNode) -> graphql.ArgumentNode:
    return graphql.ArgumentNode(name=graphql.NameNode(value=name), value=value)


PAGE_SIZES = st.sampled_from([None, None, 0, 1, 2, 3, 5, 100, -1, 101, 2**31 - 1])
PAGE_CURSORS = st.sampled_from([None, None, None, None, "garbage", "YXJyYXljb25uZWN0aW9uOjA=", ""])


def _bound_nested_arguments(
    data: st.DataObject, selection_set: graphql.SelectionSetNode | None
) -> graphql.SelectionSetNode | None:
    """Page sizes and cursors mostly sane, sometimes wrong; enums as generated."""
    if selection_set is None:
        return None
    selections = []
    for node in selection_set.selections:
        if isinstance(node, graphql.FieldNode):
            arguments = []
            for argument in node.arguments or ():
                name = argument.name.value
                if name in ("first", "last"):
                    size = data.draw(PAGE_SIZES, label=f"{node.name.value}.{name}")
                    if size is None:
                        continue
                    argument = _argument(name, graphql.IntValueNode(value=str(size)))
                elif name in ("after", "before"):
                    cursor = data.draw(PAGE_CURSORS, label=f"{node.name.value}.{name}")
                    if cursor is None:
                        continue
                    argument = _argument(name, _string(cursor))
                arguments.append(argument)
            selection = _bound_nested_arguments(data, node.selection_set)
            node = replace(node, arguments=tuple(arguments), selection_set=selection)
        selections.append(node)
    return replace(selection_set, selections=tuple(selections))


def draw_case(data: st.DataObject, world, after: str, *, attachments: bool = True) -> Case:
    generated = data.draw(subscription_documents(), label="document")
    root_field = generated.definitions[0].selection_set.selections[0]
    root = root_field.name.value
    selection = _bound_nested_arguments(data, root_field.selection_set)

    wrong = data.draw(st.sampled_from([None] * 6 + ["id", "cursor"]), label="wrong root argument")
    cursor = {None: after, "id": after, "cursor": "not-a-cursor"}[wrong]
    arguments = [_argument("after", _string(cursor))]
    via = "MAILBOX"
    if root == "mailboxEvents":
        viewer = data.draw(st.sampled_from(["subscriber", "mailbox_admin"]), label="viewer")
        practice = gid("Practice", world.practice.pk)
        if wrong == "id":
            practice = data.draw(st.sampled_from([gid("Practice", world.other_practice.pk), "garbage", ""]))
        arguments.append(_argument("practiceId", _string(practice)))
        accepted = wrong is None
    elif root == "conversationEvents":
        viewer = data.draw(st.sampled_from(["subscriber", "staff"]), label="viewer")
        via = data.draw(st.sampled_from(["MAILBOX", "CHART_SUMMARY"]), label="via")
        conversation = gid("Conversation", world.conversation.pk)
        if wrong == "id":
            conversation = data.draw(st.sampled_from([gid("Conversation", 2**40), gid("Mailbox", 1), "garbage"]))
        arguments += [
            _argument("conversationId", _string(conversation)),
            _argument("via", graphql.EnumValueNode(value=via)),
        ]
        # A member who is not subscribed follows the thread from the chart only.
        accepted = wrong is None and (viewer == "subscriber" or via == "CHART_SUMMARY")
    else:
        viewer = "patient"
        accepted = wrong != "cursor"  # the portal stream has no id to get wrong
    root_field = replace(root_field, arguments=tuple(arguments), selection_set=selection)
    operation = graphql.OperationDefinitionNode(
        operation=graphql.OperationType.SUBSCRIPTION,
        selection_set=graphql.SelectionSetNode(selections=(root_field,)),
        variable_definitions=(),
        directives=(),
    )
    with_attachment = attachments and data.draw(st.booleans(), label="attachment")
    return Case(graphql.DocumentNode(definitions=(operation,)), root, viewer, via, accepted, with_attachment)


# ---- what HTTP answers for the same selections ----------------------------------------------------------------


def _selection(node: graphql.FieldNode, *, pick: bool = False) -> str:
    selections = list(node.selection_set.selections)
    if pick:
        selections.insert(
            0, graphql.FieldNode(alias=graphql.NameNode(value=PICK), name=graphql.NameNode(value="id"), arguments=())
        )
    return graphql.print_ast(graphql.SelectionSetNode(selections=tuple(selections)))


def _http_request(case: Case, world, name: str, selection: str) -> tuple[str, list]:
    """The HTTP query asking `selection` of the event's object `name`, and the path leading to that object."""
    conversation = gid("Conversation", world.conversation.pk)
    if case.staff:
        if name == "mailbox":
            return f'{{ mailbox(id: "{gid("Mailbox", world.billing.pk)}") {selection} }}', ["mailbox"]
        if name == "conversation":
            return f'{{ conversation(id: "{conversation}", via: {case.via}) {selection} }}', ["conversation"]
        return (
            f'{{ conversation(id: "{conversation}", via: {case.via}) '
            f"{{ messages(last: 1) {{ edges {{ node {selection} }} }} }} }}",
            ["conversation", "messages", "edges", 0, "node"],
        )
    if name == "mailbox":
        return f"{{ portalMailboxes {selection} }}", ["portalMailboxes", PICK]
    if name == "conversation":
        return f"{{ portalConversations {selection} }}", ["portalConversations", PICK]
    return (
        f"{{ portalConversations {{ {PICK}: id messages(last: 1) {{ edges {{ node {selection} }} }} }} }}",
        ["portalConversations", PICK, "messages", "edges", 0, "node"],
    )


def _follow(answer: dict, prefix: list, picked: str) -> tuple[object, list]:
    """The object at `prefix` in an HTTP answer (PICK: the list entry of the event's record), and its path."""
    value: object = answer.get("data")
    path: list = []
    for step in prefix:
        if value is None:
            return None, path
        if step == PICK:
            index = next(i for i, item in enumerate(value) if item[PICK] == picked)
            value, step = value[index], index
        else:
            value = value[step]
        path.append(step)
    return value, path


def _errors_below(errors: list[dict], path: list) -> set[tuple[str, tuple]]:
    """(code, path below `path`) of each error at or below it; an error above it keeps its whole path."""
    found = set()
    for error in errors:
        where = list(error.get("path") or [])
        code = (error.get("extensions") or {}).get("code")
        if where[: len(path)] == path:
            found.add((code, tuple(where[len(path) :])))
        elif path[: len(where)] == where:
            found.add((code, ("above", *where)))
    return found


def expected_over_http(case: Case, world, ask) -> dict[str, tuple[object, set]]:
    """Per event-object key of the document: (data, errors) of the same selection asked over HTTP now."""
    expected: dict[str, tuple[object, set]] = {}
    for node in case.root_field.selection_set.selections:
        name = node.name.value
        if name not in EVENT_OBJECTS:
            continue
        picked = gid("Mailbox", world.billing.pk) if name == "mailbox" else gid("Conversation", world.conversation.pk)
        pick = not case.staff and name != "message"
        query, prefix = _http_request(case, world, name, _selection(node, pick=pick))
        answer = ask(query)
        value, path = _follow(answer, prefix, picked)
        if isinstance(value, dict):
            value.pop(PICK, None)
        expected[(node.alias or node.name).value] = (value, _errors_below(answer.get("errors") or [], path))
    return expected


# ---- checking one event ----------------------------------------------------------------------------------------


def check_codes(payload: dict, sent: str) -> None:
    for error in payload.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code in SPEC_CODES, (sent, error)
        assert error.get("message"), (sent, error)


def check_event(case: Case, world, payload: dict, event: Event, expected: dict[str, tuple[object, set]]) -> None:
    check_codes(payload, case.text)
    data = payload["data"][case.root]
    assert data is not None, (case.text, payload)
    errors = payload.get("errors") or []
    own = {
        "cursor": encode_cursor(event.pk),
        "kind": EventKind(event.kind).value,
        "occurredAt": event.created_at.isoformat(),
        "mailboxId": gid("Mailbox", event.mailbox_id) if event.mailbox_id else None,
        "conversationId": gid("Conversation", event.conversation_id) if event.conversation_id else None,
        "mailboxName": (event.data or {}).get("name"),
        "userIds": [gid("User", pk) for pk in event.user_ids or []],
    }
    for node in case.root_field.selection_set.selections:
        key, name = (node.alias or node.name).value, node.name.value
        if name == "__typename":
            assert data[key] == "LiveEvent"
        elif name in own:
            assert data[key] == own[name], (case.text, name, data[key], own[name])
        else:
            value, http_errors = expected[key]
            assert data[key] == value, (case.text, key, data[key], value)
            assert _errors_below(errors, [case.root, key]) == http_errors, (case.text, key, errors, http_errors)
    assert all(list(e.get("path") or [])[:1] == [case.root] for e in errors), errors


def trigger(case: Case, world, body: str) -> int:
    """Sends the message this case waits for; returns the pk of its MESSAGE_ADDED event."""
    files = [SimpleUploadedFile("note.txt", b"hello", content_type="text/plain")] if case.with_attachment else []
    if case.staff:
        message = actions.send_patient_message(
            acting_patient=world.patient, mailbox_id=world.billing.pk, body=body, attachments=files
        )
    else:
        message = actions.send_staff_message(
            acting_user=world.subscriber, conversation_id=world.conversation.pk, body=body, attachments=files
        )
    return Event.objects.get(message_id=message.pk, kind=EventKind.MESSAGE_ADDED).pk


def newest_cursor() -> tuple[int, str]:
    pk = Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    return pk, encode_cursor(pk)


def viewer_token(world, viewer: str) -> str:
    if viewer == "patient":
        return issue_token(patient=world.patient)
    return issue_token(user=getattr(world, viewer))


@dataclass
class Tally:
    """What the sample covered, printed at teardown (a run that refused everything would show it)."""

    events: int = 0
    refused: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)

    def count(self, payload: dict) -> None:
        for error in payload.get("errors") or []:
            code = error["extensions"]["code"]
            self.error_codes[code] = self.error_codes.get(code, 0) + 1


@pytest.fixture
def base(world, settings):
    """A baseline event to resume after; sends are not rate limited for the sample."""
    settings.MAILBOX = {**settings.MAILBOX, "SEND_RATE_LIMIT": (10**6, 60)}
    actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Baseline")
    return world


@pytest.fixture
def tally():
    counted = Tally()
    yield counted
    print(f"\nlive fuzz: {counted.events} events compared, {counted.refused} refused; errors {counted.error_codes}")
    assert counted.events, "no generated subscription delivered an event"


# ---- in process: Channels communicator, HTTP through the Django test client ---------------------------------------


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    yield
    await AUDIT.drain()
    await database_sync_to_async(connections.close_all)()
    await live_db(SHARED.clear)()
    await release_connection()


def _ask_in_process(world, viewer: str):
    # The token is issued on first use, from the thread the HTTP requests run on.
    return lambda query: Api(viewer_token(world, viewer)).post(query)


async def run_in_process(case: Case, world, tally: Tally, number: int) -> None:
    client = LiveClient(headers=[(b"host", b"testserver")])
    try:
        assert (await client.open(await db(viewer_token)(world, case.viewer)))["type"] == "connection_ack"
        await client.subscribe("f", case.text)
        event_pk = await db(trigger)(case, world, f"fuzz {number}")
        message = await client.next_for("f", timeout=10)
    except TimeoutError:
        pytest.fail(f"no answer within 10 s (accepted: {case.accepted}) to:\n{case.text}")
    finally:
        await client.close()
    await db(check_answer)(case, world, tally, message, event_pk, _ask_in_process(world, case.viewer))


def check_answer(case: Case, world, tally: Tally, message: dict, event_pk: int, ask) -> None:
    if message["type"] == "error":  # refused before any execution (validation)
        payload = {"errors": message["payload"]}
    else:
        assert message["type"] == "next", (case.text, message)
        payload = message["payload"]
    check_codes(payload, case.text)
    tally.count(payload)
    if not (payload.get("data") or {}).get(case.root):
        assert not case.accepted, (case.text, payload)
        assert payload.get("errors"), (case.text, payload)
        tally.refused += 1
        return
    assert case.accepted, (case.text, payload)
    expected = expected_over_http(case, world, ask)
    check_event(case, world, payload, Event.objects.get(pk=event_pk), expected)
    tally.events += 1


@sample
@fuzz_settings
@given(data=st.data())
async def test_generated_subscriptions_answer_each_event_as_http_does(base, tally, data):
    world = base
    _, after = await db(newest_cursor)()
    case = draw_case(data, world, after)

    await run_in_process(case, world, tally, tally.events + tally.refused)


# ---- two daphne processes on PostgreSQL + Redis ---------------------------------------------------------------

two_processes = pytest.mark.skipif(
    not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
    reason="needs DATABASE_URL (PostgreSQL, shared by the server processes) and REDIS_URL",
)


@pytest.fixture
def daphnes(tmp_path, monkeypatch):
    """Ports of two daphne processes on the test database and Redis (A sends, B serves the subscription)."""
    from tests.live.test_live_two_processes import free_port, start_daphne, wait_until_listening

    monkeypatch.setenv("SEND_RATE_LIMIT", str(10**6))  # a long sample sends more than a person may per minute
    with ExitStack() as stack:
        started = []
        for port in (free_port(), free_port()):
            log = tmp_path / f"daphne-{port}.log"
            process = start_daphne(port, log)
            stack.callback(processes.stop, process)
            started.append((port, process, log))
        for port, process, log in started:
            wait_until_listening(port, process, log)
        yield started[0][0], started[1][0]


def _post(port: int, token: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


SEND_AS_PATIENT = "mutation($m: ID!, $b: String!) { sendPortalMessage(mailboxId: $m, body: $b) { id } }"
SEND_AS_STAFF = "mutation($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { id } }"


def send_over_http(case: Case, world, port: int, body: str) -> int:
    if case.staff:
        token = issue_token(patient=world.patient)
        answer = _post(port, token, SEND_AS_PATIENT, {"m": gid("Mailbox", world.billing.pk), "b": body})
        sent = answer["data"]["sendPortalMessage"]["id"]
    else:
        token = issue_token(user=world.subscriber)
        answer = _post(port, token, SEND_AS_STAFF, {"c": gid("Conversation", world.conversation.pk), "b": body})
        sent = answer["data"]["sendMessage"]["id"]
    assert not answer.get("errors"), answer
    from graph.ids import decode_id

    return Event.objects.get(message_id=decode_id(sent, "Message"), kind=EventKind.MESSAGE_ADDED).pk


def next_over_websocket(ws, op_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["type"] == "ping":
            ws.send(json.dumps({"type": "pong"}))
            continue
        if message.get("id") == op_id:
            return message


@two_processes
@pytest.mark.postgres
@pytest.mark.redis
@sample
@settings(fuzz_settings, max_examples=PROCESS_EXAMPLES)
@given(data=st.data())
def test_generated_subscriptions_on_one_process_answer_events_sent_through_another_as_http_does(
    base, tally, daphnes, data
):
    from websockets.sync.client import connect

    world = base
    port_a, port_b = daphnes
    _, after = newest_cursor()
    case = draw_case(data, world, after, attachments=False)
    token = viewer_token(world, case.viewer)

    with connect(f"ws://127.0.0.1:{port_b}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "f", "type": "subscribe", "payload": {"query": case.text, "variables": {}}}))
        event_pk = send_over_http(case, world, port_a, f"fuzz {tally.events + tally.refused}")
        message = next_over_websocket(ws, "f", timeout=10)

    check_answer(case, world, tally, message, event_pk, lambda query: _post(port_b, token, query))
