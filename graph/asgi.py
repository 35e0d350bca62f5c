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
import time
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
from core.tokens import authenticate_token, token_is_valid
from graph.context import Context
from graph.views import bearer_token

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


class MailboxWSConsumer(GraphQLWSConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per connection, so deployments (and tests) tune it in settings.MAILBOX.
        self.connection_init_wait_timeout = dt.timedelta(seconds=_setting("WS_CONNECTION_INIT_SECONDS", 10))
        self._watchdog: asyncio.Task | None = None
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

    async def disconnect(self, code: int) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        await super().disconnect(code)

    def _cancel_tasks(self) -> None:
        for task in (*self._stream_tasks, self.run_task, self._watchdog):
            if task is not None:
                task.cancel()

    async def get_context(self, request: Any, response: Any) -> LiveContext:
        return LiveContext(request=None, ws=self)

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
        self._watchdog = asyncio.create_task(self._watch(context))

    async def _watch(self, context: LiveContext) -> None:
        recheck = _setting("LIVE_RECHECK_SECONDS", 4)
        keepalive = _setting("WS_KEEPALIVE_SECONDS", 20)
        last_ping = time.monotonic()
        while not self._closing:
            await asyncio.sleep(min(recheck, keepalive))
            if context.token_id is not None and not await live_db(token_is_valid)(context.token_id):
                await self.close_for_invalid_token()
                return
            if keepalive and time.monotonic() - last_ping >= keepalive:
                last_ping = time.monotonic()
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
