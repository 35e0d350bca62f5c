"""graphql-transport-ws conformance of the `/graphql` WebSocket: handshake, authentication, protocol errors."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from django.utils import timezone

from core.live_db import release_connection
from core.models import ApiToken, AuditEvent
from core.tokens import hash_token, issue_token
from graph.asgi import TokenWatch
from tests.graphql_client import gid
from tests.live_client import MAILBOX_EVENTS, Closed, LiveClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    """Database work ran in asgiref's worker thread and the live thread; close their connections so the test
    database can be dropped."""
    yield
    await database_sync_to_async(connections.close_all)()
    await release_connection()


async def test_valid_token_in_connection_init_is_acknowledged(world):
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient()
    assert (await client.open(token))["type"] == "connection_ack"
    await client.close()


async def test_bad_token_is_closed_with_4403(db):
    client = LiveClient()
    with pytest.raises(Closed) as closed:
        await client.open("pmm_not-a-real-token")
    assert closed.value.code == 4403
    await client.close()


async def test_missing_credentials_are_closed_with_4403(db):
    client = LiveClient()
    with pytest.raises(Closed) as closed:
        await client.open(payload={})
    assert closed.value.code == 4403
    await client.close()


async def test_no_connection_init_in_time_is_closed_with_4408(db, settings):
    settings.MAILBOX = {**settings.MAILBOX, "WS_CONNECTION_INIT_SECONDS": 0.3}
    client = LiveClient()
    connected, _ = await client.ws.connect()
    assert connected
    assert await client.closed_code(timeout=3) == 4408
    await client.close()


async def test_second_connection_init_is_closed_with_4429(world):
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient()
    await client.open(token)
    await client.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    assert await client.closed_code() == 4429
    await client.close()


async def test_subscribe_before_ack_is_closed_with_4401(db):
    client = LiveClient()
    await client.ws.connect()
    await client.subscribe("m", "subscription { portalEvents { cursor } }")
    assert await client.closed_code() == 4401
    await client.close()


async def test_duplicate_subscription_id_is_closed_with_4409(world):
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient()
    await client.open(token)
    variables = {"practiceId": gid("Practice", world.practice.pk)}
    await client.subscribe("same", MAILBOX_EVENTS, variables)
    await client.subscribe("same", MAILBOX_EVENTS, variables)
    assert await client.closed_code() == 4409
    await client.close()


async def test_ping_is_answered_with_pong(world):
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient()
    await client.open(token)
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"
    await client.close()


async def test_server_sends_keepalive_pings(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "WS_KEEPALIVE_SECONDS": 0.3, "LIVE_RECHECK_SECONDS": 0.3}
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient()
    await client.open(token)
    output = await client._output(timeout=3)
    assert '"ping"' in output["text"]
    await client.close()


async def test_browser_session_cookie_authenticates_same_origin_only(world):
    # given a signed-in browser session
    def make_session() -> str:
        session = SessionStore()
        session[SESSION_KEY] = str(world.subscriber.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = world.subscriber.get_session_auth_hash()
        session.save()
        return session.session_key

    key = await database_sync_to_async(make_session)()
    cookie = (b"cookie", f"sessionid={key}".encode())

    # when it connects from our own origin, it is acknowledged without a token
    client = LiveClient(headers=[cookie, (b"host", b"testserver"), (b"origin", b"http://testserver")])
    assert (await client.open(payload={}))["type"] == "connection_ack"
    await client.close()

    # when another site's page tries the same cookie, it is refused
    client = LiveClient(headers=[cookie, (b"host", b"testserver"), (b"origin", b"https://evil.example")])
    connected, _ = await client.ws.connect()
    assert not connected


async def test_sockets_killed_by_the_server_leave_no_task_behind(world):
    # given sockets with live subscriptions, and a record of what the event loop reports
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context["message"]))
    try:
        token = await database_sync_to_async(issue_token)(user=world.subscriber)
        variables = {"practiceId": gid("Practice", world.practice.pk)}
        clients = []
        for n in range(5):
            client = LiveClient()
            await client.open(token)
            await client.subscribe(f"s{n}", MAILBOX_EVENTS, variables)
            clients.append(client)
        await clients[-1].nothing_for(0.3)
        before = asyncio.all_tasks()
        assert len([t for t in before if t.get_coro().__qualname__ == "MailboxWSConsumer._keep_alive"]) == 5
        assert [len(sockets) for sockets in TokenWatch.current().sockets.values()] == [5]  # one token, 5 sockets

        # when the server kills each application instance, as daphne does when one has not finished
        # `application_close_timeout` after its client left
        for client in clients:
            client.ws.future.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.ws.future
        await asyncio.sleep(0.2)
        del client, clients
        gc.collect()
        await asyncio.sleep(0.2)

        # then none of their tasks (socket handler, subscriptions, token watchdog) is left running, none was
        # destroyed while pending, and no subscription generator was closed mid-run
        socket_tasks = {
            "AsyncBaseHTTPView.run",  # strawberry's handler of the socket
            "BaseGraphQLTransportWSHandler.run_operation",  # one per subscription
            "MailboxWSConsumer._keep_alive",
        }
        left = [t for t in before & asyncio.all_tasks() if t.get_coro().__qualname__ in socket_tasks]
        assert left == []
        assert not TokenWatch.current().sockets  # the process's token re-check forgot them
        assert reports == []
    finally:
        loop.set_exception_handler(previous)


async def close_frame(client: LiveClient, payload: dict) -> dict:
    """The server's answer to a connection_init that it refuses: the close frame itself."""
    connected, _ = await client.ws.connect()
    assert connected
    await client.send({"type": "connection_init", "payload": payload})
    output = await client._output(timeout=5)
    assert output["type"] == "websocket.close", output
    return output


async def test_every_unusable_token_is_closed_the_same_way_and_audited_with_its_reason(world, settings):
    # given an unknown, a revoked, an expired and an idle token
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 15}

    def make_tokens() -> list[str]:
        revoked, expired, idle = (issue_token(user=world.subscriber) for _ in range(3))
        now = timezone.now()
        ApiToken.objects.filter(key_hash=hash_token(revoked)).update(revoked_at=now)
        ApiToken.objects.filter(key_hash=hash_token(expired)).update(expires_at=now - timedelta(seconds=1))
        ApiToken.objects.filter(key_hash=hash_token(idle)).update(last_used_at=now - timedelta(minutes=16))
        return ["pmm_never-issued", revoked, expired, idle]

    tokens = await database_sync_to_async(make_tokens)()

    # when each opens a socket
    frames = [await close_frame(LiveClient(), {"authorization": f"Bearer {raw}"}) for raw in tokens]

    # then every socket gets the same close, and only the audit trail tells why
    assert all(frame == frames[0] for frame in frames), frames
    assert frames[0]["code"] == 4403

    def reasons() -> list[str]:
        return [e.detail["reason"] for e in AuditEvent.objects.filter(operation="authenticate").order_by("pk")]

    assert await database_sync_to_async(reasons)() == ["unknown", "revoked", "expired", "idle"]


async def test_valid_token_opens_a_socket_while_its_forwarded_address_is_locked_out(world, settings):
    # given a trusted proxy, and a client address behind it that used up its failed-token limit
    settings.TRUSTED_PROXY_COUNT = 1
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_FAILURE_RATE_LIMIT": (2, 3600)}
    forwarded = [(b"x-forwarded-for", b"203.0.113.7")]
    for attempt in range(2):
        await close_frame(LiveClient(headers=forwarded), {"authorization": f"Bearer pmm_guess{attempt}-xyz"})

    # when that address sends another bad token, then a valid one
    await close_frame(LiveClient(headers=forwarded), {"authorization": "Bearer pmm_guess9-xyz"})
    token = await database_sync_to_async(issue_token)(user=world.subscriber)
    client = LiveClient(headers=forwarded)
    acknowledged = await client.open(token)
    await client.close()

    # then the valid token is acknowledged, and only the failures under the limit were audited, by that address
    assert acknowledged["type"] == "connection_ack"

    def audited() -> list[str | None]:
        return list(AuditEvent.objects.filter(operation="authenticate").values_list("ip", flat=True))

    assert await database_sync_to_async(audited)() == ["203.0.113.7", "203.0.113.7"]
