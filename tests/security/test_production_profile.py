"""The production profile (deploy/production.env) passes `manage.py check --deploy` with no warning, and the
Workbench works with DEBUG off: static files served by WhiteNoise from a real daphne process."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from tests import processes

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "deploy" / "production.env"


def profile_environment(tmp_path: Path) -> dict[str, str]:
    values = {}
    for line in PROFILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    environment = {key: value for key, value in os.environ.items() if key not in {"PYTEST_VERSION", "DEBUG"}}
    environment.update(values)
    # Only the machine-specific paths move into the test's directory.
    for name in ("VAR_DIR", "MEDIA_ROOT", "STATIC_ROOT", "PROMETHEUS_MULTIPROC_DIR"):
        path = tmp_path / name.lower()
        path.mkdir()
        environment[name] = str(path)
    environment["SECRET_KEY"] = secrets.token_urlsafe(50)
    return environment


def test_the_production_profile_passes_check_deploy_without_warnings(tmp_path):
    result = processes.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=profile_environment(tmp_path),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_profile_is_what_ci_checks():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "deploy/production.env" in ci
    assert "check --deploy --fail-level WARNING" in ci


def test_without_the_profile_check_deploy_names_what_is_missing(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "PYTEST_VERSION"}
    environment.update({"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "VAR_DIR": str(tmp_path)})
    result = processes.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stderr + result.stdout
