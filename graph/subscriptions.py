"""Subscriptions of SPEC §3 over graphql-transport-ws: each follows the event log with `core.live`.

The resolvers parse arguments and hand over to `follow`, which joins the stream's channel-layer groups
first, then reads the log after the cursor, then waits for wake-ups (publishes) or the periodic re-check.
Each event's fields are executed by `graph.live_exec` on the live database thread, as over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Iterator

import strawberry
from django.conf import settings
from strawberry import relay
from strawberry.extensions import SchemaExtension

from core import live, models
from core.errors import DomainError, ErrorCode
from core.live_db import live_db
from graph import event_objects
from graph.context import Info
from graph.conversations.types import ConversationType, MessageType
from graph.enums import AccessSource, EventKind
from graph.errors import format_error
from graph.ids import decode_id
from graph.live_exec import LiveDelivery, SocketOrigin, deliver_direct
from graph.mailboxes.types import MailboxType
from ops import metrics, requests

logger = logging.getLogger(__name__)


@strawberry.type(
    description="One change from the event log. `cursor` resumes after it (`after:`). Its objects answer every "
    "field as the same field would over HTTP for this viewer at this moment."
)
class LiveEvent:
    @strawberry.field
    def cursor(self: LiveDelivery) -> str:
        return live.encode_cursor(self.event.pk)

    @strawberry.field
    def kind(self: LiveDelivery) -> EventKind:
        return models.EventKind(self.event.kind)

    @strawberry.field
    def occurred_at(self: LiveDelivery) -> dt.datetime:
        return self.event.created_at

    @strawberry.field(description="Set even when the mailbox is deleted.")
    def mailbox_id(self: LiveDelivery) -> relay.GlobalID | None:
        return relay.GlobalID("Mailbox", str(self.event.mailbox_id)) if self.event.mailbox_id else None

    @strawberry.field
    def conversation_id(self: LiveDelivery) -> relay.GlobalID | None:
        event = self.event
        return relay.GlobalID("Conversation", str(event.conversation_id)) if event.conversation_id else None

    @strawberry.field
    def mailbox(self: LiveDelivery, info: Info) -> MailboxType | None:
        return event_objects.mailbox(self, info.context)

    @strawberry.field
    def conversation(self: LiveDelivery, info: Info) -> ConversationType | None:
        return event_objects.conversation(self, info.context)

    @strawberry.field
    def message(self: LiveDelivery, info: Info) -> MessageType | None:
        return event_objects.message(self, info.context)

    @strawberry.field(description="The name of a deleted mailbox.")
    def mailbox_name(self: LiveDelivery) -> str | None:
        return (self.event.data or {}).get("name")

    @strawberry.field(description="Users whose own view changed (subscriptions, reads).")
    def user_ids(self: LiveDelivery) -> list[relay.GlobalID]:
        return [relay.GlobalID("User", str(pk)) for pk in self.event.user_ids or []]


class StreamedDomainErrors(SchemaExtension):
    """`DomainErrors` formats whole operations; a subscription's results are formatted one by one here."""

    def on_stream_result(self, result) -> Iterator[None]:
        if getattr(result, "errors", None):
            result.errors = [format_error(e) for e in result.errors]
        yield


def _recheck_seconds() -> float:
    return float(settings.MAILBOX.get("LIVE_RECHECK_SECONDS", 4))


async def follow(info: Info, open_stream, after: str | None) -> AsyncGenerator[LiveDelivery, None]:
    """Joins the groups, replays the log after `after`, then continues live; access re-checked every batch.

    Every read goes through the process's shared reader (`core.live.SHARED`): however many subscribers a
    publish wakes, the process reads the log and decides access once per event and distinct viewer, on the
    live thread; the other subscribers take the result from memory on the event loop. What each event shows is
    executed by `graph.live_exec`, once per cohort of subscribers.
    """
    context = info.context
    consumer = getattr(context, "ws", None)
    if consumer is None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "Subscriptions run over WebSocket (graphql-transport-ws).")
    stream: live.LiveStream = await live_db(open_stream)()
    stream.session_key = consumer.session_key
    origin = SocketOrigin(consumer.scope)
    async with consumer.wakeups(stream.groups) as wakeup:
        last_seen, announced = await live_db(live.start_stream)(stream, after)
        while True:
            try:
                batch = await _next_batch(stream, last_seen, announced or None)
            except DomainError as refusal:
                if refusal.code == ErrorCode.UNAUTHENTICATED:
                    await consumer.close_for_invalid_token()
                raise
            if batch.items:
                _last_delivery[0] = time.monotonic()
            for event in batch.items:
                delivery = LiveDelivery(event=event, stream=stream, origin=origin, access=batch.access)
                if not await deliver_direct(delivery, consumer.send):
                    yield delivery
                # Resumed for the next event once this one's frame is sent: the delivery is measured here.
                requests.live_delivered(stream.kind, event)
            last_seen = batch.last_id
            metrics.log_position(last_seen)
            if live.SHARED.due:
                _revalidate_in_background()
            if not batch.more:
                await wakeup.wait(timeout=_recheck_seconds())
            announced = wakeup.announced(stream.practice_id)


# The practice log reads on the live thread now, by practice and announced event: every stream woken by one publish
# waits for the first one's read, then takes its events (and, when decided before, its access) from the shared
# reader's memory, instead of each queueing for the live thread (500 distinct viewers made 500 thread calls).
_reading: dict[tuple, asyncio.Future] = {}


async def _next_batch(stream: live.LiveStream, last_seen: int, announced: int | None) -> live.Batch:
    batch = live.SHARED.cached_batch(stream, last_seen, announced)
    if batch is not None:
        return batch
    loop = asyncio.get_running_loop()
    key = (id(loop), stream.practice_id, announced)
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


_revalidating: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


def _revalidate_in_background() -> None:
    """Access decisions past the safety-net interval are decided again off the events' path, a few per live
    thread call, so event reads queued meanwhile go between them."""
    loop = asyncio.get_running_loop()
    task = _revalidating.get(loop)
    if task is None or task.done():
        _revalidating[loop] = loop.create_task(_revalidate())


# When this process last started delivering a batch: re-decisions wait for a quiet moment.
_last_delivery = [0.0]
_QUIET_SECONDS = 0.1


async def _revalidate() -> None:
    try:
        while True:
            # Between fan-outs: a decision past the safety net stands for as long again, so there is time to wait.
            quiet = time.monotonic() - _last_delivery[0]
            if quiet < _QUIET_SECONDS:
                await asyncio.sleep(_QUIET_SECONDS - quiet)
                continue
            if not await live_db(live.SHARED.revalidate_due)(10):
                return
            await asyncio.sleep(0.01)  # the event loop keeps the interpreter between chunks
    except Exception:  # the database is away: the decisions stay due, and past their grace streams decide them
        logger.warning("Background re-decision of live access failed", exc_info=True)


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
