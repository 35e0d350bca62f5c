"""A real daphne process bounds how long a request may take to arrive (config/http_limits.py): stalled and
trickled bodies are answered 408 and closed within the configured bounds; ordinary requests are untouched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import processes
from tests.live.test_live_two_processes import free_port, wait_until_listening

ROOT = Path(__file__).resolve().parents[2]
IDLE_SECONDS = 2
TOTAL_SECONDS = 6
CHECK_PERIOD = 2  # daphne checks its connections every 2 seconds
SLACK = 2.5  # a loaded 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[int]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("slow-requests")
    log = workdir / "daphne.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "slow-request-test-key",
        "DEBUG": "0",
        "HTTP_REQUEST_IDLE_SECONDS": str(IDLE_SECONDS),
        "HTTP_REQUEST_TIMEOUT_SECONDS": str(TOTAL_SECONDS),
    }
    env.pop("REDIS_URL", None)
    with log.open("wb") as out:
        process = processes.spawn(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(port, process, log)
        yield port
    finally:
        processes.stop(process)


def multipart_head(port: int, length: int) -> bytes:
    return (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def post_typename(port: int, pieces: list[bytes], pause: float = 0.0) -> bytes:
    body = b"".join(pieces)
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(pause)
        return read_until_closed(sock, 10)


def test_twenty_stalled_upload_bodies_are_answered_408_and_closed_within_the_idle_bound(server):
    # given 20 clients that start a 10 MB multipart upload, send 1 KB of it and stall
    sockets = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", server), timeout=5)
        sock.sendall(multipart_head(server, 10_000_000) + b"--xyz\r\n" + b"x" * 1000)
        sockets.append(sock)
    started = time.monotonic()
    # when they wait, then each gets 408 and a closed connection within the idle bound (plus the check period)
    bound = IDLE_SECONDS + CHECK_PERIOD + SLACK
    answers = [read_until_closed(sock, bound + 1) for sock in sockets]
    elapsed = time.monotonic() - started
    for sock in sockets:
        sock.close()
    assert all(answer.startswith(b"HTTP/1.1 408 Request Timeout") for answer in answers), answers[0][:200]
    assert elapsed < bound, elapsed


def test_a_trickled_body_is_cut_at_the_total_bound(server):
    # given a client that keeps sending one byte every half second (never idle long enough to be cut for that)
    sock = socket.create_connection(("127.0.0.1", server), timeout=5)
    sock.sendall(multipart_head(server, 10_000))
    started = time.monotonic()
    closed = threading.Event()
    answer = []

    def reader() -> None:
        answer.append(read_until_closed(sock, TOTAL_SECONDS + CHECK_PERIOD + SLACK + 5))
        closed.set()

    threading.Thread(target=reader, daemon=True).start()
    while not closed.is_set() and time.monotonic() - started < TOTAL_SECONDS + CHECK_PERIOD + SLACK + 5:
        try:
            sock.send(b"x")
        except OSError:
            break
        closed.wait(0.5)
    elapsed = time.monotonic() - started
    # then it is answered 408 and closed once the whole request is overdue, not before
    assert closed.wait(5)
    sock.close()
    assert answer[0].startswith(b"HTTP/1.1 408 Request Timeout"), answer[0][:200]
    assert TOTAL_SECONDS - 0.5 <= elapsed < TOTAL_SECONDS + CHECK_PERIOD + SLACK, elapsed


def test_ordinary_requests_and_a_body_with_short_pauses_are_answered(server):
    body = json.dumps({"query": "{ __typename }"}).encode()

    at_once = post_typename(server, [body])
    paused = post_typename(server, [body[:5], body[5:10], body[10:]], pause=1.0)

    # The application answers each (anonymous `__typename` needs no sign-in), where a request cut for arriving
    # too slowly would get daphne's plain 408.
    for answer in (at_once, paused):
        assert not answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert b"Content-Type: application/json" in answer, answer[:300]
        assert b'{"data":{"__typename":"Query"}}' in answer, answer[:300]
