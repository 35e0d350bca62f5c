"""Live events answer exactly alike from the compiled plan and from graphql-core: the gate of
`tests/api/test_plan_differential.py`, for subscriptions.

Every subscription document the suite and the Workbench send (string literals of `tests/`, module-level f-strings
built of them, templates of `web/`) is subscribed over a real WebSocket by the same viewers as over HTTP (the
practice's owner, a subscriber, the patient, the other practice's owner), with the world's own records and with the
other practice's, in three runs on one log of every event kind:

- graphql-core alone replays the history;
- the plan replays the same history at the same state, then the same sockets take a burst of new events live
  (read with the log, `graph.live_exec.read_batch`);
- graphql-core alone replays that burst at the state it was delivered in.

Each operation's frames must be the same, one by one: the `data` as the same JSON text (key order included), the
errors with the same messages, paths and codes, the same `complete`s. Between runs the process forgets its cohort
results and its shared log reads, so each run executes every event itself.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections import defaultdict
from pathlib import Path

import graphql
import orjson
import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from core import actions, live
from core.actions.pool import add_internal_note, assign_conversation, set_conversation_priority
from core.actions.quick_replies import create_quick_reply
from core.errors import DomainError, ErrorCode
from core.live import SHARED, encode_cursor
from core.live_db import live_db
from core.models import AccessSource, Event, PracticePermission
from core.tokens import issue_token
from graph import compiled, live_exec
from graph.ids import decode_id
from graph.live_exec import AUDIT
from tests.attachment_samples import pdf_bytes, upload
from tests.graphql_client import gid
from tests.live.test_live_payloads import _close_worker_thread_connections  # noqa: F401  (autouse)
from tests.live_client import Closed, LiveClient
from tests.sent_documents import valid_operations, web_templates

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async

ROOT = Path(__file__).resolve().parents[2]
VIEWERS = ("owner_a", "subscriber_a", "patient_a", "owner_b")
# After its expected frames, a socket silent this long has sent no extra one; one late this long is cut short.
QUIET_SECONDS = 0.3
LATE_SECONDS = 10


def _python_strings(source: str) -> set[str]:
    """String literals, and module-level `NAME = f"…{FRAGMENT}…"` documents with their fragments filled in."""
    tree = ast.parse(source)
    texts = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    names: dict[str, str] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and [type(t) for t in statement.targets] == [ast.Name]:
            value = _evaluated(statement.value, names)
            if value is not None:
                names[statement.targets[0].id] = value
                texts.add(value)
    return texts


def _evaluated(node: ast.expr, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            parts.append(part.value)
        elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) and part.value.id in names:
            parts.append(names[part.value.id])
        else:
            return None
    return "".join(parts)


def _subscription_documents() -> list[str]:
    texts: set[str] = set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        texts.update(t for t in _python_strings(path.read_text()) if "subscription" in t)
    texts.update(t for t in web_templates() if "subscription" in t)
    return valid_operations(texts, graphql.OperationType.SUBSCRIPTION)


DOCUMENTS = _subscription_documents()


def _baseline(world) -> dict[int, str]:
    """A cursor per practice from before the history."""
    cursors = {}
    for practice, user in ((world.practice, world.mailbox_admin), (world.other_practice, world.outsider)):
        mailbox = actions.create_mailbox(acting_user=user, practice_id=practice.pk, name="Baseline")
        cursors[practice.pk] = encode_cursor(Event.objects.get(mailbox_id=mailbox.pk).pk)
    return cursors


def _history(world) -> None:
    """Every kind of event the log has, in both practices, with the objects they show."""
    billing, thread = world.billing.pk, world.conversation.pk
    actions.send_patient_message(acting_patient=world.patient, mailbox_id=billing, body="Is my bill right?")
    actions.send_staff_message(
        acting_user=world.subscriber,
        conversation_id=thread,
        body="Your statement",
        attachments=[upload("statement.pdf", pdf_bytes(), "application/pdf")],
    )
    add_internal_note(acting_user=world.subscriber, conversation_id=thread, body="Check the 2025 invoice.")
    wrong = actions.send_staff_message(acting_user=world.subscriber, conversation_id=thread, body="Paid in full.")
    actions.retract_message(acting_user=world.subscriber, message_id=wrong.pk, reason="Wrong patient")
    assign_conversation(acting_user=world.subscriber, conversation_id=thread, user_id=world.subscriber.pk)
    set_conversation_priority(acting_user=world.subscriber, conversation_id=thread, priority="URGENT")
    actions.mark_conversation_read(acting_user=world.subscriber, conversation_id=thread)
    actions.archive_conversation(acting_user=world.subscriber, conversation_id=thread)
    actions.unarchive_conversation(acting_user=world.subscriber, conversation_id=thread)
    actions.set_mailbox_auto_reply(acting_user=world.mailbox_admin, mailbox_id=billing, text="We answer in a day.")
    actions.send_patient_message(acting_patient=world.other_patient, mailbox_id=billing, body="Hello")
    triage = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Triage")
    actions.rename_mailbox(acting_user=world.mailbox_admin, mailbox_id=triage.pk, name="Front desk")
    actions.subscribe_to_mailbox(acting_user=world.subscriber, mailbox_id=triage.pk)
    actions.deactivate_mailbox(acting_user=world.mailbox_admin, mailbox_id=triage.pk)
    actions.activate_mailbox(acting_user=world.mailbox_admin, mailbox_id=triage.pk)
    actions.set_mailbox_subscribers(
        acting_user=world.mailbox_admin, mailbox_id=triage.pk, user_ids=[world.subscriber.pk, world.owner.pk]
    )
    temporary = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Temp")
    actions.delete_mailbox(acting_user=world.mailbox_admin, mailbox_id=temporary.pk)
    create_quick_reply(
        acting_user=world.mailbox_admin, practice_id=world.practice.pk, title="Thanks", body="Thank you!"
    )
    actions.grant_permission(
        acting_user=world.owner,
        practice_id=world.practice.pk,
        user_id=world.staff.pk,
        permission=PracticePermission.MAILBOX_ADMIN_PERMISSION,
    )
    actions.send_patient_message(acting_patient=world.outside_patient, mailbox_id=world.outside_mailbox.pk, body="Hi")


def _burst(world) -> None:
    """New events in one transaction (published together after it commits): the state every delivery sees."""
    thread = world.conversation.pk
    with transaction.atomic():
        actions.send_patient_message(acting_patient=world.patient, mailbox_id=world.billing.pk, body="Any news?")
        answer = actions.send_staff_message(acting_user=world.subscriber, conversation_id=thread, body="Tomorrow.")
        add_internal_note(acting_user=world.subscriber, conversation_id=thread, body="Call back.")
        actions.retract_message(acting_user=world.subscriber, message_id=answer.pk, reason="Too soon")
        assign_conversation(acting_user=world.subscriber, conversation_id=thread, user_id=None)
        actions.send_patient_message(
            acting_patient=world.outside_patient, mailbox_id=world.outside_mailbox.pk, body="Still there?"
        )


def _last_cursors(world) -> dict[int, str]:
    return {
        practice.pk: encode_cursor(Event.objects.filter(practice=practice).latest("pk").pk)
        for practice in (world.practice, world.other_practice)
    }


def _operations(world, after: dict[int, str]) -> list[tuple[str, dict]]:
    """Each document with the world's own records, then with the other practice's."""
    pools = [
        {"practice": world.practice, "conversation": gid("Conversation", world.conversation.pk), "via": "MAILBOX"},
        {
            "practice": world.other_practice,
            "conversation": gid("Conversation", world.outside_thread),
            "via": "CHART_SUMMARY",
        },
    ]
    operations = []
    for document in DOCUMENTS:
        for pool in pools:
            operations.append((document, _variables(document, pool, after)))
    return operations


def _variables(document: str, pool: dict, after: dict[int, str]) -> dict:
    """Values by the argument each variable is passed to."""
    arguments: dict[str, str] = {}

    class Arguments(graphql.Visitor):
        def enter_argument(self, node, *_):
            if isinstance(node.value, graphql.VariableNode):
                arguments[node.value.name.value] = node.name.value

    graphql.visit(graphql.parse(document), Arguments())
    values = {
        "practiceId": gid("Practice", pool["practice"].pk),
        "conversationId": pool["conversation"],
        "after": after[pool["practice"].pk],
        "via": pool["via"],
    }
    return {variable: values[argument] for variable, argument in arguments.items()}


def _expected_frames(world, operations: list[tuple[str, dict]], after: dict[int, str] | None = None) -> dict:
    """How many frames each viewer's operations send, by `core.live`'s own decisions: a refused subscription its
    error and `complete`, any other one the events its stream may see after its cursor (or `after`'s cursor of
    its practice: None for a refused one). Waiting for them, not for a silence, keeps a run on a busy machine whole."""
    viewers = {"owner_a": (world.owner, None), "subscriber_a": (world.subscriber, None)}
    viewers |= {"patient_a": (None, world.patient), "owner_b": (world.outsider, None)}
    expected: dict[str, dict[str, int]] = {viewer: {} for viewer in VIEWERS}
    for viewer, (user, patient) in viewers.items():
        for n, (document, variables) in enumerate(operations):
            try:
                stream = _stream(user, patient, document, variables)
                start, _ = live.start_position(stream, variables.get(_variable_of(document, "after")))
                if after is not None:
                    start = live.decode_cursor(after[stream.practice_id])
            except DomainError:
                if after is None:
                    expected[viewer][str(n)] = 2
                continue
            expected[viewer][str(n)] = _visible_events(stream, start)
    return expected


def _stream(user, patient, document: str, variables: dict) -> live.LiveStream:
    """The stream the subscription opens, as `graph.subscriptions` opens it."""
    field = _root_field(document)
    arguments = {a.name.value: variables.get(a.value.name.value) for a in field.arguments or ()}
    if field.name.value == "portalEvents":
        if patient is None:
            raise DomainError(ErrorCode.FORBIDDEN, "for patients")
        return live.open_portal_stream(patient=patient, token_id=None)
    if user is None:
        raise DomainError(ErrorCode.FORBIDDEN, "for staff")
    if field.name.value == "mailboxEvents":
        return live.open_mailbox_stream(
            user=user, token_id=None, practice_id=decode_id(arguments["practiceId"], "Practice")
        )
    return live.open_conversation_stream(
        user=user,
        token_id=None,
        conversation_id=decode_id(arguments["conversationId"], "Conversation"),
        via=AccessSource(arguments.get("via") or "MAILBOX"),
    )


def _root_field(document: str) -> graphql.FieldNode:
    operation = next(d for d in graphql.parse(document).definitions if isinstance(d, graphql.OperationDefinitionNode))
    return operation.selection_set.selections[0]


def _variable_of(document: str, argument: str) -> str | None:
    return next((a.value.name.value for a in _root_field(document).arguments or () if a.name.value == argument), None)


def _visible_events(stream: live.LiveStream, after_id: int) -> int:
    count = 0
    while True:
        batch = live.read_batch(stream, after_id)
        count, after_id = count + len(batch.items), batch.last_id
        if not batch.more:
            return count


async def _sockets(world) -> dict[str, LiveClient]:
    credentials = {
        "owner_a": {"user": world.owner},
        "subscriber_a": {"user": world.subscriber},
        "patient_a": {"patient": world.patient},
        "owner_b": {"user": world.outsider},
    }
    clients = {}
    for viewer, credential in credentials.items():
        token = await db(issue_token)(**credential)
        clients[viewer] = client = LiveClient(headers=[(b"host", b"testserver")])
        assert (await client.open(token))["type"] == "connection_ack"
    return clients


async def _subscribe(clients: dict[str, LiveClient], operations: list, only: dict[str, dict[str, int]]) -> None:
    for viewer, client in clients.items():
        for n, (document, variables) in enumerate(operations):
            if str(n) in only[viewer]:
                await client.subscribe(str(n), document, variables)


async def _collect(clients: dict[str, LiveClient], expected: dict[str, dict[str, int]]) -> dict[str, dict]:
    viewers = list(clients)
    received = await asyncio.gather(*(_frames(clients[viewer], expected[viewer]) for viewer in viewers))
    return dict(zip(viewers, received, strict=True))


async def _frames(client: LiveClient, expected: dict[str, int]) -> dict[str, list]:
    """Every frame of each operation: the expected ones (waiting up to `LATE_SECONDS` for each), then any more
    that come within `QUIET_SECONDS`."""
    frames: dict[str, list] = defaultdict(list)
    while True:
        missing = any(len(frames[op]) < count for op, count in expected.items())
        try:
            message = await client.receive(LATE_SECONDS if missing else QUIET_SECONDS)
        except (TimeoutError, Closed):
            return dict(frames)
        frames[message["id"]].append(_comparable(message))


def _comparable(message: dict) -> tuple:
    payload = message.get("payload")
    if message["type"] == "next":
        errors = [
            (_unreferenced(error.get("message")), error.get("path"), (error.get("extensions") or {}).get("code"))
            for error in payload.get("errors") or []
        ]
        return "next", orjson.dumps(payload.get("data")), errors
    return message["type"], _unreferenced(json.dumps(payload))


def _unreferenced(text: str | None) -> str | None:
    # A masked error quotes its operation's request id, new for every subscribe: the one difference allowed.
    return re.sub(r"Quote reference \S+ to support", "Quote reference … to support", text) if text else text


async def _forget_results() -> None:
    """A run executes every event itself: no cohort result or log read of the previous run is taken."""
    live_exec._cohorts.clear()
    await live_db(SHARED.clear)()


async def _close(clients: dict[str, LiveClient]) -> None:
    for client in clients.values():
        await client.close()
    await AUDIT.drain()


def assert_same_frames(planned: dict, reference: dict, operations: list, expected: dict) -> None:
    for viewer in VIEWERS:
        for op, count in expected[viewer].items():
            got, wanted = planned[viewer].get(op, []), reference[viewer].get(op, [])
            assert len(wanted) == count, (viewer, operations[int(op)], wanted)
            assert got == wanted, (viewer, operations[int(op)])


async def test_every_subscription_document_answers_alike_from_the_plan_and_graphql_core(world, monkeypatch):
    # given a log with every event kind in both practices, and every subscription document of the suite subscribed
    # by each viewer with the world's records and with the other practice's, replaying from before that history
    baseline = await db(_baseline)(world)
    await db(_history)(world)
    world.outside_thread = await db(
        lambda: Event.objects.filter(practice=world.other_practice).last().conversation_id
    )()
    operations = _operations(world, baseline)
    expected = await db(_expected_frames)(world, operations)

    # when graphql-core alone replays the history
    monkeypatch.setattr(compiled, "_ENABLED", False)  # the live thread's switch (`GRAPHQL_PLANS=0`)
    before = dict(compiled.STATS)
    clients = await _sockets(world)
    await _subscribe(clients, operations, expected)
    reference = await _collect(clients, expected)
    await _close(clients)
    assert before == compiled.STATS  # nothing came from a plan

    # and the plan replays it at the same state, then takes a burst of new events live on the same sockets
    await _forget_results()
    monkeypatch.setattr(compiled, "_ENABLED", True)
    clients = await _sockets(world)
    await _subscribe(clients, operations, expected)
    planned = await _collect(clients, expected)
    history_end = await db(_last_cursors)(world)
    await db(_burst)(world)
    burst = await db(_expected_frames)(world, operations, history_end)
    planned_live = await _collect(clients, burst)
    await _close(clients)
    ran_planned = compiled.STATS["planned"] - before["planned"]
    fell_back = compiled.STATS["graphql-core"] - before["graphql-core"]

    # and graphql-core alone replays the burst at the state it was delivered in (live-only documents cannot)
    await _forget_results()
    monkeypatch.setattr(compiled, "_ENABLED", False)
    burst_operations = _operations(world, history_end)
    replayable = {
        viewer: {op: n for op, n in by_op.items() if _variable_of(operations[int(op)][0], "after")}
        for viewer, by_op in burst.items()
    }
    clients = await _sockets(world)
    await _subscribe(clients, burst_operations, replayable)
    reference_live = await _collect(clients, replayable)
    await _close(clients)

    # then every operation sent the same frames on both paths, the plan really ran, and there was something to see
    assert_same_frames(planned, reference, operations, expected)
    assert_same_frames(planned_live, reference_live, burst_operations, replayable)
    sent = [
        frame for run in (planned, planned_live) for by_op in run.values() for ops in by_op.values() for frame in ops
    ]
    data = sum(1 for frame in sent if frame[0] == "next" and not frame[2])
    refused = sum(1 for frame in sent if frame[0] == "next" and frame[2])
    print(
        f"\nlive differential: {len(DOCUMENTS)} documents, {data} events, {refused} refusals, "
        f"{ran_planned} executions from a plan"
    )
    assert ran_planned > 0
    assert fell_back == 0  # every subscription document compiles
    assert data > 200
    assert refused > 0
    assert sum(sum(by_op.values()) for by_op in replayable.values()) > 20  # the burst was compared


def test_the_suite_and_the_workbench_send_enough_subscription_documents_to_compare():
    assert len(DOCUMENTS) >= 15, len(DOCUMENTS)
