"""Several server processes share one live stream through Redis: subscribe on one daphne, send through another."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import dj_database_url
import pytest
from django.db import connection
from websockets.sync.client import connect

from core import actions
from core.live import encode_cursor
from core.models import Event
from core.tokens import issue_token
from tests import processes
from tests.graphql_client import gid

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
        reason="needs DATABASE_URL (PostgreSQL, shared by the server processes) and REDIS_URL",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIBE = """
subscription($practiceId: ID!, $after: String) {
  mailboxEvents(practiceId: $practiceId, after: $after) { cursor kind message { body direction } }
}
"""
SEND = """
mutation($c: ID!, $body: String!) { sendMessage(conversationId: $c, body: $body) { sequence } }
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The server processes use the test database this test has committed its data to."""
    url = dj_database_url.parse(os.environ["DATABASE_URL"])
    user, password = url.get("USER") or "", url.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    return (
        f"postgres://{credentials}{url['HOST'] or '127.0.0.1'}:{url['PORT'] or 5432}/{connection.settings_dict['NAME']}"
    )


test_database_url.__test__ = False  # a helper, not a test


def start_daphne(port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "two-process-test-key",
        "DEBUG": "0",
    }
    with log.open("wb") as out:
        return processes.spawn(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until_listening(port: int, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daphne on {port} exited:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"daphne on {port} did not start:\n{log.read_text()[-3000:]}")


def post_graphql(port: int, token: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def next_data(ws, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["type"] == "ping":
            ws.send(json.dumps({"type": "pong"}))
            continue
        assert message["type"] == "next", message
        assert not message["payload"].get("errors"), message
        return message["payload"]["data"]["mailboxEvents"]


def test_subscriber_on_one_process_receives_a_message_sent_through_another(world, tmp_path):
    # given two daphne processes on the same database and Redis
    port_a, port_b = free_port(), free_port()
    with ExitStack() as stack:
        started = []
        for port in (port_a, port_b):
            log = tmp_path / f"daphne-{port}.log"
            process = start_daphne(port, log)
            stack.callback(processes.stop, process)
            started.append((port, process, log))
        for port, process, log in started:
            wait_until_listening(port, process, log)
        subscriber_token = issue_token(user=world.subscriber)
        # A cursor makes the start deterministic however long the subscription takes to set up.
        baseline = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Base")
        after = encode_cursor(Event.objects.get(mailbox_id=baseline.pk).pk)
        sender_token = issue_token(user=world.mailbox_admin)

        # and a subscriber connected to process A
        with connect(f"ws://127.0.0.1:{port_a}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {subscriber_token}"}}))
            assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
            ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {
                            "query": SUBSCRIBE,
                            "variables": {"practiceId": gid("Practice", world.practice.pk), "after": after},
                        },
                    }
                )
            )
            time.sleep(0.5)  # lets it join its groups, so even the first message travels through Redis

            # when a colleague sends messages through process B
            latencies = []
            for body in ("Sent through B", "And once more"):
                started = time.perf_counter()
                answer = post_graphql(
                    port_b, sender_token, SEND, {"c": gid("Conversation", world.conversation.pk), "body": body}
                )
                assert not answer.get("errors"), answer
                event = next_data(ws, timeout=10)
                latencies.append((time.perf_counter() - started) * 1000)

                # then the subscriber on A receives each, through Redis (well before the 4 s log re-check)
                assert event["kind"] == "MESSAGE_ADDED"
                assert event["message"] == {"body": body, "direction": "TO_PATIENT"}
            assert max(latencies) < 2000, latencies
            print(f"cross-process delivery (POST to B → event on A): {', '.join(f'{x:.0f} ms' for x in latencies)}")


LONG_THREAD = """
subscription($id: ID!, $after: String) {
  conversationEvents(conversationId: $id, after: $after) {
    message { body }
    conversation { messages(last: 50) { edges { node { body } } } }
  }
}
"""


def test_a_reader_that_falls_behind_gets_every_frame_whole_and_in_order(world, tmp_path):
    # given a daphne process and a thread of fifty long messages
    port = free_port()
    log = tmp_path / "daphne.log"
    process = start_daphne(port, log)
    try:
        wait_until_listening(port, process, log)
        token = issue_token(user=world.subscriber)
        for n in range(50):
            body = f"history {n:02d} " + "h" * 15_000
            actions.send_staff_message(acting_user=world.subscriber, conversation_id=world.conversation.pk, body=body)
        after = encode_cursor(Event.objects.latest("id").pk)

        # and a subscriber to the thread, with its last fifty messages in every event (frames of ~750 KB), whose
        # client reads slowly (small receive buffer, one-frame queue): the server's socket fills, so frames go out
        # partly at once and partly from Twisted's buffer
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        url = f"ws://127.0.0.1:{port}/graphql"
        with connect(url, sock=sock, subprotocols=["graphql-transport-ws"], max_queue=1, max_size=2**24) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
            assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
            variables = {"id": gid("Conversation", world.conversation.pk), "after": after}
            ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": LONG_THREAD, "variables": variables}})
            )
            time.sleep(0.5)

            # when ten more are sent while it does not read
            bodies = [f"new {n:02d} " + "x" * 15_000 for n in range(10)]
            for body in bodies:
                actions.send_staff_message(
                    acting_user=world.subscriber, conversation_id=world.conversation.pk, body=body
                )
            time.sleep(2)

            # then it receives every event, whole (each frame parses), in the order sent
            for body in bodies:
                message = json.loads(ws.recv(timeout=30))
                while message["type"] == "ping":
                    ws.send(json.dumps({"type": "pong"}))
                    message = json.loads(ws.recv(timeout=30))
                event = message["payload"]["data"]["conversationEvents"]
                assert event["message"]["body"] == body
                # (the thread as it is when the event is delivered: later messages may be in it already)
                thread = [edge["node"]["body"] for edge in event["conversation"]["messages"]["edges"]]
                assert len(thread) == 50
                assert body in thread
    finally:
        processes.stop(process)
