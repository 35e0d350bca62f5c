"""Real daphne processes serving `config.asgi:application` on the test database, for tests of what a deployment
sees: probes, metrics across processes, log lines, shutdown."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dj_database_url
from django.db import connection

from tests import processes

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The database this test has committed its rows to (SQLite file or PostgreSQL test database)."""
    if connection.vendor == "sqlite":
        return f"sqlite:///{connection.settings_dict['NAME']}"
    url = dj_database_url.parse(os.environ["DATABASE_URL"])
    user, password = url.get("USER") or "", url.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host, port = url["HOST"] or "127.0.0.1", url["PORT"] or 5432
    return f"postgres://{credentials}{host}:{port}/{connection.settings_dict['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


class Server:
    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port, self.process, self.log = port, process, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def post_graphql(self, query: str, variables: dict | None = None, token: str | None = None, **headers):
        headers = {"Content-Type": "application/json", **headers}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url + "/graphql", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.headers, json.loads(response.read())

    def log_lines(self) -> list[dict]:
        """The JSON lines the process wrote (anything else it printed is skipped)."""
        lines = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def stop(self, timeout: float = 20) -> int:
        return processes.stop(self.process, timeout)


def start_daphne(tmp_path: Path, **env: str) -> Server:
    """Starts a production-like process (DEBUG off, JSON logs) and waits until it listens."""
    port = free_port()
    log = tmp_path / f"daphne-{port}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "server-process-test-key",
        "DEBUG": "0",
        "LOG_FORMAT": "json",
        "VAR_DIR": str(tmp_path / "var"),
        **env,
    }
    environment.pop("PYTEST_VERSION", None)  # the server runs as in production (its settings check SECRET_KEY)
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
    with log.open("wb") as out:
        process = processes.spawn(
            [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, process, log)
    deadline = time.monotonic() + 40
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"daphne on {port} exited:\n{log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return server
            except OSError:
                time.sleep(0.1)
    except BaseException:
        processes.stop(process, timeout=5)
        raise
    processes.stop(process, timeout=5)
    raise AssertionError(f"daphne on {port} did not start:\n{log.read_text()[-3000:]}")
