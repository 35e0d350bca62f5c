"""Processes the tests start (daphne servers, the notice worker, Redis, `manage.py` and `make` commands) end with
the test run, however it ends.

- `spawn` starts each in a process group of its own, so `stop` reaches what it starts in turn (`make demo`'s
  Python), and with Linux's parent-death signal set before its program runs: when the process that started it
  dies, even by SIGKILL, the kernel kills it too. Without that a killed pytest (or xdist worker) left daphne and
  `notify_worker` processes behind, reparented to pid 1 and holding the `test_*` PostgreSQL database, and the next
  run failed with "database is being accessed by other users". The signal is tied to the thread that starts the
  process: spawn from the test's own thread, not from a pool thread that may end first.
- `stop` signals the group, waits, and kills the group if it has not ended in time.
- `reap_leftovers` is the session's safety net (tests/conftest.py): whatever the session started and is still
  alive at its end is stopped and named.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1

# Runs in the new process before its program: ask for SIGKILL when the parent dies, give up if the parent is
# already gone (it may die between fork and prctl), then become the program (the signal survives exec).
_SHIM = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)

_started: list[subprocess.Popen] = []


def die_with_parent() -> None:
    """Asks the kernel to kill this process when its parent dies (for processes forked by multiprocessing and for
    xdist workers, which run Python already)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(args: list[str], **popen) -> subprocess.Popen:
    """`subprocess.Popen(args, **popen)`, in a new process group, dying with this process, tracked for the end."""
    command = [str(arg) for arg in args]
    if sys.platform.startswith("linux"):
        command = [sys.executable, "-c", _SHIM, str(os.getpid()), *command]
    process = subprocess.Popen(command, start_new_session=True, **popen)
    process.args = args  # what was asked for, in messages (not the shim)
    _started.append(process)
    return process


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def stop(process: subprocess.Popen, timeout: float = 10, signum: int = signal.SIGTERM) -> int:
    """Sends `signum` to the process's group, waits up to `timeout`, then kills the group; returns the exit code
    (negative: the signal that ended it)."""
    if process.poll() is None:
        _signal_group(process, signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(10)
    # Whatever the group leader left running in its group (a command's own children) ends with it.
    _signal_group(process, signal.SIGKILL)
    return process.returncode


def run(args: list[str], *, timeout: float, **popen) -> subprocess.CompletedProcess:
    """`subprocess.run(args, capture_output=True, text=True, timeout=timeout)` through `spawn`: on a timeout or an
    interruption the whole group is stopped, not only its first process."""
    process = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        stop(process, timeout=5)
        raise
    stop(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _children(pid: int) -> list[int]:
    """Living direct children of `pid`, from /proc (Linux; elsewhere none are found)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after its last ")"
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def reap_leftovers(*, children: bool = True) -> list[str]:
    """Stops every process `spawn` started that is still alive and, with `children`, every other living child of
    this process (a forked server); returns what it had to stop."""
    reaped = []
    for process in _started:
        if process.poll() is None:
            reaped.append(f"{process.pid} {_describe(process.pid)}")
        stop(process, timeout=5)
    _started.clear()
    if children:
        for pid in _children(os.getpid()):
            description = _describe(pid)
            for signum in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    break
                if _wait_for_child(pid, 5):
                    break
            reaped.append(f"{pid} {description}")
    return reaped


def _wait_for_child(pid: int, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        time.sleep(0.05)
    return False
