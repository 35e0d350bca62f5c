"""In-process cost of one GraphQL request (Django test client, this thread): CPU, minor page faults, garbage
collections and their pauses, measured at several entry depths (CPython 3.11's frame data-stack chunks make the
cost of a call depend on the depth it starts at, gh-142183), against the sync floor view of the same rows.

`python -m bench.inprocess` prints the figures of the 50-conversation page; `bench.run` uses `measure` for its rows.
"""

from __future__ import annotations

import gc
import json
import resource
import statistics
import time
from collections.abc import Callable

# Entry depths (extra Python frames under the request): enough of them to cross a 16 KiB chunk boundary.
DEPTHS = tuple(range(0, 160, 8))


def at_depth(depth: int, fn: Callable[[], object]) -> object:
    if depth <= 0:
        return fn()
    return at_depth(depth - 1, fn)


class GcWatch:
    """Collections of each generation and the pauses of the full ones, while installed."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.full_pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.counts[generation] += 1
            if generation == 2:
                self.full_pauses.append((time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def sample(call: Callable[[], object], runs: int, depths: tuple[int, ...] = DEPTHS) -> dict:
    """`runs` calls at each depth: per-call CPU (ms) and minor faults; collections per call."""
    for depth in depths[:3]:
        at_depth(depth, call)
    cpu: list[float] = []
    faults: list[int] = []
    worst: dict[int, int] = {}
    with GcWatch() as watch:
        for _ in range(runs):
            for depth in depths:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                started = time.process_time()
                at_depth(depth, call)
                cpu.append((time.process_time() - started) * 1000)
                fault = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
                faults.append(fault)
                worst[depth] = max(worst.get(depth, 0), fault)
    calls = len(cpu)
    return {
        "calls": calls,
        "cpu_ms_p50": statistics.median(cpu),
        "cpu_ms_p90": sorted(cpu)[int(calls * 0.9)],
        "faults_mean": round(statistics.fmean(faults), 1),
        "faults_p50": statistics.median(faults),
        "faults_max": max(faults),
        "faults_by_depth": worst,
        "gc_per_call": [round(n / calls, 3) for n in watch.counts],
        "full_gc_pause_ms": round(statistics.median(watch.full_pauses), 2) if watch.full_pauses else 0.0,
    }


def chart_patient(info: dict) -> int:
    """The patient of the busy mailbox's newest conversation (the bench has one conversation per patient)."""
    from core.models import Conversation

    newest = Conversation.objects.filter(mailbox_id=info["busy_mailbox"]).order_by("-last_activity_at", "-id")
    return newest.values_list("patient_id", flat=True)[0]


def page_calls(info: dict) -> dict[str, Callable[[], object]]:
    from django.test import Client

    from bench import queries
    from bench.run import gid
    from core.models import User
    from core.tokens import issue_token

    client = Client()
    token = issue_token(user=User.objects.get(pk=info["bench_user"]))
    headers = {"Authorization": f"Bearer {token}"}

    def graphql(query: str, variables: dict, expect: Callable[[dict], bool]) -> Callable[[], object]:
        body = json.dumps({"query": query, "variables": variables})

        def call() -> object:
            response = client.post("/graphql", data=body, content_type="application/json", headers=headers)
            answer = json.loads(response.content)
            if answer.get("errors") or not expect(answer["data"]):
                raise RuntimeError(f"unexpected answer: {str(answer)[:300]}")
            return answer

        return call

    floor_url = (
        f"/bench/floor/conversations-sync?mailbox={info['busy_mailbox']}&user={info['bench_user']}&first=50&last=5"
    )

    def floor() -> object:
        response = client.get(floor_url)
        if len(json.loads(response.content)["edges"]) != 50:
            raise RuntimeError("floor view did not return 50 conversations")
        return response

    mailbox = gid("Mailbox", info["busy_mailbox"])
    return {
        "page": graphql(
            queries.CONVERSATIONS_PAGE,
            {"mailboxId": mailbox, "conversations": 50, "messages": 5},
            lambda data: len(data["mailbox"]["conversations"]["edges"]) == 50,
        ),
        "workbench": graphql(
            queries.WORKBENCH_LIST,
            {"id": mailbox, "status": "ACTIVE"},
            lambda data: len(data["mailbox"]["conversations"]["edges"]) == 50,
        ),
        "chart": graphql(
            queries.CHART_SUMMARY,
            {"id": gid("Patient", chart_patient(info))},
            lambda data: len(data["patient"]["conversations"]) >= 1,
        ),
        "floor": floor,
    }


def measure(info: dict, runs: int = 5, names: tuple[str, ...] = ("floor", "page", "workbench", "chart")) -> dict:
    calls = page_calls(info)
    return {name: sample(calls[name], runs) for name in names}


def main() -> None:
    import argparse

    from bench.prepare import prepare
    from bench.run import BIG_DB, setup_django

    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="floor,page,workbench,chart")
    args = parser.parse_args()
    info = prepare(BIG_DB, args.scale)
    setup_django(BIG_DB)
    from config.asgi import application  # noqa: F401  (the server's startup: GC settings included)

    for name, figures in measure(info, args.runs, tuple(args.only.split(","))).items():
        print(name, json.dumps(figures))


if __name__ == "__main__":
    main()
