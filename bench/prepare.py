"""Creates, migrates and fills a bench database once; a marker row lets later runs reuse it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from bench.data import DATA_VERSION, Plan, load

ROOT = Path(__file__).resolve().parent.parent
SERVER_DSN = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def dsn_for(db_name: str) -> str:
    return f"{SERVER_DSN}/{db_name}"


def _admin(statement: sql.Composable) -> None:
    with psycopg.connect(f"{SERVER_DSN}/postgres", autocommit=True) as conn:
        conn.execute(statement)


def _exists(db_name: str) -> bool:
    with psycopg.connect(f"{SERVER_DSN}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,)).fetchone() is not None


def marker(db_name: str, scale: float) -> dict | None:
    if not _exists(db_name):
        return None
    with psycopg.connect(dsn_for(db_name), autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('bench_marker') IS NOT NULL").fetchone()
        if not row[0]:
            return None
        found = conn.execute(
            "SELECT info FROM bench_marker WHERE version = %s AND scale = %s", (DATA_VERSION, scale)
        ).fetchone()
        return found[0] if found else None


def migrate(db_name: str) -> bool:
    """Applies the project's migrations (new indexes included); False, with a warning, if one fails."""
    env = {**os.environ, "DATABASE_URL": dsn_for(db_name), "DJANGO_SETTINGS_MODULE": "bench.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        print(f"[prepare] WARNING: migrate failed on {db_name}; measuring the schema as far as it got:")
        print("          " + (done.stderr.strip().splitlines() or ["?"])[-1])
    return done.returncode == 0


def prepare(db_name: str, scale: float, fresh: bool = False) -> dict:
    """The ids the measurements need; loads the data first unless a complete load of this scale is there."""
    if not fresh:
        info = marker(db_name, scale)
        if info is not None:
            print(f"[prepare] {db_name}: reusing data (scale {scale}, {info['messages']:,} messages)")
            migrate(db_name)
            return info
    started = time.perf_counter()
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    migrate(db_name)
    print(f"[prepare] {db_name}: loading scale {scale} ({Plan.for_scale(scale).patients:,} patients)")
    info = load(dsn_for(db_name), Plan.for_scale(scale))
    info["load_seconds"] = round(time.perf_counter() - started, 1)
    with psycopg.connect(dsn_for(db_name), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_marker (version text, scale double precision, info jsonb)")
        conn.execute("INSERT INTO bench_marker VALUES (%s, %s, %s)", (DATA_VERSION, scale, json.dumps(info)))
    print(f"[prepare] {db_name}: ready in {info['load_seconds']} s")
    return json.loads(json.dumps(info))  # the same shape (string keys) as when read back from the marker
