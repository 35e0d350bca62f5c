"""Subscriptions of SPEC §3 over graphql-transport-ws: each follows the event log with `core.live`.

The resolvers parse arguments and hand over to `follow`, which joins the stream's channel-layer groups
first, then reads the log after the cursor, then waits for wake-ups (publishes) or the periodic re-check.
Event fields only read objects loaded in batch by `core.live.read_batch` (no query per field).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator, Iterator

import strawberry
from django.conf import settings
from strawberry import relay
from strawberry.extensions import SchemaExtension
from strawberry.types.nodes import SelectedField

from core import live, models
from core.errors import DomainError, ErrorCode
from core.live_db import live_db
from graph.errors import format_error
from graph.ids import decode_id
from graph.types import AccessSource, ConversationType, EventKind, Info, MailboxType, MessageType


@strawberry.type(description="One change from the event log. `cursor` resumes after it (`after:`).")
class LiveEvent:
    cursor: str
    kind: EventKind
    occurred_at: dt.datetime
    mailbox_id: relay.GlobalID | None = strawberry.field(description="Set even when the mailbox is deleted.")
    conversation_id: relay.GlobalID | None
    mailbox: MailboxType | None
    conversation: ConversationType | None
    message: MessageType | None
    mailbox_name: str | None = strawberry.field(description="The name of a deleted mailbox.")
    user_ids: list[relay.GlobalID] = strawberry.field(
        description="Users whose own view changed (subscriptions, reads)."
    )


class StreamedDomainErrors(SchemaExtension):
    """`DomainErrors` formats whole operations; a subscription's results are formatted one by one here."""

    def on_stream_result(self, result) -> Iterator[None]:
        if getattr(result, "errors", None):
            result.errors = [format_error(e) for e in result.errors]
        yield


def _to_event(item: live.LiveItem) -> LiveEvent:
    event = item.event
    return LiveEvent(
        cursor=live.encode_cursor(event.pk),
        kind=models.EventKind(event.kind),
        occurred_at=event.created_at,
        mailbox_id=relay.GlobalID("Mailbox", str(event.mailbox_id)) if event.mailbox_id else None,
        conversation_id=relay.GlobalID("Conversation", str(event.conversation_id)) if event.conversation_id else None,
        mailbox=item.mailbox,
        conversation=item.conversation,
        message=item.message,
        mailbox_name=(event.data or {}).get("name"),
        user_ids=[relay.GlobalID("User", str(pk)) for pk in event.user_ids or []],
    )


def _prime_cache(context, item: live.LiveItem) -> None:
    """Memoized decisions live for one event, never for the connection; the practice is preloaded."""
    context.cache.clear()
    for mailbox in (item.mailbox, item.conversation.mailbox if item.conversation else None):
        if mailbox is not None:
            context.cache[("practice", mailbox.practice_id)] = mailbox.practice


def _recheck_seconds() -> float:
    return float(settings.MAILBOX.get("LIVE_RECHECK_SECONDS", 4))


async def follow(info: Info, open_stream, after: str | None) -> AsyncGenerator[LiveEvent, None]:
    """Joins the groups, replays the log after `after`, then continues live; access re-checked every batch.

    Every read goes through the process's shared reader (`core.live.SHARED`): however many subscribers a
    publish wakes, the process reads the log, decides access and loads objects once per event and distinct
    viewer, on the live thread; the other subscribers take the result from memory on the event loop.
    """
    context = info.context
    consumer = getattr(context, "ws", None)
    if consumer is None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Subscriptions run over WebSocket (graphql-transport-ws).")
    stream: live.LiveStream = await live_db(open_stream)()
    stream.objects = _selected_objects(info)
    async with consumer.wakeups(stream.groups) as wakeup:
        last_seen = await live_db(live.start_position)(stream, after)
        announced: int | None = None
        while True:
            try:
                batch = await _next_batch(stream, last_seen, announced)
            except DomainError as refusal:
                if refusal.code == ErrorCode.UNAUTHENTICATED:
                    await consumer.close_for_invalid_token()
                raise
            for item in batch.items:
                _prime_cache(context, item)
                yield _to_event(item)
            last_seen = batch.last_id
            if not batch.more:
                await wakeup.wait(timeout=_recheck_seconds())
            announced = wakeup.announced(stream.practice_id)


# The reads on the live thread now, by what they read: equal streams woken by one publish wait for the first one's
# read and take its result from the shared reader's memory, instead of each queueing for the live thread.
_reading: dict[tuple, asyncio.Future] = {}


async def _next_batch(stream: live.LiveStream, last_seen: int, announced: int | None) -> live.Batch:
    batch = live.SHARED.cached_batch(stream, last_seen, announced)
    if batch is not None:
        return batch
    loop = asyncio.get_running_loop()
    key = (id(loop), stream.access_key(), stream.objects, last_seen, announced)
    pending = _reading.get(key)
    if pending is not None:
        await asyncio.shield(pending)
        batch = live.SHARED.cached_batch(stream, last_seen, announced)
        if batch is not None:
            return batch
        return await live_db(live.read_shared)(stream, last_seen, announced)
    _reading[key] = done = loop.create_future()
    try:
        return await live_db(live.read_shared)(stream, last_seen, announced)
    finally:
        del _reading[key]
        done.set_result(None)


def _selected_objects(info: Info) -> frozenset[str]:
    """Which of the event's objects the subscription selects: the others are not loaded for its events (a
    mailbox's unread count, say, costs queries nobody reads), nor a message's attachments unless selected.
    Fragments are followed."""
    wanted: set[str] = set()
    pending = [("", selection) for field in info.selected_fields for selection in field.selections]
    while pending:
        parent, selection = pending.pop()
        if not isinstance(selection, SelectedField):  # a fragment: its selections belong to the same parent
            pending.extend((parent, inner) for inner in selection.selections)
        elif not parent:
            wanted.add(selection.name)
            if selection.name == "message":
                pending.extend(("message", inner) for inner in selection.selections)
        elif selection.name == "attachments":
            wanted.add(live.MESSAGE_ATTACHMENTS)
    return frozenset(wanted & live.EVENT_OBJECTS)


def _via(via: AccessSource) -> models.AccessSource:
    return models.AccessSource(via.value)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Events of the viewer's subscribed mailboxes in the practice, the practice's mailbox changes, "
        "and changes of the viewer's own subscriptions. Pass the last `cursor` as `after` to resume."
    )
    async def mailbox_events(
        self, info: Info, practice_id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[LiveEvent, None]:
        user = info.context.require_user()
        pk = decode_id(practice_id, "Practice")
        opener = lambda: live.open_mailbox_stream(user=user, token_id=info.context.token_id, practice_id=pk)  # noqa: E731
        async for event in follow(info, opener, after):
            yield event

    @strawberry.subscription(description="One conversation live, from the mailbox view or the patient's chart.")
    async def conversation_events(
        self,
        info: Info,
        conversation_id: strawberry.ID,
        after: str | None = None,
        via: AccessSource = AccessSource.MAILBOX,
    ) -> AsyncGenerator[LiveEvent, None]:
        user = info.context.require_user()
        pk = decode_id(conversation_id, "Conversation")
        opener = lambda: live.open_conversation_stream(  # noqa: E731
            user=user, token_id=info.context.token_id, conversation_id=pk, via=_via(via)
        )
        async for event in follow(info, opener, after):
            yield event

    @strawberry.subscription(description="The signed-in patient's own threads: new conversations and messages.")
    async def portal_events(self, info: Info, after: str | None = None) -> AsyncGenerator[LiveEvent, None]:
        patient = info.context.require_patient()
        opener = lambda: live.open_portal_stream(patient=patient, token_id=info.context.token_id)  # noqa: E731
        async for event in follow(info, opener, after):
            yield event
