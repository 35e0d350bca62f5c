"""SPEC §7 in one process: the probes, /metrics (parsed with Prometheus' own parser) and its access rule, and one
request log line per request."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from core.models import AuditEvent
from ops import metrics
from tests import processes
from tests.graphql_client import Api, gid
from tests.server_processes import free_port

SEND = 'mutation($c: ID!) { sendMessage(conversationId: $c, body: "Your statement is ready") { sequence } }'
READ = "query Thread($c: ID!) { conversation(id: $c) { id messages { edges { node { body } } } } }"


def scrape(client: Client | None = None, **headers) -> dict[tuple[str, frozenset], float]:
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_healthz_answers_without_touching_the_database(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_ready_when_the_database_answers_and_migrations_are_applied(db, settings):
    settings.REDIS_URL = ""
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok"}}


def test_readyz_is_503_with_the_reason_when_redis_does_not_answer(db, settings):
    # given a Redis URL where nothing listens
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    # when the load balancer asks
    response = Client().get("/readyz")
    # then it is told to keep traffic away, and why
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("redis unreachable: ConnectionError")
    assert "redis unreachable" in body["reason"]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_readyz_follows_a_redis_server_that_goes_away(db, settings, tmp_path):
    # given a Redis of our own, answering
    port = free_port()
    redis = processes.spawn(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        ready = Client().get("/readyz")
        assert ready.status_code == 200, ready.content
        assert ready.json()["checks"]["redis"] == "ok"
    finally:
        # when it is stopped
        processes.stop(redis)
    # then readiness fails with the reason
    gone = Client().get("/readyz")
    assert gone.status_code == 503
    assert gone.json()["checks"]["redis"].startswith("redis unreachable")


def test_metrics_are_refused_to_other_addresses_without_the_token(db, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.METRICS_TOKEN = "scrape-secret"
    refused = Client(REMOTE_ADDR="192.0.2.7").get("/metrics")
    assert refused.status_code == 403
    assert b"mailbox_" not in refused.content
    wrong = Client(REMOTE_ADDR="192.0.2.7").get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 403
    # an allowed network, or the token from anywhere
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert scrape(Client(REMOTE_ADDR="192.0.2.7"), Authorization="Bearer scrape-secret")


def test_metrics_refuse_a_forged_forwarded_address_without_trusted_proxies(db, settings):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    settings.TRUSTED_PROXY_COUNT = 0
    client = Client(REMOTE_ADDR="192.0.2.7")
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403


def test_metrics_count_operations_errors_audit_rows_and_rate_limit_refusals(world, settings):
    # given a scrape before
    settings.MAILBOX = {**settings.MAILBOX, "SEND_RATE_LIMIT": (1, 3600)}
    before = scrape()
    api = Api.as_user(world.subscriber)
    conversation = {"c": gid("Conversation", world.conversation.pk)}
    audit_rows = AuditEvent.objects.count()

    # when a user reads a thread (named operation), sends twice (the second is rate-limited) and an outsider
    # asks for the thread
    api.data(READ, conversation)
    api.data(SEND, conversation)
    assert api.error_code(SEND, conversation) == "RATE_LIMITED"
    assert Api.as_user(world.outsider).error_code(READ, conversation) == "NOT_FOUND"
    after = scrape()

    # then each shows in the metrics
    duration = "mailbox_graphql_operation_duration_seconds_count"
    assert (
        value(after, duration, transport="http", type="query", operation="Thread")
        - value(before, duration, transport="http", type="query", operation="Thread")
        == 2
    )
    sends = value(after, duration, transport="http", type="mutation", operation="anonymous") - value(
        before, duration, transport="http", type="mutation", operation="anonymous"
    )
    assert sends == 2
    errors = "mailbox_graphql_errors_total"
    for code in ("RATE_LIMITED", "NOT_FOUND"):
        assert (
            value(after, errors, code=code, transport="http") - value(before, errors, code=code, transport="http") == 1
        )
    refusals = "mailbox_rate_limit_refusals_total"
    assert value(after, refusals, limit="SEND_RATE_LIMIT") - value(before, refusals, limit="SEND_RATE_LIMIT") == 1
    written = sum(
        value(after, "mailbox_audit_rows_written_total", action=action)
        - value(before, "mailbox_audit_rows_written_total", action=action)
        for action in ("CREATE", "READ", "UPDATE", "DELETE", "EXECUTE")
    )
    assert written == AuditEvent.objects.count() - audit_rows > 0
    http = "mailbox_http_request_duration_seconds_count"
    assert value(after, http, view="graphql", status="2xx") - value(before, http, view="graphql", status="2xx") == 4


def test_operation_names_of_anonymous_callers_do_not_become_labels(db):
    before = scrape()
    Client().post("/graphql", data='{"query": "query Probe1234 { me { id } }"}', content_type="application/json")
    after = scrape()
    assert not any(("operation", "Probe1234") in labels for _, labels in after)
    unauthenticated = (
        "mailbox_graphql_operation_duration_seconds_count",
        frozenset({"transport": "http", "type": "query", "operation": "unauthenticated"}.items()),
    )
    assert after[unauthenticated] - before.get(unauthenticated, 0) == 1


def test_operation_name_labels_are_bounded(settings, monkeypatch):
    settings.METRICS_MAX_OPERATION_NAMES = 3
    monkeypatch.setattr(metrics, "_names", set())
    labels = [metrics.operation_label(f"Op{n}", signed_in=True) for n in range(5)]
    assert labels == ["Op0", "Op1", "Op2", "other", "other"]
    assert metrics.operation_label("Op1", signed_in=True) == "Op1"
    assert metrics.operation_label("not a name!", signed_in=True) == "other"


def test_notifier_backlog_counts_events_after_the_stored_position(world, monkeypatch):
    from core import actions
    from core.models import Event

    monkeypatch.setattr(metrics, "_backlog_sources", {})
    newest = Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    metrics.register_backlog_source("notifier", lambda: newest)
    assert value(scrape(), "mailbox_notifier_backlog_events", worker="notifier") == 0
    actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Front Desk")
    assert (
        value(scrape(), "mailbox_notifier_backlog_events", worker="notifier")
        == Event.objects.filter(pk__gt=newest).count()
        >= 1
    )


def request_lines(caplog) -> list[dict]:
    return [r.msg for r in caplog.records if r.name == "mailbox.requests" and isinstance(r.msg, dict)]


def test_one_log_line_per_request_with_ids_duration_sql_and_outcome(world, caplog):
    caplog.set_level("INFO", logger="mailbox.requests")
    api = Api.as_user(world.subscriber)
    conversation = {"c": gid("Conversation", world.conversation.pk)}

    api.data(READ, conversation)
    Api.as_user(world.outsider).error_code(READ, conversation)
    Client().get("/healthz")

    lines = request_lines(caplog)
    assert [line["event"] for line in lines] == ["request"] * 3
    read, refused, probe = lines
    assert read["operation"] == "Thread"
    assert read["operation_type"] == "query"
    assert read["user_id"] == world.subscriber.pk
    assert read["patient_id"] is None
    assert read["outcome"] == "OK"
    assert read["status"] == 200
    assert read["sql_count"] > 0
    assert read["duration_ms"] > 0
    assert refused["outcome"] == "NOT_FOUND"
    assert refused["user_id"] == world.outsider.pk
    assert probe["view"] == "healthz"
    assert probe["sql_count"] == 0
    # ids only: neither names nor message text
    text = repr(lines)
    assert world.patient.last_name not in text
    assert world.subscriber.full_name not in text


def test_the_log_line_carries_the_callers_request_id(world, caplog):
    caplog.set_level("INFO", logger="mailbox.requests")
    response = Client().post(
        "/graphql",
        data='{"query": "{ me { id } }"}',
        content_type="application/json",
        headers={"X-Request-ID": "abc-1"},
    )
    assert response["X-Request-ID"] == "abc-1"
    [line] = request_lines(caplog)
    assert line["outcome"] == "UNAUTHENTICATED"
    assert line["status"] == 200


def test_a_request_refused_before_graphql_runs_logs_its_code(db, caplog):
    caplog.set_level("INFO", logger="mailbox.requests")
    Client().get("/graphql", {"query": "{ me { id } }"})
    [line] = request_lines(caplog)
    assert line["status"] == 405
    assert line["outcome"] == "VALIDATION_ERROR"


def formatted(logger_name: str, config: dict, action) -> list[str]:
    """What the configured console formatter writes for the records `action` logs."""
    import io
    import logging
    import logging.config

    stream = io.StringIO()
    formatter = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["structured"])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        action()
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_an_unexpected_error_is_logged_with_its_traceback_under_the_request_id(settings):
    import json

    import structlog
    from graphql import GraphQLError

    from core.context import RequestInfo, reset_current_request, set_current_request
    from graph.errors import format_error
    from ops.logs import logging_config

    def fail_inside_a_request():
        token = set_current_request(RequestInfo(request_id="req-42"))
        try:
            with structlog.contextvars.bound_contextvars(request_id="req-42"):
                try:
                    {}["missing"]  # a real fault, raised and caught as a resolver's would be
                except KeyError as error:
                    answer = format_error(GraphQLError(str(error), original_error=error))
        finally:
            reset_current_request(token)
        assert answer.extensions == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-42"}

    [line] = formatted("graph.errors", logging_config(json=True, level="INFO"), fail_inside_a_request)
    record = json.loads(line)
    assert record["request_id"] == "req-42"
    assert record["level"] == "error"
    assert "Traceback" in record["exception"]
    assert "KeyError: 'missing'" in record["exception"]


def test_development_logs_are_readable_lines(settings):
    from ops.logs import logging_config

    def log_one():
        import logging

        logging.getLogger("mailbox.requests").warning("request %s", "seen")

    [line] = formatted("mailbox.requests", logging_config(json=False, level="INFO"), log_one)
    assert not line.startswith("{")
    assert "request seen" in line
    assert "warning" in line


def test_a_per_practice_position_table_gives_the_backlog_of_every_practice(world):
    # given a worker's per-practice positions (the shape of the notifier's cursor table), one practice read to its
    # newest event, the other never read
    from django.db import connection

    from core import actions
    from core.models import Event

    actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Front Desk")
    actions.create_mailbox(acting_user=world.outsider, practice_id=world.other_practice.pk, name="Front Desk")
    newest = Event.objects.filter(practice=world.practice).latest("pk").pk
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_worker_position (practice_id bigint, last_event_id bigint)")
        cursor.execute("INSERT INTO test_worker_position VALUES (%s, %s)", [world.practice.pk, newest])
    try:
        # when its backlog is computed
        backlog = metrics.backlog_after_practice_positions("test_worker_position", "practice_id", "last_event_id")
        # then it is every event of the unread practice, none of the read one
        assert backlog == Event.objects.filter(practice=world.other_practice).count() >= 1
        actions.create_mailbox(acting_user=world.mailbox_admin, practice_id=world.practice.pk, name="Lab Results")
        assert metrics.backlog_after_practice_positions("test_worker_position", "practice_id", "last_event_id") == (
            backlog + 1
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE test_worker_position")
