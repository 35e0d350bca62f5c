"""`python -m bench.run` (or `make bench`): prepare the data once, measure each figure against its floor in the
same run, print the table, write bench/results/latest.json and latest.png.

Options: --scale (1.0 = 1M patients, 10M messages), --fresh (reload the data), --only 1,2,5 (measurements),
--profile (pyinstrument HTML profiles of the GraphQL figures into bench/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# BENCH_DB / BENCH_SMALL_DB: another database name, e.g. to measure a branch without touching the shared data.
BIG_DB = os.environ.get("BENCH_DB", "mailbox_bench")
SMALL_DB = os.environ.get("BENCH_SMALL_DB", "mailbox_bench_small")
# BENCH_PORT: the first of the six local ports the bench's servers listen on (8791-8796), e.g. to run two benches
# side by side; REDIS_URL / REDIS_PREFIX (bench/settings.py) likewise keep a run's Redis traffic apart.
PORT = int(os.environ.get("BENCH_PORT", "8791"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def setup_django(db_name: str) -> None:
    from bench.prepare import dsn_for

    os.environ["DATABASE_URL"] = dsn_for(db_name)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()


class InProcess:
    """GraphQL through the real view, in this process (Django test client): SQL can be counted."""

    def __init__(self, user_id: int) -> None:
        from django.test import Client

        from core.models import User
        from core.tokens import issue_token

        self.client = Client()
        self.token = issue_token(user=User.objects.get(pk=user_id))

    def post(self, query: str, variables: dict) -> dict:
        response = self.client.post(
            "/graphql",
            data=json.dumps({"query": query, "variables": variables}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        answer = response.json()
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors'][:2]}")
        return answer["data"]

    def timed(self, query: str, variables: dict, runs: int, warmup: int = 3) -> list[float]:
        for _ in range(warmup):
            self.post(query, variables)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self.post(query, variables)
            times.append((time.perf_counter() - started) * 1000)
        return times


def gid(type_name: str, pk: int) -> str:
    from graph.ids import encode_id

    return encode_id(type_name, pk)


# ---- 1. SQL statements per page --------------------------------------------------------------------------


def measure_sql_counts(info: dict) -> list[dict]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench import queries

    api = InProcess(info["bench_user"])
    pages = {
        "mailboxes": lambda n: (
            queries.MAILBOXES_PAGE,
            {
                "practiceId": gid("Practice", info["small_practices"][str(n)]["practice"]),
                "conversations": 2,
                "messages": 3,
            },
        ),
        "conversations": lambda n: (
            queries.CONVERSATIONS_PAGE,
            {"mailboxId": gid("Mailbox", info["busy_mailbox"]), "conversations": n, "messages": 3},
        ),
        "messages": lambda n: (
            queries.MESSAGES_PAGE,
            {"conversationId": gid("Conversation", info["long_thread"]), "messages": n},
        ),
    }
    rows = []
    for page, build in pages.items():
        counts = {}
        for size in (10, 100, 1000):
            query, variables = build(size)
            api.post(query, variables)  # warm caches: count the steady state
            seen = []
            for _ in range(2):  # the lower of two: a token's last_used_at refresh (once a minute) is not the page's
                with CaptureQueriesContext(connection) as captured:
                    api.post(query, variables)
                seen.append(len(captured.captured_queries))
            counts[size] = min(seen)
        constant = len(set(counts.values())) == 1
        rows.append(
            {
                "id": f"1.{page}",
                "figure": f"SQL statements, page of {page} at 10/100/1000",
                "value": counts[1000],
                "floor": counts[10],
                "ratio": counts[1000] / counts[10],
                "goal": "constant (ratio 1.0), <= 4x",
                "met": constant,
                "unit": "statements",
                "detail": {str(k): v for k, v in counts.items()},
            }
        )
    return rows


# ---- 2. HTTP latency under concurrent load ----------------------------------------------------------------


class Server:
    """A daphne process serving config.asgi with bench settings (GraphQL, WebSockets, the floor view)."""

    def __init__(self, port: int, db_name: str) -> None:
        from bench.prepare import dsn_for

        env = {**os.environ, "DATABASE_URL": dsn_for(db_name), "DJANGO_SETTINGS_MODULE": "bench.settings"}
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(RESULTS / f".server-{port}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/graphql", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"daphne on port {port} did not start; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:  # open WebSockets can hold daphne's graceful shutdown
            self.process.kill()
            self.process.wait(5)
        self.log.close()


def load_round(url: str, *, body: str | None, headers: dict, seconds: float, connections: int = 8) -> list[float]:
    """`connections` concurrent clients (httpx, bounded by time) on one URL; the latency of each request in ms."""
    import asyncio

    import httpx

    async def run() -> list[float]:
        times: list[float] = []
        stop = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:

            async def worker() -> None:
                while time.monotonic() < stop:
                    started = time.perf_counter()
                    if body is None:
                        response = await client.get(url, headers=headers)
                    else:
                        response = await client.post(url, content=body, headers=headers)
                    response.raise_for_status()
                    times.append((time.perf_counter() - started) * 1000)

            await asyncio.gather(*(worker() for _ in range(connections)))
        return times

    return asyncio.run(run())


def measure_http(info: dict, seconds: int) -> list[dict]:
    import httpx

    from bench import queries
    from bench.inprocess import chart_patient
    from core.models import User
    from core.tokens import issue_token

    token = issue_token(user=User.objects.get(pk=info["bench_user"]))
    mailbox = gid("Mailbox", info["busy_mailbox"])
    # (row id, figure, document, variables, check of the answer)
    documents = [
        (
            "2",
            "50-conversation page",
            queries.CONVERSATIONS_PAGE,
            {"mailboxId": mailbox, "conversations": 50, "messages": 5},
            lambda data: len(data["mailbox"]["conversations"]["edges"]) == 50,
        ),
        (
            "2.workbench",
            "Workbench conversation list (50)",
            queries.WORKBENCH_LIST,
            {"id": mailbox, "status": "ACTIVE"},
            lambda data: len(data["mailbox"]["conversations"]["edges"]) == 50,
        ),
        (
            "2.chart",
            "chart summary of a patient",
            queries.CHART_SUMMARY,
            {"id": gid("Patient", chart_patient(info))},
            lambda data: len(data["patient"]["conversations"]) >= 1,
        ),
    ]
    server = Server(PORT, BIG_DB)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    times: dict[str, list[float]] = {}
    try:
        bodies = {}
        for row_id, figure, query, variables, expect in documents:
            body = json.dumps({"query": query, "variables": variables})
            check = httpx.post(f"{server.url}/graphql", content=body, headers=headers, timeout=30).json()
            if check.get("errors") or not expect(check["data"]):
                raise RuntimeError(f"GraphQL answer for the {figure} is not as expected: {str(check)[:300]}")
            bodies[row_id] = body
        floor_url = (
            f"{server.url}/bench/floor/conversations"
            f"?mailbox={info['busy_mailbox']}&user={info['bench_user']}&first=50&last=5"
        )
        if len(httpx.get(floor_url, timeout=30).json()["edges"]) != 50:
            raise RuntimeError("floor view did not return 50 conversations")
        # Alternating rounds, so a change of machine load during the run hits both sides alike.
        load_round(floor_url, body=None, headers={}, seconds=2)
        load_round(f"{server.url}/graphql", body=bodies["2"], headers=headers, seconds=2)
        times = {row_id: [] for row_id in [*bodies, "floor"]}
        for _ in range(3):
            for row_id, body in bodies.items():
                share = seconds / 3 if row_id == "2" else seconds / 6
                times[row_id] += load_round(f"{server.url}/graphql", body=body, headers=headers, seconds=share)
            times["floor"] += load_round(floor_url, body=None, headers={}, seconds=seconds / 3)
    finally:
        server.stop()
    rows = []
    for row_id, figure, *_ in documents:
        for p in (50, 99):
            value, base = percentile(times[row_id], p), percentile(times["floor"], p)
            main = row_id == "2"
            rows.append(
                {
                    "id": f"{row_id}.p{p}",
                    "figure": f"HTTP p{p}, {figure}, 8 clients",
                    "value": value,
                    "floor": base,
                    "ratio": value / base,
                    "goal": "<= 1.5x" if main else "(the 50-conversation floor; no goal)",
                    "met": value / base <= 1.5 if main else None,
                    "unit": "ms",
                    "detail": {
                        "graphql_requests": len(times[row_id]),
                        "floor_requests": len(times["floor"]),
                        "floor_is": "async Django JSON view, 50 conversations with every field, same rows with the "
                        "ORM (bench/floor_views.py)",
                    },
                }
            )
    return rows


# ---- 7. in-process cost of one request ---------------------------------------------------------------------


def measure_in_process(info: dict, runs: int) -> list[dict]:
    """CPU, page faults and collections per request in this process (test client) at several entry depths."""
    from bench import inprocess
    from config.gc_tuning import tune_for_serving

    tune_for_serving()  # as config/asgi.py does in a server process
    figures = inprocess.measure(info, runs)
    floor, page = figures["floor"], figures["page"]
    depths = len(inprocess.DEPTHS)
    rows = [
        {
            "id": "7.cpu",
            "figure": "in-process CPU, 50-conversation page",
            "value": page["cpu_ms_p50"],
            "floor": floor["cpu_ms_p50"],
            "ratio": page["cpu_ms_p50"] / floor["cpu_ms_p50"],
            "goal": "<= 2x",
            "met": page["cpu_ms_p50"] / floor["cpu_ms_p50"] <= 2,
            "unit": "ms",
            "detail": {"floor_is": "sync Django JSON view of the same rows, same process", **figures},
        },
        {
            "id": "7.faults",
            "figure": f"minor page faults per request (mean), page, {depths} depths",
            "value": float(page["faults_mean"]),
            "floor": float(floor["faults_mean"]),
            "ratio": page["faults_mean"] / max(floor["faults_mean"], 1),
            "goal": "< 100 (the figure)",
            "met": page["faults_mean"] < 100,
            "unit": "faults",
            "detail": {
                "median": page["faults_p50"],
                "worst": page["faults_max"],
                "floor_median": floor["faults_p50"],
                "floor_worst": floor["faults_max"],
            },
        },
    ]
    for name, figure in (("workbench", "Workbench conversation list"), ("chart", "chart summary")):
        rows.append(
            {
                "id": f"7.{name}",
                "figure": f"in-process CPU, {figure}",
                "value": figures[name]["cpu_ms_p50"],
                "floor": floor["cpu_ms_p50"],
                "ratio": figures[name]["cpu_ms_p50"] / floor["cpu_ms_p50"],
                "goal": "(the page's floor; no goal)",
                "met": None,
                "unit": "ms",
            }
        )
    return rows


# ---- 5. searchPatients on 1M patients --------------------------------------------------------------------


def search_terms(count: int) -> list[str]:
    import random

    from bench.data import FIRST, LAST

    rng = random.Random(7)
    terms = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        kind = i % 4
        if kind == 0:
            terms.append(f"{last[:4]} {first[:3]}")  # "garc mar": tokens in any order, prefixes
        elif kind == 1:
            terms.append(f"{first} {last}")
        elif kind == 2:
            terms.append(last[:3].lower())
        else:
            terms.append(f"{first[:2]} {last[:2]}")
    return terms


def measure_search(info: dict, runs: int) -> list[dict]:
    import random

    from bench import queries
    from core.models import Patient

    api = InProcess(info["bench_user"])
    practice = gid("Practice", info["main_practice"])
    terms = search_terms(runs)
    for term in terms[:5]:
        api.post(queries.SEARCH, {"practiceId": practice, "query": term})
    times, slowest = [], []
    for term in terms:
        started = time.perf_counter()
        api.post(queries.SEARCH, {"practiceId": practice, "query": term})
        elapsed = (time.perf_counter() - started) * 1000
        times.append(elapsed)
        slowest.append((elapsed, term))
    rng = random.Random(11)
    accounts = [f"A-{rng.randrange(1, info['patients']):07d}" for _ in range(runs)]
    api_account, orm_account = [], []
    for account in accounts:
        started = time.perf_counter()
        api.post(queries.SEARCH, {"practiceId": practice, "query": account})
        api_account.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        Patient.objects.filter(practice_id=info["main_practice"], search_account=account.lower()).first()
        orm_account.append((time.perf_counter() - started) * 1000)
    p95, floor = percentile(times, 95), percentile(orm_account, 95)
    return [
        {
            "id": "5.search",
            "figure": "searchPatients p95 (names, 1M patients)",
            "value": p95,
            "floor": floor,
            "ratio": p95 / floor,
            "goal": "<= 10x and <= 25 ms",
            "met": p95 / floor <= 10 and p95 <= 25,
            "unit": "ms",
            "detail": {
                "p50": percentile(times, 50),
                "floor_is": "ORM indexed lookup by account number (practice, search_account), p95",
                "searchPatients_by_account_p95": percentile(api_account, 95),
                "slowest_terms": [f"{t} ({e:.0f} ms)" for e, t in sorted(slowest, reverse=True)[:5]],
            },
        }
    ]


# ---- 7. searchMessages on 10M messages ---------------------------------------------------------------------

# Every bench body is one of 12 texts (bench/data.py), so each word below is in about 1/12 of all messages or more:
# common words, two words of one body, two words never in one body (an empty answer), and a word in no message.
MESSAGE_SEARCH_TERMS = (
    "appoint",
    "lab res",
    "résult",
    "pharm",
    "tuesday morn",
    "BLOOD fast",
    "bill",
    "immuniz",
    "bill tuesday",
    "fever pharmacy",
    "zebra",
    "pain back",
)


def measure_message_search(info: dict, runs: int) -> list[dict]:
    import random

    from django.db import connection

    from bench import queries
    from config.gc_tuning import tune_for_serving
    from core import message_search_bits
    from core.models import Message

    # A deployment runs `manage.py search_bits --follow` (docs/search.md): bring the bitmaps up to date first
    # (on freshly loaded 10M messages this builds them, ~8 minutes; afterwards it has nothing to do).
    refresh_seconds = None
    if connection.vendor == "postgresql":
        started = time.perf_counter()
        message_search_bits.refresh()
        refresh_seconds = round(time.perf_counter() - started, 1)
        print(f"[measure] 8: search bitmaps brought up to date in {refresh_seconds} s")
    tune_for_serving()  # as config/asgi.py does in a server process
    api = InProcess(info["bench_user"])
    practice = gid("Practice", info["main_practice"])
    terms = [MESSAGE_SEARCH_TERMS[i % len(MESSAGE_SEARCH_TERMS)] for i in range(runs)]
    for term in MESSAGE_SEARCH_TERMS:
        api.post(queries.SEARCH_MESSAGES, {"practiceId": practice, "query": term})
    rng = random.Random(13)
    top = Message.objects.order_by("-pk").values_list("pk", flat=True).first()
    times, orm, per_term = [], [], {}
    for term in terms:
        started = time.perf_counter()
        api.post(queries.SEARCH_MESSAGES, {"practiceId": practice, "query": term})
        elapsed = (time.perf_counter() - started) * 1000
        times.append(elapsed)
        per_term.setdefault(term, []).append(elapsed)
        pk = rng.randrange(1, top + 1)
        started = time.perf_counter()
        Message.objects.filter(pk=pk).first()
        orm.append((time.perf_counter() - started) * 1000)
    p95, floor = percentile(times, 95), percentile(orm, 95)
    return [
        {
            "id": "8.message_search",
            "figure": f"searchMessages p95 ({info['messages'] / 1e6:.1f}M messages)",
            "value": p95,
            "floor": floor,
            "ratio": p95 / floor,
            "goal": "<= 10x and <= 50 ms",
            "met": p95 / floor <= 10 and p95 <= 50,
            "unit": "ms",
            "detail": {
                "p50": percentile(times, 50),
                "floor_is": "ORM indexed lookup of one message by id, p95",
                "search_bits_refresh_seconds": refresh_seconds,
                "p95_per_term": {t: round(percentile(v, 95), 1) for t, v in per_term.items()},
            },
        }
    ]


# ---- 6. newest 50 messages: 10M-row table vs 10k-row table ------------------------------------------------


def measure_flat(info: dict, small_info: dict, runs: int) -> list[dict]:
    """The newest 50 messages over HTTP from two servers, one on the 10M-message database, one on the 10k one,
    requests alternating so that machine load hits both alike."""
    import httpx

    from bench import queries
    from bench.prepare import dsn_for

    def token_for(db_name: str, user_id: int) -> str:
        env = {**os.environ, "DATABASE_URL": dsn_for(db_name), "DJANGO_SETTINGS_MODULE": "bench.settings"}
        code = (
            "from core.models import User; from core.tokens import issue_token; "
            f"print(issue_token(user=User.objects.get(pk={user_id})))"
        )
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    sides = {"big": (BIG_DB, info, PORT + 2), "small": (SMALL_DB, small_info, PORT + 3)}
    servers = {name: Server(port, db) for name, (db, _, port) in sides.items()}
    rows = []
    try:
        tokens = {name: token_for(db, data["bench_user"]) for name, (db, data, _) in sides.items()}
        for key, query, label in (
            ("thread", queries.THREAD_PAGE, ""),
            ("thread+mailbox", queries.THREAD_PAGE_WITH_MAILBOX, " + conversation.mailbox"),
        ):
            times: dict[str, list[float]] = {"big": [], "small": []}
            with httpx.Client(timeout=120) as client:
                for i in range(runs + 5):
                    for name, (_, data, _) in sides.items():
                        body = {
                            "query": query,
                            "variables": {"conversationId": gid("Conversation", data["long_thread"]), "messages": 50},
                        }
                        started = time.perf_counter()
                        answer = client.post(
                            f"{servers[name].url}/graphql",
                            json=body,
                            headers={"Authorization": f"Bearer {tokens[name]}"},
                        ).json()
                        elapsed = (time.perf_counter() - started) * 1000
                        if answer.get("errors") or len(answer["data"]["conversation"]["messages"]["edges"]) != 50:
                            raise RuntimeError(f"thread page failed: {str(answer)[:300]}")
                        if i >= 5:
                            times[name].append(elapsed)
            value, floor = statistics.median(times["big"]), statistics.median(times["small"])
            rows.append(
                {
                    "id": f"6.{key}",
                    "figure": f"newest 50 messages{label}, p50, 10M vs 10k",
                    "value": value,
                    "floor": floor,
                    "ratio": value / floor,
                    "goal": "<= 1.2x",
                    "met": value / floor <= 1.2,
                    "unit": "ms",
                    "detail": {
                        "big_messages": info["messages"],
                        "small_messages": small_info["messages"],
                        "big_p95": percentile(times["big"], 95),
                        "small_p95": percentile(times["small"], 95),
                    },
                }
            )
    finally:
        for server in servers.values():
            server.stop()
    return rows


# ---- 3 and 4. live events over two server processes -----------------------------------------------------


def measure_live(info: dict, samples: int, fanout: int) -> list[dict]:
    from bench import live

    return live.measure(info, samples=samples, fanout=fanout)


# ---- output ---------------------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
    }


def _met(row: dict, yes: str, no: str) -> str:
    return "-" if row["met"] is None else yes if row["met"] else no


def table(rows: list[dict]) -> str:
    lines = [f"{'measurement':<48} {'figure':>12} {'floor':>12} {'ratio':>8}  {'goal':<28} met?"]
    for r in rows:
        if r.get("value") is None:
            lines.append(f"{r['figure']:<48} {'-':>12} {'-':>12} {'-':>8}  {r['goal']:<28} not measured")
            continue
        unit = r["unit"]

        def fmt(v: float, unit: str = unit) -> str:
            return f"{v:.0f}" if unit in ("statements", "faults") else f"{v:.2f} {unit}"

        lines.append(
            f"{r['figure']:<48} {fmt(r['value']):>12} {fmt(r['floor']):>12} {r['ratio']:>7.2f}x  {r['goal']:<28} "
            f"{_met(r, 'yes', 'NO')}"
        )
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    lines = ["| measurement | figure | floor | ratio | goal | met? |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        if r.get("value") is None:
            lines.append(f"| {r['figure']} | - | - | - | {r['goal']} | not measured |")
            continue
        unit = "" if r["unit"] in ("statements", "faults") else f" {r['unit']}"
        digits = 0 if r["unit"] in ("statements", "faults") else 1
        lines.append(
            f"| {r['figure']} | {r['value']:.{digits}f}{unit} | {r['floor']:.{digits}f}{unit} | {r['ratio']:.2f}x "
            f"| {r['goal']} | {_met(r, 'yes', '**no**')} |"
        )
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.get("ratio") is not None]
    goals = {"1.": 1.0, "2.p": 1.5, "3.p50": 3.0, "3.p99": 5.0, "4.": 3.0, "5.": 10.0, "6.": 1.2, "7.cpu": 2.0}
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(measured) + 1.5))
    names = [r["figure"] for r in measured]
    ratios = [r["ratio"] for r in measured]
    colors = [{True: "#2a9d8f", False: "#e76f51"}.get(r["met"], "#8d99ae") for r in measured]
    ax.barh(names, ratios, color=colors)
    for i, r in enumerate(measured):
        goal = next((g for k, g in goals.items() if r["id"].startswith(k)), None)
        if goal:
            ax.plot([goal, goal], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(r["ratio"], i, f" {r['ratio']:.2f}x", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the floor measured in the same run (log scale; black tick = goal)")
    ax.set_title("Benchmarks: ratio to floor (green: goal met, red: missed)", loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def profile(info: dict) -> list[str]:
    """pyinstrument profiles of the GraphQL figures (in-process) into bench/results/profile-*.html."""
    from pyinstrument import Profiler

    from bench import queries

    api = InProcess(info["bench_user"])
    cases = {
        "conversations-page": (
            queries.CONVERSATIONS_PAGE,
            {"mailboxId": gid("Mailbox", info["busy_mailbox"]), "conversations": 50, "messages": 5},
            20,
        ),
        "search": (queries.SEARCH, {"practiceId": gid("Practice", info["main_practice"]), "query": "garc mar"}, 20),
        "mailboxes-main": (
            queries.MAILBOXES_PAGE,
            {"practiceId": gid("Practice", info["main_practice"]), "conversations": 2, "messages": 3},
            1,
        ),
    }
    written = []
    for name, (query, variables, runs) in cases.items():
        api.post(query, variables)
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(runs):
            api.post(query, variables)
        profiler.stop()
        path = RESULTS / f"profile-{name}.html"
        path.write_text(profiler.output_html())
        (RESULTS / f"profile-{name}.txt").write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        written.append(str(path.relative_to(ROOT)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1M patients, 10M messages")
    parser.add_argument("--fresh", action="store_true", help="drop and reload the bench databases")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8", help="comma-separated measurement numbers")
    parser.add_argument("--seconds", type=int, default=10, help="load duration of each HTTP run")
    parser.add_argument("--profile", action="store_true", help="write pyinstrument profiles to bench/results/")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    from bench.prepare import prepare

    info = prepare(BIG_DB, args.scale, fresh=args.fresh)
    only = {int(x) for x in args.only.split(",")}
    small_info = prepare(SMALL_DB, 0.001, fresh=args.fresh) if 6 in only else {}
    prepared = time.perf_counter() - started
    setup_django(BIG_DB)

    rows: list[dict] = []
    steps = [
        (1, lambda: measure_sql_counts(info)),
        (2, lambda: measure_http(info, args.seconds)),
        (3, lambda: measure_live(info, samples=100, fanout=500 if 4 in only else 0)),
        (5, lambda: measure_search(info, 200)),
        (6, lambda: measure_flat(info, small_info, 100)),
        (7, lambda: measure_in_process(info, 5)),
        (8, lambda: measure_message_search(info, 240)),
    ]
    if 4 in only and 3 not in only:
        steps.append((4, lambda: measure_live(info, samples=0, fanout=500)))
    for number, step in steps:
        if number not in only:
            continue
        print(f"[measure] {number} ...", flush=True)
        step_started = time.perf_counter()
        rows += step()
        print(f"[measure] {number} done in {time.perf_counter() - step_started:.1f} s", flush=True)
    profiles = profile(info) if args.profile else []
    total = time.perf_counter() - started
    print()
    print(table(rows))
    print(f"\nprepare {prepared:.0f} s, whole run {total:.0f} s")
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "scale": args.scale,
        "data": {k: v for k, v in info.items() if k != "small_practices"},
        "prepare_seconds": round(prepared, 1),
        "total_seconds": round(total, 1),
        "profiles": profiles,
        "rows": rows,
    }
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    chart(rows, RESULTS / "latest.png")
    (RESULTS / "latest.md").write_text(markdown(rows))
    print(f"wrote {RESULTS / 'latest.json'}, latest.png and latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
