"""What one server process carries, for docs/scaling.md: `python -m bench.capacity [--seconds 4]`.

Reuses the bench database (`mailbox_bench`, see bench/run.py; prepared at `--scale`, 0.01 by default) and one
daphne process with the bench settings. Measures, briefly (a few seconds each):

1. HTTP requests per second and p50 of the Workbench's own queries (web/static/web/js/workbench.js), 8 clients;
2. open sockets per process: server memory per socket with one `mailboxEvents` subscription each;
3. events per second: sends while those sockets subscribe, deliveries per second and the server's CPU;
4. PostgreSQL rows and bytes per practice (read-only catalog and count queries).

Prints the figures and writes bench/results/capacity.json (not the figures of bench/run.py; that file holds the
runs docs/scaling.md quotes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from bench.run import BIG_DB, PORT, RESULTS, Server, gid, load_round, percentile, setup_django

CONVERSATION_ROW = (
    "id status lastMessageAt createdAt unreadCount patient { id fullName preferredPronoun dateOfBirth accountNumber }"
)
MESSAGE_FIELDS = "id sequence direction body sentAt senderName attachments { id filename contentType size url }"
WORKBENCH = {
    "Mailboxes (100 mailboxes)": (
        "query Mailboxes($practiceId: ID!) { mailboxes(practiceId: $practiceId, status: ACTIVE, subscribedOnly: false) "
        "{ id name status isSubscribed subscriberCount unreadCount } }",
        lambda info: {"practiceId": gid("Practice", info["main_practice"])},
    ),
    "Conversations (page of 50)": (
        "query Conversations($id: ID!) { mailbox(id: $id) { id name status isSubscribed "
        f"conversations(status: ACTIVE, first: 50) {{ totalCount edges {{ node {{ {CONVERSATION_ROW} }} }} }} }} }}",
        lambda info: {"id": gid("Mailbox", info["busy_mailbox"])},
    ),
    "Thread (last 50 messages)": (
        "query Thread($id: ID!) { conversation(id: $id) { id status lastMessageAt unreadCount "
        "mailbox { id name status } patient { id fullName preferredPronoun dateOfBirth accountNumber } "
        f"messages(last: 50) {{ totalCount edges {{ node {{ {MESSAGE_FIELDS} }} }} }} }} }}",
        lambda info: {"id": gid("Conversation", info["long_thread"])},
    ),
    "Unread badge": (
        "query Unread($practiceId: ID!) { mailboxes(practiceId: $practiceId, subscribedOnly: true) "
        "{ id unreadCount } }",
        lambda info: {"practiceId": gid("Practice", info["main_practice"])},
    ),
}
SUBSCRIBE = (
    "subscription MailboxEvents($practiceId: ID!) { mailboxEvents(practiceId: $practiceId) { cursor kind "
    "mailbox { id unreadCount } conversation { id unreadCount } message { id sequence body senderName } } }"
)
SEND = "mutation Send($c: ID!, $b: String!) { sendMessage(conversationId: $c, body: $b) { sequence } }"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_http(server: Server, token: str, info: dict, seconds: float) -> list[dict]:
    import httpx

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    rows = []
    for name, (query, variables) in WORKBENCH.items():
        body = json.dumps({"query": query, "variables": variables(info)})
        check = httpx.post(f"{server.url}/graphql", content=body, headers=headers, timeout=30).json()
        if check.get("errors"):
            raise RuntimeError(f"{name}: {check['errors'][:1]}")
        load_round(f"{server.url}/graphql", body=body, headers=headers, seconds=1)
        started = time.monotonic()
        times = load_round(f"{server.url}/graphql", body=body, headers=headers, seconds=seconds)
        elapsed = time.monotonic() - started
        rows.append(
            {
                "query": name,
                "requests_per_second": round(len(times) / elapsed, 1),
                "p50_ms": round(percentile(times, 50), 1),
            }
        )
    return rows


async def measure_live(server: Server, tokens: list[str], sender: str, info: dict, sockets: int, events: int) -> dict:
    import httpx
    import websockets

    url = server.url.replace("http", "ws") + "/graphql"
    variables = {"practiceId": gid("Practice", info["main_practice"])}
    received = [0]
    base_rss = rss_kb(server.process.pid)

    async def open_socket(n: int):
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], max_size=None, open_timeout=60)
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {tokens[n % len(tokens)]}"}})
        )
        await ws.recv()
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": variables}})
        )
        return ws

    opened = []
    for start in range(0, sockets, 50):
        opened += await asyncio.gather(*(open_socket(n) for n in range(start, min(sockets, start + 50))))
    await asyncio.sleep(3)
    per_socket_kb = (rss_kb(server.process.pid) - base_rss) / sockets
    idle_cpu = cpu_seconds(server.process.pid)
    await asyncio.sleep(5)
    idle_cpu_per_second = (cpu_seconds(server.process.pid) - idle_cpu) / 5

    async def reader(ws):
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "next":
                received[0] += 1
            elif message.get("type") == "ping":
                await ws.send('{"type":"pong"}')

    readers = [asyncio.create_task(reader(ws)) for ws in opened]
    expected = sockets * events
    cpu_before = cpu_seconds(server.process.pid)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        headers = {"Authorization": f"Bearer {sender}"}
        for n in range(events):
            body = {"query": SEND, "variables": {"c": gid("Conversation", info["long_thread"]), "b": f"capacity {n}"}}
            answer = (await client.post(f"{server.url}/graphql", json=body, headers=headers)).json()
            if answer.get("errors"):
                raise RuntimeError(answer["errors"][:1])
    deadline = time.perf_counter() + 60
    while received[0] < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(server.process.pid) - cpu_before
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    return {
        "sockets": sockets,
        "server_rss_kb_per_socket": round(per_socket_kb, 1),
        "idle_cpu_share_of_a_core": round(idle_cpu_per_second, 3),
        "events_sent": events,
        "deliveries": received[0],
        "expected_deliveries": expected,
        "seconds": round(elapsed, 2),
        "deliveries_per_second": round(received[0] / elapsed, 0),
        "events_per_second": round(events / elapsed, 1),
        "server_cpu_ms_per_delivery": round(cpu * 1000 / max(1, received[0]), 3),
    }


def rows_per_practice(info: dict) -> dict:
    from django.db import connection

    tables = {
        "patients": "core_patient",
        "conversations": "core_conversation",
        "messages": "core_message",
        "events": "core_event",
        "audit rows": "core_auditevent",
    }
    result = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM core_practice")
        practices = cursor.fetchone()[0]
        for name, table in tables.items():
            cursor.execute(
                "SELECT c.reltuples::bigint, pg_total_relation_size(c.oid), pg_relation_size(c.oid) FROM pg_class c "
                "WHERE c.relname = %s",
                [table],
            )
            rows, total_bytes, heap_bytes = cursor.fetchone()
            if rows <= 0:
                cursor.execute(f"SELECT count(*) FROM {table}")  # fixed table names
                rows = cursor.fetchone()[0]
            result[name] = {
                "rows": rows,
                "bytes_per_row_with_indexes": round(total_bytes / rows) if rows else None,
                "heap_bytes_per_row": round(heap_bytes / rows) if rows else None,
            }
    result["practices"] = practices
    result["main_practice_share"] = "almost all rows: the bench's one big practice"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--only", default="http,live", help="http, live or both")
    args = parser.parse_args(argv)
    from bench.prepare import prepare

    info = prepare(BIG_DB, args.scale)
    setup_django(BIG_DB)
    from core.models import Conversation, MailboxSubscription, User
    from core.tokens import issue_token

    bench_user = User.objects.get(pk=info["bench_user"])
    token = issue_token(user=bench_user)
    # Subscribers of the thread's mailbox: every socket of theirs gets every event sent to the thread.
    mailbox_id = Conversation.objects.get(pk=info["long_thread"]).mailbox_id
    staff = MailboxSubscription.objects.filter(mailbox_id=mailbox_id).values_list("user_id", flat=True)
    tokens = [issue_token(user=User.objects.get(pk=pk)) for pk in list(staff)[:20]]
    if not tokens:
        raise RuntimeError("nobody subscribes to the long thread's mailbox")
    server = Server(PORT + 2, BIG_DB)
    try:
        http = measure_http(server, token, info, args.seconds) if "http" in args.only else []
        live = (
            asyncio.run(measure_live(server, tokens, token, info, args.sockets, args.events))
            if "live" in args.only
            else {}
        )
    finally:
        server.stop()
    storage = rows_per_practice(info)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"nproc": os.cpu_count()},
        "scale": args.scale,
        "http": http,
        "live": live,
        "storage": storage,
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
