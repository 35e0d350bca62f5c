"""SPEC §7 as a deployment sees it: real daphne processes (DEBUG off, JSON logs) on the test database."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from core import actions
from core.live import encode_cursor
from core.models import Event
from core.tokens import issue_token
from tests.graphql_client import gid
from tests.server_processes import Server, free_port, start_daphne

pytestmark = pytest.mark.django_db(transaction=True)

THREAD = "query Thread($c: ID!) { conversation(id: $c) { id } }"
SEND = 'mutation Send($c: ID!) { sendMessage(conversationId: $c, body: "Statement ready") { sequence } }'
SUBSCRIBE = """subscription Inbox($p: ID!, $after: String) {
  mailboxEvents(practiceId: $p, after: $after) { cursor kind }
}"""


def samples(server: Server) -> dict[tuple[str, frozenset], float]:
    status, _, body = server.get("/metrics")
    assert status == 200, body[:300]
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def samples_once(server: Server, settled, timeout: float = 5) -> dict[tuple[str, frozenset], float]:
    """The first scrape for which `settled(found)` holds, or the last one after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = samples(server)
        if settled(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def total(found: dict, name: str, **labels: str) -> float:
    """Sum over the series of `name` having these labels (multiprocess gauges add a pid label)."""
    wanted = set(labels.items())
    return sum(value for (sample, series), value in found.items() if sample == name and wanted <= series)


@contextlib.contextmanager
def socket_to(server: Server, token: str):
    with connect(f"ws://127.0.0.1:{server.port}/graphql", subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        yield ws


def receive(ws, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if message["type"] == "ping":
            ws.send(json.dumps({"type": "pong"}))
            continue
        return message


def drain_until_closed(ws) -> None:
    while True:
        ws.recv(timeout=10)


def lines_of(server: Server, event: str, timeout: float = 5) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in server.log_lines() if line.get("event") == event]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_two_processes_share_metrics_and_log_one_line_per_request_and_socket_operation(world, tmp_path):
    # given two server processes sharing a metrics directory, as deploy/ runs them
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    a = start_daphne(tmp_path, **shared)
    try:
        b = start_daphne(tmp_path, **shared)
    except BaseException:
        a.stop()
        raise
    try:
        token = issue_token(user=world.subscriber)
        conversation = {"c": gid("Conversation", world.conversation.pk)}

        # when named queries go to both, with and without a request id of the caller's
        headers, answer = a.post_graphql(THREAD, conversation, token, **{"X-Request-ID": "lb-7f3a"})
        assert not answer.get("errors"), answer
        assert headers["X-Request-ID"] == "lb-7f3a"
        b.post_graphql(THREAD, conversation, token)
        _, refused = b.post_graphql(THREAD, {"c": gid("Conversation", 10**9)}, token)
        assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"

        # then a scrape of either process counts the operations of both
        found = samples(a)
        count = "mailbox_graphql_operation_duration_seconds_count"
        assert total(found, count, transport="http", type="query", operation="Thread") == 3
        assert total(found, "mailbox_graphql_errors_total", code="NOT_FOUND") == 1
        assert total(found, "mailbox_audit_rows_written_total") >= 2

        # and each process logged one JSON line per request, under the id the caller got
        [line_a] = [line for line in lines_of(a, "request") if line["view"] == "graphql"]
        assert line_a["request_id"] == "lb-7f3a"
        assert line_a["operation"] == "Thread"
        assert line_a["user_id"] == world.subscriber.pk
        assert line_a["outcome"] == "OK"
        assert line_a["sql_count"] > 0
        assert line_a["duration_ms"] > 0
        graphql_b = [line for line in lines_of(b, "request") if line["view"] == "graphql"]
        assert [line["outcome"] for line in graphql_b] == ["OK", "NOT_FOUND"]

        # when a subscriber opens a socket on A, runs a query on it and follows the inbox
        baseline = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Base")
        after = encode_cursor(Event.objects.get(mailbox_id=baseline.pk).pk)
        with socket_to(a, token) as ws:
            ws.send(
                json.dumps({"id": "q", "type": "subscribe", "payload": {"query": THREAD, "variables": conversation}})
            )
            assert receive(ws)["type"] == "next"
            assert receive(ws)["type"] == "complete"
            variables = {"p": gid("Practice", world.practice.pk), "after": after}
            ws.send(
                json.dumps({"id": "s", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": variables}})
            )
            found = samples_once(b, lambda found: total(found, "mailbox_subscriptions_active") == 1)
            assert total(found, "mailbox_websockets_open") == 1
            assert total(found, "mailbox_subscriptions_active") == 1
            a.post_graphql(SEND, conversation, token)
            event = receive(ws)
            assert event["type"] == "next"
            assert event["payload"]["data"]["mailboxEvents"]["kind"] == "MESSAGE_ADDED"
            ws.send(json.dumps({"id": "s", "type": "complete"}))
            time.sleep(0.3)

        # then, once the server has seen the socket close, the live metrics saw the delivery, its lag,
        # and the process's log position (the close reaches the server after the client returns)
        found = samples_once(a, lambda found: total(found, "mailbox_websockets_open") == 0)
        assert total(found, "mailbox_live_events_delivered_total", stream="mailboxEvents") == 1
        assert total(found, "mailbox_live_delivery_lag_seconds_count", stream="mailboxEvents") == 1
        assert total(found, "mailbox_live_delivery_lag_seconds_sum") < 2
        assert total(found, "mailbox_event_log_position") >= Event.objects.latest("pk").pk
        assert total(found, "mailbox_websockets_open") == 0
        assert total(found, "mailbox_subscriptions_active") == 0
        # and the socket's operations have a line each, the subscription's when it ended
        operations = lines_of(a, "websocket operation")
        assert [(line["operation"], line["operation_type"]) for line in operations] == [
            ("Thread", "query"),
            ("Inbox", "subscription"),
        ]
        query_line, subscription_line = operations
        assert query_line["outcome"] == "OK"
        assert query_line["sql_count"] > 0
        assert query_line["user_id"] == world.subscriber.pk
        assert subscription_line["events"] == 1
        assert subscription_line["outcome"] == "OK"
        [closed] = lines_of(a, "websocket closed")
        assert closed["duration_ms"] > 0
        # ids only: neither names nor message text
        logged = a.log.read_text()
        assert "Statement ready" not in logged
        assert world.patient.last_name not in logged
    finally:
        stopped = a.stop(), b.stop()  # both, even when the first did not exit cleanly
        assert stopped == (0, 0)


def test_shutdown_closes_sockets_with_4503_and_clients_resume_by_cursor(world, tmp_path):
    # given a subscriber on a process
    server = start_daphne(tmp_path, SHUTDOWN_GRACE_SECONDS="5")
    try:
        token = issue_token(user=world.subscriber)
        baseline = actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Base")
        cursor = encode_cursor(Event.objects.get(mailbox_id=baseline.pk).pk)
        variables = {"p": gid("Practice", world.practice.pk), "after": cursor}
        with socket_to(server, token) as ws:
            subscribe = {"id": "s", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": variables}}
            ws.send(json.dumps(subscribe))
            time.sleep(0.5)

            # when the process is told to stop (systemd, a deploy)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)

            # then the socket is closed with 4503, which clients treat as "reconnect and resume"
            with pytest.raises(ConnectionClosed):
                drain_until_closed(ws)
            assert ws.close_code == 4503, (ws.close_code, ws.close_reason)
        assert server.process.wait(15) == 0
        assert time.monotonic() - started < 5
    finally:
        server.stop()
    [drained] = lines_of(server, "shutdown drained")
    assert drained["sockets_closed"] == 1
    assert drained["sockets_left"] == 0

    # and what happened while it was down reaches the client when it resumes elsewhere with its cursor
    actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="While down")
    replacement = start_daphne(tmp_path)
    try:
        with socket_to(replacement, token) as again:
            again.send(
                json.dumps({"id": "s", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": variables}})
            )
            event = receive(again)
            assert event["payload"]["data"]["mailboxEvents"]["kind"] == "MAILBOX_CREATED"
    finally:
        assert replacement.stop() == 0


def test_readyz_is_503_when_the_database_is_unreachable(db, tmp_path):
    # given a process whose PostgreSQL does not answer (nothing listens on its port)
    server = start_daphne(tmp_path, DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/mailbox")
    try:
        # then it serves (healthz) but is not ready, and says why
        assert server.get("/healthz")[0] == 200
        status, _, body = server.get("/readyz")
        assert status == 503
        answer = json.loads(body)
        assert answer["checks"]["database"].startswith("database unreachable: OperationalError")
        assert "migrations" not in answer["checks"]
        assert answer["reason"].startswith("database unreachable")
    finally:
        server.stop()


def test_readyz_is_503_until_migrations_are_applied(db, tmp_path):
    empty = tmp_path / "empty.sqlite3"
    server = start_daphne(tmp_path, DATABASE_URL=f"sqlite:///{empty}")
    try:
        status, _, body = server.get("/readyz")
        assert status == 503
        answer = json.loads(body)
        assert answer["checks"]["database"] == "ok"
        assert answer["checks"]["migrations"].startswith("migrations not applied (")
        assert "manage.py migrate" in answer["reason"]
    finally:
        server.stop()
