"""HTTP goes to Django (the GraphQL view included); WebSocket `/graphql` to the subscription consumer.

The consumer authenticates once, on `connection_init` (`{"authorization": "Bearer <token>"}`, or the browser
session cookie; handshakes from pages of other origins are refused), then watches the token: revoked or
expired closes the socket with 4403 within `LIVE_RECHECK_SECONDS`. It also pings idle clients
(graphql-transport-ws `ping`).

Queries and mutations sent on the socket (graphql-transport-ws allows them) run as over HTTP: synchronously, in
Django's worker thread, each with its own request (the socket's host and scheme, ws→http, wss→https), request id
and context, authenticated per operation as an HTTP request is. Only subscriptions stream on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.urls import re_path
from graphql import GraphQLError, OperationType
from strawberry.channels import GraphQLWSConsumer
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from core import live, sessions
from core.context import RequestInfo, client_address, current_request, reset_current_request, set_current_request
from core.errors import NOT_SIGNED_IN_MESSAGE, DomainError, ErrorCode
from core.live_db import live_db, live_db_background
from core.tokens import INVALID_TOKEN_MESSAGE, authenticate_token, valid_session_keys, valid_token_ids
from graph import encoding
from graph.context import Context
from graph.errors import format_error
from graph.frame_stack import run_on_fresh_stack
from graph.limits import bounded_json
from graph.live_exec import CURRENT_OPERATION, next_frame
from graph.operations import DocumentRefused, operation_type, validation_error
from graph.views import authenticate_request, bearer_token
from ops import requests

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
        self._pending = False
        # The waiting stream's future, resolved by a publish or the timeout: the stream resumes on the loop's
        # next turn (`asyncio.wait_for` on an `asyncio.Event` ran a task of its own, two more turns, per wake-up).
        self._waiter: asyncio.Future | None = None
        self._announced: dict[int, int] = {}

    def put_nowait(self, message: dict) -> None:  # the interface ChannelsConsumer.dispatch calls
        practice_id, event_id = message.get("practice_id"), message.get("event_id")
        if isinstance(practice_id, int) and isinstance(event_id, int):
            self._announced[practice_id] = max(event_id, self._announced.get(practice_id, 0))
        self._pending = True
        _resolve(self._waiter)

    async def wait(self, timeout: float) -> None:
        if not self._pending:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        self._pending = False

    def announced(self, practice_id: int) -> int | None:
        """The newest event id of the practice published since the last call; None: none (re-check)."""
        return self._announced.pop(practice_id, None)


def _resolve(waiter: asyncio.Future | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _setting(name: str, default: float) -> float:
    return float(settings.MAILBOX.get(name, default))


class TokenWatch:
    """Re-checks the credentials of every open socket of this process (event loop) every `LIVE_RECHECK_SECONDS`,
    tokens in one query and browser sessions in another, and closes the sockets of revoked or expired tokens and
    ended sessions with 4403. One query per interval per process instead of one per socket: 500 sockets made 125
    queries a second, queued on the live thread ahead of event reads; the query runs on the live background thread
    now, so no event read waits for it. (Streams also end at once when the revocation or sign-out event reaches
    them, `core.live`.)"""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TokenWatch] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        # ("token", id) or ("session", key) → the sockets signed in with it
        self.sockets: dict[tuple[str, int | str], set[MailboxWSConsumer]] = defaultdict(set)
        self.task: asyncio.Task | None = None

    @classmethod
    def current(cls) -> TokenWatch:
        loop = asyncio.get_running_loop()
        watch = cls._by_loop.get(loop)
        if watch is None:
            watch = cls._by_loop[loop] = cls()
        return watch

    def add(self, credential: tuple[str, int | str], consumer: MailboxWSConsumer) -> None:
        self.sockets[credential].add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())

    def discard(self, credential: tuple[str, int | str], consumer: MailboxWSConsumer) -> None:
        consumers = self.sockets.get(credential)
        if consumers is not None:
            consumers.discard(consumer)
            if not consumers:
                del self.sockets[credential]

    async def _run(self) -> None:
        while self.sockets:
            await asyncio.sleep(_setting("LIVE_RECHECK_SECONDS", 4))
            credentials = list(self.sockets)
            if not credentials:
                break
            try:
                valid = await live_db_background(_valid_credentials)(credentials)
            except Exception:  # the database is away: keep the sockets, check again next round
                logger.exception("Credential re-check of live sockets failed")
                continue
            for credential in credentials:
                if credential not in valid:
                    for consumer in list(self.sockets.pop(credential, ())):
                        with contextlib.suppress(Exception):
                            await consumer.close_for_invalid_token()


def _valid_credentials(credentials: list[tuple[str, int | str]]) -> set[tuple[str, int | str]]:
    tokens = [value for kind, value in credentials if kind == "token"]
    sessions = [value for kind, value in credentials if kind == "session"]
    valid = {("token", pk) for pk in valid_token_ids(tokens)} if tokens else set()
    return valid | ({("session", key) for key in valid_session_keys(sessions)} if sessions else set())


def _is_pre_execution(result: ExecutionResult) -> bool:
    """Refused before any field ran (invalid document, abuse limits): field errors always carry a path."""
    return result.data is None and bool(result.errors) and all(not error.path for error in result.errors)


class MailboxTransportWSHandler(BaseGraphQLTransportWSHandler):
    """Strawberry's graphql-transport-ws handler, with queries and mutations run as the HTTP view runs them and
    documents that cannot run answered with the protocol's `error` message (codes as over HTTP) instead of a
    close, a bare `complete` or a logged traceback."""

    view: MailboxWSConsumer

    async def send_message(self, message: dict) -> None:
        """A `next` of a live event whose data a cohort shares is encoded once for all its subscribers."""
        payload = message.get("payload") if message.get("type") == "next" else None
        if isinstance(payload, dict) and payload.keys() == {"data"}:
            frame = next_frame(message["id"], payload["data"])
            if frame is not None:
                await self.view.send(frame)
                return  # an oversized answer goes the common way, which replaces it with the size error

        await super().send_message(message)

    async def run_operation(self, operation: Operation) -> None:
        # One log line and the metrics per operation (a subscription's: when it ends), under its own request id.
        async with requests.websocket_operation(operation_id=operation.id, operation_name=operation.operation_name):
            await self._run_operation(operation)

    async def _run_operation(self, operation: Operation) -> None:
        from graph.schema import MAX_TOKENS

        try:
            kind = operation_type(operation.query, operation.operation_name, max_tokens=MAX_TOKENS)
            if operation.variables is not None and not isinstance(operation.variables, dict):
                raise DocumentRefused([validation_error("variables must be an object or null.")])
        except DocumentRefused as refusal:
            requests.refused(refusal.errors)
            await operation.send_initial_errors(refusal.errors)
            return
        requests.operation_kind(kind.value)
        if kind == OperationType.SUBSCRIPTION:
            CURRENT_OPERATION.set(operation)  # this task's: its events may be sent directly (graph.live_exec)
            await super().run_operation(operation)
            return
        try:
            # On a data-stack chunk of its own, as the HTTP view executes (CPython gh-142183, graph/frame_stack.py).
            result = await database_sync_to_async(run_on_fresh_stack)(self.view.execute_operation_sync, operation)
        except Exception as error:  # a fault outside GraphQL execution (which masks its own)
            result = ExecutionResult(data=None, errors=[format_error(GraphQLError(str(error), original_error=error))])
            requests.refused(result.errors)
        if _is_pre_execution(result):
            await operation.send_initial_errors(result.errors)
            return
        await operation.send_next(result)
        await operation.send_operation_message({"id": operation.id, "type": "complete"})


class MailboxWSConsumer(GraphQLWSConsumer):
    graphql_transport_ws_handler_class = MailboxTransportWSHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per connection, so deployments (and tests) tune it in settings.MAILBOX.
        self.connection_init_wait_timeout = dt.timedelta(seconds=_setting("WS_CONNECTION_INIT_SECONDS", 10))
        self._watchdog: asyncio.Task | None = None
        self._watched: tuple[str, int | str] | None = None
        # The browser session of a cookie-authenticated socket (signing out closes it).
        self.session_key: str | None = None
        self._closing = False
        # The operation tasks of the subscriptions streaming now (strawberry keeps them out of reach).
        self._stream_tasks: set[asyncio.Task] = set()
        self._authorization: str | None = None  # connection_init's, sent again with every query and mutation

    async def connect(self) -> None:
        client = self.scope.get("client") or (None, None)
        forwarded = b",".join(value for name, value in self.scope.get("headers", ()) if name == b"x-forwarded-for")
        # Set before the run task starts, so every operation task (and the audit rows) inherits it.
        set_current_request(RequestInfo(ip=client_address(client[0], forwarded.decode("latin-1") or None)))
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
        if self._watched is not None:
            TokenWatch.current().discard(self._watched, self)
            self._watched = None

    def _cancel_tasks(self) -> None:
        for task in (*self._stream_tasks, self.run_task, self._watchdog):
            if task is not None:
                task.cancel()

    async def get_context(self, request: Any, response: Any) -> LiveContext:
        return LiveContext(request=None, ws=self)

    def decode_json(self, data: str | bytes) -> object:
        """A frame nested too deeply or holding a number too long to read is not valid JSON either: the socket
        closes with 4400 ("WebSocket message must be valid JSON"), as for any unreadable frame, not a traceback."""
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            raise json.JSONDecodeError(str(exc)[:100], data if isinstance(data, str) else "", 0) from exc

    def encode_json(self, data: object) -> str | bytes:
        return bounded_json(data, encoding.dumps, wrapped=True).decode()

    async def on_ws_connect(self, context: LiveContext) -> None:
        params = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        raw = bearer_token(header if isinstance(header, str) else None)
        if raw is not None:
            self._authorization = header
            try:
                owner = await live_db(authenticate_token)(raw)
            except DomainError as refusal:
                # The same single answer as over HTTP; only a flood past the failure limit is told apart.
                message = refusal.message if refusal.code == ErrorCode.RATE_LIMITED else INVALID_TOKEN_MESSAGE
                raise ConnectionRejectionError({"reason": message})
            context.user, context.patient, context.token_id = owner.user, owner.patient, owner.token_id
        else:
            user = self.scope.get("user")
            if user is None or not user.is_authenticated:
                raise ConnectionRejectionError({"reason": NOT_SIGNED_IN_MESSAGE})
            # A session past its lifetime or idle limit does not open sockets either (HTTP logs it off).
            if not await live_db(sessions.session_is_current)(self.scope["session"]):
                raise ConnectionRejectionError({"reason": NOT_SIGNED_IN_MESSAGE})
            # Strawberry refused the handshake already if a page of another origin opened it (allowed_origins).
            context.user = user
            session = self.scope.get("session")
            self.session_key = getattr(session, "session_key", None)
        if context.token_id is not None:
            self._watched = ("token", context.token_id)
        elif self.session_key is not None:
            self._watched = ("session", self.session_key)
        if self._watched is not None:
            TokenWatch.current().add(self._watched, self)
        self._watchdog = asyncio.create_task(self._keep_alive())

    def operation_request(self) -> ASGIRequest:
        """The HTTP request a query or mutation on this socket stands for: same client, host and headers (so
        absolute URLs and `X-Forwarded-Proto` behave as over HTTP), the connection_init credentials as its
        Authorization header, and the browser session re-read, as each HTTP request re-reads it."""
        scheme = {"ws": "http", "wss": "https"}.get(self.scope.get("scheme", "ws"), "http")
        request = ASGIRequest({**self.scope, "type": "http", "method": "POST", "scheme": scheme}, io.BytesIO())
        request.user = AnonymousUser()
        if self._authorization is not None:
            request.META["HTTP_AUTHORIZATION"] = self._authorization
        else:
            session = self.scope.get("session")
            key = getattr(session, "session_key", None)
            request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
            # Past its lifetime or idle limit the session signs in no one, as HTTP's session middleware decides.
            if sessions.session_is_current(request.session):
                request.user = get_user(request)
        return request

    def execute_operation_sync(self, operation: Operation) -> ExecutionResult:
        """Runs in Django's worker thread, as the HTTP view does: resolvers are synchronous ORM code."""
        from graph.schema import schema

        # The caller's address as the socket's connect read it (behind a trusted proxy: the forwarded one).
        token = set_current_request(RequestInfo(ip=current_request().ip, request_id=requests.current_request_id()))
        try:
            request = self.operation_request()
            try:
                request.get_host()
            except DisallowedHost:
                message = "This server does not serve that host name; connect to the address of its site."
                return ExecutionResult(data=None, errors=[validation_error(message)])
            context = Context(request=request)
            authenticate_request(request, context)
            try:
                result = schema.execute_sync(
                    operation.query,
                    variable_values=operation.variables,
                    context_value=context,
                    operation_name=operation.operation_name,
                    allowed_operation_types=(StrawberryOperationType.QUERY, StrawberryOperationType.MUTATION),
                )
            finally:
                context.release()
            # As the HTTP view's process_result: errors raised before the operation hooks ran get their code too.
            if result.errors:
                result.errors = [format_error(error) for error in result.errors]
            return result
        finally:
            reset_current_request(token)

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
        """The wake-up signal of one of this socket's streams (`LiveHub`); the stream ends with the socket."""
        task = asyncio.current_task()
        if task is not None:
            self._stream_tasks.add(task)
        try:
            async with LiveHub.current().wakeups(groups) as wakeup:
                yield wakeup
        finally:
            self._stream_tasks.discard(task)


class LiveHub:
    """The process's one listener on the channel layer for every live stream it serves (one per event loop).

    Each socket joining the groups of its streams made the layer hand every publish to every socket's consumer
    task, which only passed it on to its streams: with 250 subscribers a process woke 500 tasks per event. The
    hub joins each group once and wakes the streams of that group itself. Wake-ups carry nothing a stream needs
    (it re-reads the log), so one lost here is recovered by the stream's periodic re-check.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub] = weakref.WeakKeyDictionary()

    def __init__(self, layer) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.by_group: dict[str, set[WakeUp]] = defaultdict(set)
        self.lock = asyncio.Lock()
        self.task: asyncio.Task | None = None

    @classmethod
    def current(cls) -> LiveHub:
        from channels.layers import get_channel_layer

        loop = asyncio.get_running_loop()
        hub = cls._by_loop.get(loop)
        if hub is None:
            layer = get_channel_layer()
            if layer is None:
                raise RuntimeError("Live events need a channel layer (CHANNEL_LAYERS).")
            hub = cls._by_loop[loop] = cls(layer)
        return hub

    @contextlib.asynccontextmanager
    async def wakeups(self, groups: Sequence[str]) -> AsyncIterator[WakeUp]:
        wakeup = WakeUp()
        joined: list[str] = []
        try:
            async with self.lock:
                if self.channel is None:
                    self.channel = await self.layer.new_channel("live-hub.")
                if self.task is None or self.task.done():
                    self.task = asyncio.create_task(self._listen(self.channel))
            for group in groups:
                async with self.lock:
                    # Joined again by every stream: the in-memory layer forgets memberships after a day.
                    await self.layer.group_add(group, self.channel)
                    self.by_group[group].add(wakeup)
                joined.append(group)
            yield wakeup
        finally:
            async with self.lock:
                for group in joined:
                    members = self.by_group.get(group)
                    if members is not None:
                        members.discard(wakeup)
                        if not members:
                            del self.by_group[group]
                            with contextlib.suppress(Exception):
                                await self.layer.group_discard(group, self.channel)
                if not self.by_group:
                    await self._stop()

    async def _stop(self) -> None:
        """The last stream left: the listener stops and leaves its channel while the loop runs."""
        task, self.task, self.channel = self.task, None, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _listen(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer is away (Redis down): streams re-check the log meanwhile
                logger.warning("Live wake-ups: the channel layer failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            if message.get("type") != LIVE_MESSAGE_TYPE:
                continue
            live.SHARED.announced.offer(message)  # before the streams wake: their read may take the row from it
            for wakeup in tuple(self.by_group.get(message.get("group"), ())):
                wakeup.put_nowait(message)


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
