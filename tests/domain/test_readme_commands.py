"""The README's commands work as written on a fresh checkout, after `make run`'s setup steps (`make demo`).

Each runs in a subprocess with an environment a new developer has: no DEBUG, no SECRET_KEY, no DATABASE_URL,
and a var/ directory of its own (so the checkout's demo database is never touched).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests import processes

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Names a reader replaces (USERNAME, FILE.json, …): a command holding one is a template, not something to run.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b|FILE\.json|…")


def readme_manage_commands() -> list[str]:
    """Every complete `.venv/bin/python manage.py …` command quoted in the README, placeholders excluded."""
    quoted = re.findall(r"`(\.venv/bin/python manage\.py [^`]+)`", README.replace("\n  ", " ").replace("\n", " "))
    return sorted({c for c in quoted if not PLACEHOLDER.search(c) and "runserver" not in c})


def fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    return {**keep, "VAR_DIR": str(tmp_path / "var"), **extra}


def sh(command: str, env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess:
    # In a group of its own: a timeout stops `make demo` and the Python it started, not only make.
    return processes.run(shlex.split(command), cwd=ROOT, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def demo_checkout(tmp_path_factory) -> dict[str, str]:
    env = fresh_env(tmp_path_factory.mktemp("readme"))
    done = sh("make demo", env)
    assert done.returncode == 0, done.stdout + done.stderr
    return env


def test_the_readme_quotes_runnable_commands_for_the_demo():
    commands = readme_manage_commands()

    assert ".venv/bin/python manage.py issue_token --user frank" in commands
    assert ".venv/bin/python manage.py issue_token --patient N-10001 --practice north" in commands
    # every command the README shows uses the virtualenv, where Django is installed
    assert not re.search(r"(?<![/\w])python manage\.py", README.replace("plain `python`", ""))


@pytest.mark.parametrize("command", readme_manage_commands())
def test_readme_command_runs_as_written_after_make_demo(demo_checkout, command):
    # given the demo loaded by `make demo` / when the README's command runs without any configuration
    done = sh(command, demo_checkout)

    # then it succeeds, says it runs in development mode, and a token command prints the token alone
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "Development mode" in done.stderr
    if "issue_token" in command:
        assert re.fullmatch(r"pmm_[A-Za-z0-9_-]{40,}\n", done.stdout), done.stdout


def test_readme_issue_token_names_demo_people_who_exist(demo_checkout):
    # the API section's names must be in the demo: a token for frank and for María (N-10001) is issued
    section = README.split("## Using the API", 1)[1].split("```", 1)[0]
    user = re.search(r"issue_token --user (\w+)", section).group(1)
    patient, practice = re.search(r"--patient (\S+) --practice (\w+)", section).groups()

    for command in (f"issue_token --user {user}", f"issue_token --patient {patient} --practice {practice}"):
        done = sh(f".venv/bin/python manage.py {command}", demo_checkout)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("pmm_")


def test_production_without_secret_key_stops_with_one_line(tmp_path):
    # given DEBUG=0 and no SECRET_KEY / when a command runs
    done = sh(".venv/bin/python manage.py issue_token --user frank", fresh_env(tmp_path, DEBUG="0"))

    # then it stops with one line saying what to set, no traceback
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "SECRET_KEY is not set: set SECRET_KEY (production), or DEBUG=1 for development."
    ]
    assert done.stdout == ""


def test_the_asgi_application_never_serves_with_a_development_key(tmp_path):
    # given no configuration at all / when a production server loads the application
    done = sh(
        ".venv/bin/python -c 'import config.asgi'",
        fresh_env(tmp_path, DJANGO_SETTINGS_MODULE="config.settings"),
        timeout=60,
    )

    # then it refuses with the same single line (only manage.py assumes development)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "SECRET_KEY is not set" in done.stderr


def test_secret_key_alone_runs_in_production_mode(demo_checkout):
    # given SECRET_KEY set and DEBUG unset (a production deployment) / when a command runs
    env = {**demo_checkout, "SECRET_KEY": "a-production-key-for-this-test"}
    done = sh(".venv/bin/python manage.py shell -c 'from django.conf import settings; print(settings.DEBUG)'", env)

    # then DEBUG stays off and no development notice is printed
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert "Development mode" not in done.stderr
