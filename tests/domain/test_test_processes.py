"""What the tests start ends with the run however it ends (tests/processes.py, tests/conftest.py): a SIGKILLed
parent takes its servers with it, an xdist worker dies with its controller, the session stops what a test leaked,
and a test database held by a stale connection does not stop the next PostgreSQL run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests import processes

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Running (a zombie, waiting for pid 1 to collect it, holds nothing and counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def inner_pytest(tmp_path: Path, test_source: str, *args: str, **env: str) -> subprocess.Popen:
    """A pytest run of its own on one test file, with this suite's conftest and settings."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_source))
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    environment.update({"PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "config.settings", **env})
    command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml")]
    command += ["-p", "no:cacheprovider", "-q", *args, str(tmp_path / "test_inner.py")]
    return processes.spawn(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")


def test_a_spawned_process_dies_when_the_process_that_started_it_is_killed(tmp_path):
    # given a process that spawned a long sleeper
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests import processes; import time; "
            "print(processes.spawn(['sleep', '120']).pid, flush=True); time.sleep(120)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        # when it is killed, with no chance to clean up
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        # then the kernel ends its child too
        assert wait_until(lambda: not alive(child), 5), f"{child} outlived its parent"
    finally:
        parent.kill()
        parent.wait(10)


def test_stop_ends_what_the_process_started_in_turn(tmp_path):
    # given a shell that started a background sleeper of its own
    pid_file = tmp_path / "grandchild"
    shell = processes.spawn(["sh", "-c", f"sleep 120 & echo $! > {pid_file}; wait"])
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 5)
    grandchild = int(pid_file.read_text())
    # when the shell is stopped
    processes.stop(shell)
    # then its whole group is gone
    assert wait_until(lambda: not alive(grandchild), 5)


def test_the_session_stops_a_process_a_test_left_running(tmp_path):
    # given a test that starts a process (plain Popen, not through tests/processes.py) and never stops it
    pid_file = tmp_path / "leaked"
    run = inner_pytest(
        tmp_path,
        f"""
        import subprocess
        from pathlib import Path

        def test_leaks():
            Path({str(pid_file)!r}).write_text(str(subprocess.Popen(["sleep", "120"]).pid))
        """,
        "-p",
        "no:xdist",
    )
    output = run.communicate(timeout=120)[0].decode()
    # when its session ends, then the process is stopped and named
    assert run.returncode == 0, output
    leaked = int(pid_file.read_text())
    assert not alive(leaked)
    assert f"stopped a process left running by the session: {leaked} sleep 120" in output


def test_an_xdist_worker_and_what_it_started_die_with_a_killed_controller(tmp_path):
    # given a run with one worker, in a test that started a server-like process
    pid_file = tmp_path / "pids"
    run = inner_pytest(
        tmp_path,
        f"""
        import os, time
        from pathlib import Path
        from tests import processes

        def test_runs_long():
            child = processes.spawn(["sleep", "120"])
            Path({str(pid_file)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
            time.sleep(120)
        """,
        "-n",
        "1",
    )
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), 60), run.stdout
        worker, child = map(int, pid_file.read_text().split())
        # when the controller is killed mid-test
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        # then neither the worker (in the middle of its test) nor its child outlives it
        assert wait_until(lambda: not alive(worker) and not alive(child), 10), (alive(worker), alive(child))
    finally:
        processes.stop(run)


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL")
def test_a_leftover_test_database_held_by_a_stale_connection_does_not_stop_the_next_run(tmp_path):
    import dj_database_url
    import psycopg

    # given the test database of a run (its own name), left behind with a connection still open to it
    url = dj_database_url.parse(os.environ["DATABASE_URL"])
    name = f"{url['NAME']}_stale_{os.getpid()}"
    server = {"host": url["HOST"] or "127.0.0.1", "port": url["PORT"] or 5432, "user": url["USER"] or None}
    if url.get("PASSWORD"):
        server["password"] = url["PASSWORD"]
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "test_{name}"')
    stale = psycopg.connect(dbname=f"test_{name}", **server)
    try:
        database_url = f"postgres://{url['USER'] or ''}@{server['host']}:{server['port']}/{name}"
        if url.get("PASSWORD"):
            database_url = database_url.replace("@", f":{url['PASSWORD']}@", 1)
        # when a run on that database starts
        run = inner_pytest(
            tmp_path,
            """
            from core.models import Practice

            def test_uses_the_database(db):
                assert Practice.objects.count() == 0
            """,
            "-p",
            "no:xdist",
            DATABASE_URL=database_url,
        )
        output = run.communicate(timeout=300)[0].decode()
        # then it creates its database afresh and passes
        assert run.returncode == 0, output
        assert "being accessed by other users" not in output
    finally:
        stale.close()
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)')
