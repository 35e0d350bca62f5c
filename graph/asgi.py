"""HTTP goes to Django (the GraphQL view included); WebSocket `/graphql` to the subscription consumer.

The consumer authenticates once, on `connection_init` (`{"authorization": "Bearer <token>"}`, or the browser
session cookie; handshakes from pages of other origins are refused), then watches the token: revoked or
expired closes the socket with 4403 within `LIVE_RECHECK_SECONDS`. It also pings idle clients
(graphql-transport-ws `ping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.urls import re_path
from strawberry.channels import GraphQLWSConsumer
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from core.context import RequestInfo, set_current_request
from core.errors import DomainError
from core.live_db import live_db
from core.tokens import authenticate_token, valid_token_ids
from graph.context import Context
from graph.limits import bounded_json
from graph.views import bearer_token

logger = logging.getLogger(__name__)

LIVE_MESSAGE_TYPE = "mailbox.event"  # the payload type core.events.publish sends


@dataclass
class LiveContext(Context):
    """The HTTP context plus the connection: resolvers see the same user/patient/token_id fields."""

    connection_params: dict | None = None
    ws: MailboxWSConsumer | None = None


class WakeUp:
    """A coalescing wake-up signal: however many publishes arrive while a stream is busy, it holds one, plus the
    newest event id announced per practice (so the process's shared log read knows what it must include).

    Streams re-read the log on wake-up, so messages themselves carry nothing else to keep: memory stays bounded
    for slow clients whatever the publish rate.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._announced: dict[int, int] = {}

    def put_nowait(self, message: dict) -> None:  # the interface ChannelsConsumer.dispatch calls
        practice_id, event_id = message.get("practice_id"), message.get("event_id")
        if isinstance(practice_id, int) and isinstance(event_id, int):
            self._announced[practice_id] = max(event_id, self._announced.get(practice_id, 0))
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    def announced(self, practice_id: int) -> int | None:
        """The newest event id of the practice published since the last call; None: none (re-check)."""
        return self._announced.pop(practice_id, None)


def _setting(name: str, default: float) -> float:
    return float(settings.MAILBOX.get(name, default))


class TokenWatch:
    """Re-checks the tokens of every open socket of this process (event loop) every `LIVE_RECHECK_SECONDS` in one
    query, and closes the sockets of revoked or expired ones with 4403. One query per interval per process
    instead of one per socket: 500 sockets made 125 queries a second, queued on the live thread ahead of event
    reads."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TokenWatch] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.sockets: dict[int, set[MailboxWSConsumer]] = defaultdict(set)
        self.task: asyncio.Task | None = None

    @classmethod
    def current(cls) -> TokenWatch:
        loop = asyncio.get_running_loop()
        watch = cls._by_loop.get(loop)
        if watch is None:
            watch = cls._by_loop[loop] = cls()
        return watch

    def add(self, token_id: int, consumer: MailboxWSConsumer) -> None:
        self.sockets[token_id].add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def discard(self, token_id: int, consumer: MailboxWSConsumer) -> None:
        consumers = self.sockets.get(token_id)
        if consumers is not None:
            consumers.discard(consumer)
            if not consumers:
                del self.sockets[token_id]

    async def _run(self) -> None:
        while self.sockets:
            await asyncio.sleep(_setting("LIVE_RECHECK_SECONDS", 4))
            token_ids = list(self.sockets)
            if not token_ids:
                break
            try:
                valid = await live_db(valid_token_ids)(token_ids)
            except Exception:  # the database is away: keep the sockets, check again next round
                logger.exception("Token re-check of live sockets failed")
                continue
            for token_id in token_ids:
                if token_id not in valid:
                    for consumer in list(self.sockets.pop(token_id, ())):
                        with contextlib.suppress(Exception):
                            await consumer.close_for_invalid_token()


class MailboxWSConsumer(GraphQLWSConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per connection, so deployments (and tests) tune it in settings.MAILBOX.
        self.connection_init_wait_timeout = dt.timedelta(seconds=_setting("WS_CONNECTION_INIT_SECONDS", 10))
        self._watchdog: asyncio.Task | None = None
        self._watched_token: int | None = None
        self._closing = False
        # The operation tasks of the subscriptions streaming now (strawberry keeps them out of reach).
        self._stream_tasks: set[asyncio.Task] = set()

    async def connect(self) -> None:
        client = self.scope.get("client") or (None, None)
        # Set before the run task starts, so every operation task (and the audit rows) inherits it.
        set_current_request(RequestInfo(ip=client[0]))
        await super().connect()

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the instance ends, including killed by daphne when it has not finished within
            # `application_close_timeout` (10 s) of the client leaving: tasks left pending would be
            # garbage-collected mid-await, and their subscription generators with them ("Task was destroyed but
            # it is pending", "aclose(): asynchronous generator is already running").
            self._cancel_tasks()
            self._stop_watching()

    async def disconnect(self, code: int) -> None:
        self._stop_watching()
        await super().disconnect(code)

    def _stop_watching(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._watched_token is not None:
            TokenWatch.current().discard(self._watched_token, self)
            self._watched_token = None

    def _cancel_tasks(self) -> None:
        for task in (*self._stream_tasks, self.run_task, self._watchdog):
            if task is not None:
                task.cancel()

    async def get_context(self, request: Any, response: Any) -> LiveContext:
        return LiveContext(request=None, ws=self)

    def encode_json(self, data: object) -> str | bytes:
        return bounded_json(data, super().encode_json, wrapped=True)

    async def on_ws_connect(self, context: LiveContext) -> None:
        params = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        raw = bearer_token(header if isinstance(header, str) else None)
        if raw is not None:
            try:
                owner = await live_db(authenticate_token)(raw)
            except DomainError:
                raise ConnectionRejectionError({"reason": "This token is not valid."})
            context.user, context.patient, context.token_id = owner.user, owner.patient, owner.token_id
        else:
            user = self.scope.get("user")
            if user is None or not user.is_authenticated:
                raise ConnectionRejectionError({"reason": 'Send {"authorization": "Bearer <token>"}.'})
            # Strawberry refused the handshake already if a page of another origin opened it (allowed_origins).
            context.user = user
        if context.token_id is not None:
            self._watched_token = context.token_id
            TokenWatch.current().add(context.token_id, self)
        self._watchdog = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        keepalive = _setting("WS_KEEPALIVE_SECONDS", 20)
        if not keepalive:
            return
        while not self._closing:
            await asyncio.sleep(keepalive)
            if not self._closing:
                await self.send(json.dumps({"type": "ping", "payload": {"keepalive": True}}))

    async def close_for_invalid_token(self) -> None:
        if not self._closing:
            self._closing = True
            await self.close(code=4403, reason="Token revoked or expired")

    @contextlib.asynccontextmanager
    async def wakeups(self, groups: Sequence[str]) -> AsyncIterator[WakeUp]:
        """Like strawberry's `listen_to_channel`, with a coalescing signal instead of an unbounded queue.

        One consumer serves every subscription of the socket and `dispatch` hands each layer message to all of
        them; that is harmless here because a woken stream reads only its own part of the log.
        """
        if self.channel_layer is None:
            raise RuntimeError("Live events need a channel layer (CHANNEL_LAYERS).")
        wakeup = WakeUp()
        self.listen_queues[LIVE_MESSAGE_TYPE].add(wakeup)
        task = asyncio.current_task()
        if task is not None:
            self._stream_tasks.add(task)
        joined: list[str] = []
        try:
            for group in groups:
                async with self._group_lock:
                    await self.channel_layer.group_add(group, self.channel_name)
                    self._group_refs[group] += 1
                joined.append(group)
            yield wakeup
        finally:
            self._stream_tasks.discard(task)
            self.listen_queues[LIVE_MESSAGE_TYPE].discard(wakeup)
            for group in joined:
                async with self._group_lock:
                    self._group_refs[group] -= 1
                    if self._group_refs[group] <= 0:
                        del self._group_refs[group]
                        with contextlib.suppress(Exception):
                            await self.channel_layer.group_discard(group, self.channel_name)


def websocket_consumer():
    from graph.schema import schema

    return MailboxWSConsumer.as_asgi(
        schema=schema,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        max_subscriptions_per_connection=int(_setting("WS_MAX_SUBSCRIPTIONS", 50)),
        # Pages of other origins may not open the socket (it would carry the user's session cookie).
        allowed_origins=tuple(settings.CSRF_TRUSTED_ORIGINS),
    )


def build_application(django_asgi_app):
    return ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AuthMiddlewareStack(URLRouter([re_path(r"^graphql/?$", websocket_consumer())])),
        }
    )
