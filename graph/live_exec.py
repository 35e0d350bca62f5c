"""Executing a subscription's selection for one event, as the same selection would run over HTTP.

graphql-core executes each event's selection set on the event loop, where no resolver may touch the database
(Django raises `SynchronousOnlyOperation`): nested fields of an event (`conversation { messages { … } }`,
`mailbox { subscribers { … } }`) could not answer. Here each event runs on the live database thread through
the same types, resolvers and guards as an HTTP request, with a fresh per-event context for the viewer, so
every field a subscription can select answers what HTTP would answer at that moment.

An event is executed once per cohort: subscribers with the same document, variables and viewer access
(`core.live.LiveStream.cohort_key`) share one execution and one encoded payload. PHI a live event carries is
audited as a live delivery (operation `<stream>.live`, via `LIVE`), batched and written after the frames
are sent, never as a person opening a thread.
"""

from __future__ import annotations

import asyncio
import io
import json
import weakref
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from graphql import ExecutionResult

from core import audit, live
from core.context import RequestInfo, current_request
from core.live_db import live_db
from core.models import AccessSource, AuditAction, Event
from graph import encoding, guards
from graph.compiled import PlannedExecutor
from graph.context import Context
from graph.frame_stack import run_on_fresh_stack

# Results of recent (event, cohort) executions, shared by the cohort's subscribers on this process.
_COHORT_MEMO_SIZE = 4096
LIVE_VIA = AccessSource.LIVE


class SocketOrigin:
    """What a resolver may ask of "the request" over a socket: absolute URLs on the host the client used."""

    def __init__(self, scope: dict) -> None:
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "ws"), "http")
        self._request = ASGIRequest({**scope, "type": "http", "method": "GET", "scheme": scheme}, io.BytesIO())
        # Sockets reached under the same scheme and host build the same URLs (a cohort may share them).
        self.key = (scheme, self._request.META.get("HTTP_HOST", ""))

    def build_absolute_uri(self, location: str) -> str:
        try:
            return self._request.build_absolute_uri(location)
        except DisallowedHost:
            return location


@dataclass
class LiveDelivery:
    """The root value of one event for one subscriber: the event, whose stream it is, and how to run it."""

    event: Event
    stream: live.LiveStream
    origin: SocketOrigin | None
    # The stream's access decision for this event (a mailbox stream: the viewer's subscribed, active mailboxes).
    access: frozenset[int] = frozenset()

    def context(self) -> Context:
        stream = self.stream
        context = Context(request=self.origin, user=stream.user, patient=stream.patient, token_id=stream.token_id)
        # What the stream has just decided for this event holds for its fields too (as a root read's decision
        # holds for its fields over HTTP): they need not ask the database again.
        if stream.user is not None:
            guards.note_workbench_staff(context, stream.practice_id)
            for mailbox_id in self.access:
                guards.note_mailbox_view(context, mailbox_id)
            if stream.kind == live.StreamKind.CONVERSATION and stream.via == AccessSource.MAILBOX:
                guards.note_mailbox_view(context, self.event.mailbox_id)
        return context


class _Cohorts:
    """Executions in flight or just done, by (operation, variables, cohort, event): one per cohort and event."""

    def __init__(self) -> None:
        # key -> (the operation node, the execution): keys hold the node's id, which only names it while it lives
        self.results: OrderedDict[tuple, tuple[object, asyncio.Future]] = OrderedDict()

    def get_or_start(self, key: tuple, operation: object, start) -> asyncio.Future:
        known = self.results.get(key)
        if known is not None and known[0] is operation:
            return known[1]
        future = asyncio.ensure_future(start())
        self.results[key] = (operation, future)
        while len(self.results) > _COHORT_MEMO_SIZE:
            self.results.popitem(last=False)
        return future


_cohorts: dict[asyncio.AbstractEventLoop, _Cohorts] = {}


def _cohorts_of_loop() -> _Cohorts:
    loop = asyncio.get_running_loop()
    cohorts = _cohorts.get(loop)
    if cohorts is None:
        for old in [other for other in _cohorts if other.is_closed()]:
            del _cohorts[old]
        cohorts = _cohorts[loop] = _Cohorts()
    return cohorts


def _variables_key(executor) -> str:
    values = getattr(executor.variable_values, "coerced", executor.variable_values)
    return json.dumps(values, sort_keys=True, default=str)


class LiveExecutor(PlannedExecutor):
    """graphql-core's executor (from a plan where one compiles), with subscription events run on the live thread
    (once per cohort)."""

    def execute_operation(self, serially: bool | None = None):
        delivery = self.root_value
        if not isinstance(delivery, LiveDelivery) or getattr(self, "_on_live_thread", False):
            return super().execute_operation(serially)
        plan = delivery.stream.live_plan
        if plan is None or plan.operation is not self.operation:
            # The subscription's first event: what every later one needs is worked out once (`deliver_direct`).
            plan = delivery.stream.live_plan = _Plan.of(self)
        return _shared_result(plan, self, delivery, serially)


@dataclass
class _Plan:
    """What one subscription's events execute with: its executor (to copy per event) and the fixed part of the
    cohort key. Made at its first event, kept on the stream."""

    executor: LiveExecutor
    operation: object
    # (the operation node's id, the variables): with the stream's cohort, the place and the event, a cohort key
    fixed_key: tuple
    # A selection of fields that answer alike for every viewer the stream admits (no unread counts, no
    # subscription flags, no nested lists) is executed once for all of them; any other once per viewer.
    shared: bool

    @classmethod
    def of(cls, executor: LiveExecutor) -> _Plan:
        operation = executor.operation
        shared = viewer_independent(executor.schema, operation, executor.fragment_definitions)
        return cls(executor, operation, (id(operation), _variables_key(executor)), shared)

    def key(self, delivery: LiveDelivery) -> tuple:
        stream = delivery.stream
        return (
            *self.fixed_key,
            stream.shared_key() if self.shared else stream.cohort_key(),
            delivery.origin.key if delivery.origin is not None else None,
            delivery.event.pk,
        )

    def result(self, delivery: LiveDelivery, executor: LiveExecutor | None = None) -> asyncio.Future:
        """The cohort's execution of the event: started by the first subscriber to ask, shared by the others."""

        def start():
            return _execute_on_live_thread(executor or self.executor.build_per_event_executor(delivery), None)

        return _cohorts_of_loop().get_or_start(self.key(delivery), self.operation, start)


async def _shared_result(
    plan: _Plan, executor: LiveExecutor, delivery: LiveDelivery, serially: bool | None
) -> ExecutionResult:
    future = plan.result(delivery, executor)
    result = future.result() if future.done() else await asyncio.shield(future)
    AUDIT.add(_delivery_row(delivery))  # every subscriber's own, whoever executed the cohort
    return result


# The subscription operation whose events the current task streams (set by the socket's protocol handler).
CURRENT_OPERATION: ContextVar[Any] = ContextVar("live_operation", default=None)


async def deliver_direct(delivery: LiveDelivery, send) -> bool:
    """Sends the event's `next` frame itself, as the common path would send it, when it can: the subscription has
    run before (its plan is known), the cohort's result has no errors and fits the size bound. Then the event
    skips graphql-core's and strawberry's per-result work, which was most of the per-subscriber cost of a fan-out
    once the cohort's execution was shared. False: the caller yields the delivery the common way (which takes
    the same cohort result)."""
    plan, operation = delivery.stream.live_plan, CURRENT_OPERATION.get()
    if plan is None or operation is None:
        return False
    future = plan.result(delivery)
    result = future.result() if future.done() else await asyncio.shield(future)
    if result.errors or result.data is None or result.extensions:
        return False
    frame = next_frame(operation.id, result.data)
    if frame is None or operation.completed:
        return False
    await send(frame)
    AUDIT.add(_delivery_row(delivery))
    return True


# The last payloads encoded, by the identity of their data: subscribers of one cohort get the same data object.
_ENCODED: OrderedDict[int, tuple[object, str, int]] = OrderedDict()


def encoded_data(data: object) -> tuple[str, int]:
    """`{"data": …}` of a result and its size in bytes, encoded once for every subscriber of its cohort."""
    known = _ENCODED.get(id(data))
    if known is not None and known[0] is data:
        return known[1], known[2]
    encoded = b'{"data":' + encoding.dumps(data) + b"}"
    _ENCODED[id(data)] = (data, encoded.decode(), len(encoded))
    while len(_ENCODED) > 256:
        _ENCODED.popitem(last=False)
    return _ENCODED[id(data)][1], len(encoded)


def next_frame(operation_id: str, data: object) -> str | None:
    """The graphql-transport-ws `next` frame of a result; None past `RESPONSE_MAX_BYTES` in UTF-8 (the common
    path then answers with the size error)."""
    payload, size = encoded_data(data)
    head = '{"id":' + encoding.dumps_text(operation_id) + ',"type":"next","payload":'
    if size + len(head.encode()) + 1 > settings.MAILBOX["RESPONSE_MAX_BYTES"]:
        return None
    return head + payload + "}"


async def _execute_on_live_thread(executor: LiveExecutor, serially: bool | None) -> ExecutionResult:
    # On a data-stack chunk of its own, as the HTTP view executes (CPython gh-142183, graph/frame_stack.py).
    result, entries = await live_db(run_on_fresh_stack)(_execute, executor, serially)
    AUDIT.add(*entries)
    return result


def _execute(executor: LiveExecutor, serially: bool | None) -> tuple[ExecutionResult, list[dict]]:
    delivery: LiveDelivery = executor.root_value
    executor.context_value = delivery.context()
    executor._on_live_thread = True
    entries: list[dict] = []
    with audit.collecting(entries):
        result = executor.execute_operation(serially)
    if asyncio.iscoroutine(result):  # no resolver of the schema is async; this would be a programming error
        result.close()
        raise RuntimeError("A subscription field resolved asynchronously on the live thread.")
    return result, _live_audit_rows(delivery, entries)


def _delivery_row(delivery: LiveDelivery) -> dict | None:
    """One live delivery to one viewer, naming the event's patient (PHI reads are findable by patient)."""
    stream, event = delivery.stream, delivery.event
    if event.patient_id is None:
        return None
    return {
        "operation": f"{stream.kind}.live",
        "action": AuditAction.READ,
        "practice": stream.practice_id,
        "actor_user": stream.user,
        "actor_patient": stream.patient,
        "patient": event.patient_id,
        "via": LIVE_VIA,
        "detail": {"event_id": event.pk, "kind": event.kind},
    }


def _live_audit_rows(delivery: LiveDelivery, entries: list[dict]) -> list[dict]:
    """What nested reads of the executed selection showed (their patients), as live reads."""
    stream, event = delivery.stream, delivery.event
    operation = f"{stream.kind}.live"
    rows: list[dict] = []
    for entry in entries:
        rows.append(
            {
                **entry,
                "operation": f"{operation}:{entry.get('operation', '')}",
                "via": LIVE_VIA,
                "detail": {**(entry.get("detail") or {}), "event_id": event.pk, "read_via": str(entry.get("via", ""))},
            }
        )
    return rows


class _LiveAudit:
    """Live-delivery audit rows of a process, written in one INSERT after the frames of an event went out.

    Each row's request (its connection's address and request id) is taken in the subscriber's own task; the
    rows are built and written on the live thread once the fan-out is over (no new row for
    `LIVE_AUDIT_DELAY_SECONDS`), so building 500 rows does not hold the interpreter while frames still go out. Rows
    wait with the event loop that delivered them (a loop that ends takes its unwritten rows with it: drain first).
    """

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PendingRows] = weakref.WeakKeyDictionary()

    def _of_loop(self) -> _PendingRows:
        loop = asyncio.get_running_loop()
        pending = self._loops.get(loop)
        if pending is None:
            pending = self._loops[loop] = _PendingRows()
        return pending

    def add(self, *entries: dict | None) -> None:
        request = current_request()
        pending = self._of_loop()
        pending.rows.extend((entry, request) for entry in entries if entry is not None)
        if pending.rows and (pending.flushing is None or pending.flushing.done()):
            pending.flushing = asyncio.get_running_loop().create_task(pending.flush())

    async def drain(self) -> None:
        """Waits until every collected row of this loop is written (tests, shutdown)."""
        pending = self._of_loop()
        while pending.flushing is not None and not pending.flushing.done():
            await pending.flushing


@dataclass
class _PendingRows:
    rows: list[tuple[dict, RequestInfo]] = field(default_factory=list)
    flushing: asyncio.Task | None = None

    async def flush(self) -> None:
        # Once no row has come for `LIVE_AUDIT_DELAY_SECONDS` (the fan-out is over), at the latest a second after
        # the first: writing while frames still go out took the interpreter from the event loop.
        quiet = float(settings.MAILBOX.get("LIVE_AUDIT_DELAY_SECONDS", 0.03))
        deadline = asyncio.get_running_loop().time() + 1.0
        while self.rows:
            seen = len(self.rows)
            await asyncio.sleep(quiet)
            if len(self.rows) > seen and asyncio.get_running_loop().time() < deadline:
                continue
            rows, self.rows = self.rows, []
            await live_db(_write_audit)(rows)


def _write_audit(rows: list[tuple[dict, RequestInfo]]) -> None:
    audit.insert_many(rows)


AUDIT = _LiveAudit()


# ---- which selections answer alike for every viewer of a stream --------------------------------------------

# Fields whose answer depends only on the record (and the place, which is part of every cohort key), never on who
# asks: a selection of only these is executed once for all the viewers one stream kind admits to an event. Any
# other field (unread counts, subscription flags, nested lists with their own guards) makes the execution per
# viewer. Missing a field here costs speed, never correctness.
VIEWER_INDEPENDENT: dict[str, frozenset[str]] = {
    "LiveEvent": frozenset(
        {"cursor", "kind", "occurredAt", "mailboxId", "conversationId", "mailboxName", "userIds"}
        | {"mailbox", "conversation", "message"}
    ),
    "Mailbox": frozenset({"id", "name", "status", "practice"}),
    "Practice": frozenset({"id", "name", "key"}),
    "Conversation": frozenset({"id", "status", "lastMessageAt", "createdAt", "mailbox", "patient"}),
    "Patient": frozenset(
        {"id", "fullName", "firstName", "lastName", "preferredPronoun", "dateOfBirth", "accountNumber"}
    ),
    "Message": frozenset(
        {"id", "sequence", "direction", "body", "sentAt", "clientMessageId", "senderName", "conversationId"}
        | {"attachments", "isAutomatic", "retracted"}
    ),
    # A patient's stream never shares a cohort with staff (`LiveStream.shared_key`), so `at`/`reason` answer alike.
    "MessageRetraction": frozenset({"at", "reason"}),
    "Attachment": frozenset({"id", "filename", "contentType", "size", "sha256", "url"}),
}
_independent: OrderedDict[int, tuple[object, bool]] = OrderedDict()


def viewer_independent(schema, operation, fragments: dict) -> bool:
    """Whether every field the subscription selects (fragments followed) is in `VIEWER_INDEPENDENT`."""
    known = _independent.get(id(operation))
    if known is not None and known[0] is operation:
        return known[1]
    root = schema.subscription_type
    answer = all(
        _selection_independent(schema, root.fields[f.name.value].type, f.selection_set, fragments)
        for f in _fields(operation.selection_set, fragments)
        if f.name.value in root.fields
    )
    _independent[id(operation)] = (operation, answer)
    while len(_independent) > _COHORT_MEMO_SIZE:
        _independent.popitem(last=False)
    return answer


def _fields(selection_set, fragments: dict):
    from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode

    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            yield from _fields(fragments[selection.name.value].selection_set, fragments)


def _selection_independent(schema, field_type, selection_set, fragments: dict) -> bool:
    from graphql import get_named_type

    if selection_set is None:
        return True
    named = get_named_type(field_type)
    allowed = VIEWER_INDEPENDENT.get(named.name)
    if allowed is None:
        return False
    for field_node in _fields(selection_set, fragments):
        name = field_node.name.value
        if name == "__typename":
            continue
        if name not in allowed or field_node.arguments:
            return False
        if not _selection_independent(schema, named.fields[name].type, field_node.selection_set, fragments):
            return False
    return True
