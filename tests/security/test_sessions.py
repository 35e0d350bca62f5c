"""Password sign-in and browser sessions: throttled per account and per address, and held to the token rules
(lifetime TOKEN_TTL_HOURS from sign-in, logged off after TOKEN_IDLE_MINUTES without a request)."""

from __future__ import annotations

import time

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import SESSION_KEY
from django.db import connections
from django.test import Client

from core.live_db import release_connection
from core.sessions import LAST_SEEN_AT, SIGNED_IN_AT
from tests.live_client import LiveClient

PASSWORD = "correct-horse-battery"  # tests/conftest.make_user
ME = '{"query": "query { me { username } }"}'


@pytest.fixture
def login_limits(settings):
    """Low sign-in limits over an hour-long window, so a test never straddles a window boundary."""

    def set_limits(*, account: int = 100, address: int = 100) -> None:
        settings.MAILBOX = {
            **settings.MAILBOX,
            "LOGIN_ACCOUNT_FAILURE_RATE_LIMIT": (account, 3600),
            "LOGIN_ADDRESS_FAILURE_RATE_LIMIT": (address, 3600),
        }

    return set_limits


def sign_in(client: Client, username: str, password: str, **extra: str):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def test_wrong_passwords_past_the_account_limit_refuse_even_the_right_one(world, login_limits):
    # given three wrong passwords for one account, each from another address
    login_limits(account=3)
    for octet in (1, 2, 3):
        assert sign_in(Client(REMOTE_ADDR=f"203.0.113.{octet}"), world.staff.username, "guess").status_code == 200

    # when the right password comes next, from yet another address
    client = Client(REMOTE_ADDR="198.51.100.2")
    refused = sign_in(client, world.staff.username, PASSWORD)

    # then it is refused with a wait to respect, and no session starts; another account signs in from there
    assert refused.status_code == 429
    assert "Too many failed sign-ins for this account; try again in" in refused.content.decode()
    assert not signed_in(client)
    assert sign_in(client, world.subscriber.username, PASSWORD).status_code == 302
    assert signed_in(client)


def test_wrong_passwords_past_the_address_limit_refuse_every_account_from_that_address(world, login_limits):
    # given one address that failed three times, once for an account that does not exist
    login_limits(address=3)
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for username in (world.staff.username, world.subscriber.username, "nobody-here"):
        assert sign_in(attacker, username, "guess").status_code == 200

    # when it tries a right password, and someone at another address signs in to the same account
    refused = sign_in(attacker, world.owner.username, PASSWORD)
    elsewhere = Client(REMOTE_ADDR="198.51.100.2")

    # then the address is refused, the other caller is not
    assert refused.status_code == 429
    assert "Too many failed sign-ins from your address" in refused.content.decode()
    assert not signed_in(attacker)
    assert sign_in(elsewhere, world.owner.username, PASSWORD).status_code == 302


def test_sign_in_failures_behind_a_trusted_proxy_count_per_forwarded_address(world, login_limits, settings):
    # given one proxy in front of the service, and one of its clients over the address limit
    settings.TRUSTED_PROXY_COUNT = 1
    login_limits(address=2)
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    for _ in range(2):
        sign_in(proxy, world.staff.username + "x", "guess", HTTP_X_FORWARDED_FOR="203.0.113.7")

    # when another client of the same proxy signs in
    neighbour = sign_in(
        Client(REMOTE_ADDR="10.0.0.2"), world.owner.username, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.2"
    )

    # then only the failing client's address is refused
    assert sign_in(proxy, world.owner.username, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    assert neighbour.status_code == 302


def test_session_cookie_lasts_the_token_lifetime(world, settings):
    response = sign_in(Client(), world.staff.username, PASSWORD)

    assert response.status_code == 302
    assert response.cookies["sessionid"]["max-age"] == settings.MAILBOX["TOKEN_TTL_HOURS"] * 3600


def test_session_past_its_lifetime_is_signed_out_however_busy(world, settings):
    # given a session signed in just over TOKEN_TTL_HOURS ago, used a minute ago
    client = Client()
    sign_in(client, world.staff.username, PASSWORD)
    session = client.session
    now = time.time()
    session[SIGNED_IN_AT] = now - settings.MAILBOX["TOKEN_TTL_HOURS"] * 3600 - 5
    session[LAST_SEEN_AT] = now - 60
    session.save()

    # when it opens the Workbench and asks the API who it is
    page = client.get("/")
    me = client.post("/graphql", data=ME, content_type="application/json")

    # then it is sent to sign in again and the API sees nobody
    assert page.status_code == 302
    assert page["Location"].startswith("/login/")
    assert me.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert not signed_in(client)


def test_idle_session_is_signed_out_and_a_busy_one_is_not(world, settings):
    # given TOKEN_IDLE_MINUTES=15, a session idle 16 minutes and one idle 14 minutes
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 15}
    idle, busy = Client(), Client()
    sign_in(idle, world.staff.username, PASSWORD)
    sign_in(busy, world.subscriber.username, PASSWORD)
    now = time.time()
    for client, minutes in ((idle, 16), (busy, 14)):
        session = client.session
        session[LAST_SEEN_AT] = now - minutes * 60
        session.save()

    # when both open the Workbench
    idle_page, busy_page = idle.get("/"), busy.get("/")

    # then the idle one signs in again, the busy one works on and its idle clock restarts
    assert idle_page.status_code == 302
    assert not signed_in(idle)
    assert busy_page.status_code == 200
    assert busy.session[LAST_SEEN_AT] > now - 60


def test_sessions_have_no_idle_limit_when_tokens_have_none(world, settings):
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 0}
    client = Client()
    sign_in(client, world.staff.username, PASSWORD)
    session = client.session
    session[LAST_SEEN_AT] = time.time() - 30 * 86400
    session.save()

    assert client.get("/").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_idle_session_cannot_open_a_socket(world, settings):
    # given TOKEN_IDLE_MINUTES=15 and two signed-in sessions, one idle 16 minutes
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 15}

    def make_sessions() -> tuple[str, str]:
        keys = []
        for minutes in (16, 1):
            client = Client()
            sign_in(client, world.subscriber.username, PASSWORD)
            session = client.session
            session[LAST_SEEN_AT] = time.time() - minutes * 60
            session.save()
            keys.append(session.session_key)
        return keys[0], keys[1]

    idle_key, fresh_key = await database_sync_to_async(make_sessions)()
    try:
        # when each opens a socket from our own origin
        def headers(key: str) -> list[tuple[bytes, bytes]]:
            return [
                (b"cookie", f"sessionid={key}".encode()),
                (b"host", b"testserver"),
                (b"origin", b"http://testserver"),
            ]

        idle_client, fresh_client = LiveClient(headers=headers(idle_key)), LiveClient(headers=headers(fresh_key))
        await idle_client.ws.connect()
        await idle_client.send({"type": "connection_init", "payload": {}})
        idle_close = await idle_client._output(timeout=5)
        fresh_answer = await fresh_client.open(payload={})
        await fresh_client.close()
        await idle_client.close()

        # then the idle session is refused, the fresh one acknowledged
        assert (idle_close["type"], idle_close["code"]) == ("websocket.close", 4403)
        assert fresh_answer["type"] == "connection_ack"
    finally:
        await database_sync_to_async(connections.close_all)()
        await release_connection()


@pytest.mark.django_db(transaction=True)
async def test_a_session_socket_s_queries_stop_signing_in_once_the_session_is_idle_too_long(world, settings):
    # given TOKEN_IDLE_MINUTES=15 and a socket opened on a fresh browser session
    settings.MAILBOX = {**settings.MAILBOX, "TOKEN_IDLE_MINUTES": 15}

    def fresh_session() -> str:
        client = Client()
        sign_in(client, world.subscriber.username, PASSWORD)
        return client.session.session_key

    key = await database_sync_to_async(fresh_session)()
    headers = [(b"cookie", f"sessionid={key}".encode()), (b"host", b"testserver"), (b"origin", b"http://testserver")]
    client = LiveClient(headers=headers)
    try:
        assert (await client.open(payload={}))["type"] == "connection_ack"
        await client.subscribe("q1", "{ me { username } }")
        assert (await client.next_for("q1"))["payload"]["data"] == {"me": {"username": world.subscriber.username}}

        # when the session then sits idle past the limit (no HTTP request touched it)
        def go_idle() -> None:
            from django.contrib.sessions.backends.db import SessionStore

            session = SessionStore(key)
            session[LAST_SEEN_AT] = time.time() - 16 * 60
            session.save()

        await database_sync_to_async(go_idle)()

        # then a query on the socket is answered as over HTTP for an ended session: nobody is signed in
        await client.subscribe("q2", "{ me { username } }")
        answer = await client.next_for("q2")
        assert answer["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        await client.close()
        await database_sync_to_async(connections.close_all)()
        await release_connection()
