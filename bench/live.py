"""Measurements 3 and 4: live events across two server processes sharing Redis, against raw Redis + websockets.

3. Latency from `sendMessage` returning (HTTP, server A) to a `conversationEvents` subscriber on server B receiving
   `next`; floor: a raw Redis PUBLISH returning to a client of a raw `websockets` server (subscribed to that Redis
   channel) receiving the forwarded message.
4. Fan-out: one `sendMessage` to 500 subscribers, half on each server; time until the last one has it, and how
   many got it; floor: one raw Redis PUBLISH to two raw `websockets` servers broadcasting to 250 clients each.

The contract (SPEC §3): graphql-transport-ws on /graphql, token in connection_init {"authorization": "Bearer …"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid

import httpx
import redis.asyncio as aioredis
import websockets

from bench import queries


def _redis_url() -> str:
    """The servers' Redis (bench/settings.py: REDIS_URL, db 1 unless set), for the floor and the publish watcher."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1")


def _port(offset: int) -> int:
    from bench.run import PORT

    return PORT + offset


def _pct(values: list[float], p: float) -> float:
    from bench.run import percentile

    return percentile(values, p)


class Subscriber:
    """One graphql-transport-ws connection with one conversationEvents subscription; records arrival times."""

    def __init__(self, url: str, token: str, conversation_gid: str) -> None:
        self.url, self.token, self.conversation_gid = url, token, conversation_gid
        self.arrivals: dict[str, float] = {}  # message id -> perf_counter at arrival
        self.arrived = asyncio.Event()
        self.ws = None
        self.task: asyncio.Task | None = None
        self.connected = False
        self.refusal = ""

    async def start(self, attempts: int = 3) -> int:
        """Connects and subscribes; returns how many attempts failed (`attempts` and .connected False: gave up)."""
        for failed in range(attempts):
            try:
                await self._start()
                self.connected = True
                return failed
            except (OSError, websockets.exceptions.WebSocketException) as refusal:
                self.refusal = repr(refusal)
                await asyncio.sleep(0.5)
        return attempts

    async def _start(self) -> None:
        self.ws = await websockets.connect(self.url, subprotocols=["graphql-transport-ws"], max_queue=None)
        await self.ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}})
        )
        while True:
            reply = json.loads(await self.ws.recv())
            if reply["type"] == "connection_ack":
                break
            if reply["type"] not in ("ping", "pong"):
                raise RuntimeError(f"connection_init refused: {reply}")
        await self.ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {
                        "query": queries.CONVERSATION_EVENTS,
                        "variables": {"conversationId": self.conversation_gid},
                    },
                }
            )
        )
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
            elif frame["type"] == "next":
                if frame["payload"].get("errors"):
                    raise RuntimeError(f"subscription error: {frame['payload']['errors']}")
                event = frame["payload"]["data"]["conversationEvents"]
                if event["kind"] == "MESSAGE_ADDED" and event.get("message"):
                    self.arrivals.setdefault(event["message"]["id"], now)
                    self.arrived.set()
            elif frame["type"] in ("error", "complete"):
                raise RuntimeError(f"subscription ended: {frame}")

    async def close(self) -> None:
        if self.ws is None:
            return
        if self.task:
            self.task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()


async def _send(client: httpx.AsyncClient, url: str, token: str, conversation_gid: str) -> tuple[str, float, float]:
    started = time.perf_counter()
    response = await client.post(
        f"{url}/graphql",
        json={
            "query": queries.SEND,
            "variables": {
                "conversationId": conversation_gid,
                "body": "bench ping",
                "clientMessageId": uuid.uuid4().hex,
            },
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    returned = time.perf_counter()
    answer = response.json()
    if answer.get("errors"):
        raise RuntimeError(f"sendMessage failed: {answer['errors']}")
    return answer["data"]["sendMessage"]["id"], started, returned


async def _wait_all(subscribers: list[Subscriber], message_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(message_id in s.arrivals for s in subscribers):
            return
        await asyncio.sleep(0.002)


async def graphql_latency(urls: tuple[str, str], token: str, conversation_gid: str, samples: int) -> dict:
    subscriber = Subscriber(urls[1].replace("http", "ws") + "/graphql", token, conversation_gid)
    await subscriber.start()
    after_return, from_start, early = [], [], 0
    async with httpx.AsyncClient(timeout=30) as client:
        # Warm-up: also proves the subscription is live before timing.
        for _ in range(3):
            message_id, _, _ = await _send(client, urls[0], token, conversation_gid)
            await _wait_all([subscriber], message_id, 15)
            if message_id not in subscriber.arrivals:
                raise RuntimeError("the subscriber on the second server never received the warm-up message")
        for _ in range(samples):
            message_id, started, returned = await _send(client, urls[0], token, conversation_gid)
            await _wait_all([subscriber], message_id, 10)
            arrived = subscriber.arrivals.get(message_id)
            if arrived is None:
                continue
            early += arrived < returned
            after_return.append(max(0.0, arrived - returned) * 1000)
            from_start.append((arrived - started) * 1000)
            await asyncio.sleep(0.02)
    await subscriber.close()
    return {
        "after_return": after_return,
        "from_request_start": from_start,
        "arrived_before_return": early,
        "lost": samples - len(after_return),
    }


async def _raw_server(port: int, channel: str, ready: asyncio.Event, stop: asyncio.Event) -> None:
    """A raw websockets server forwarding every message of a Redis channel to all its clients."""
    clients: set = set()

    async def handler(ws) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    redis = aioredis.from_url(_redis_url())
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    async with websockets.serve(handler, "127.0.0.1", port):
        ready.set()
        while not stop.is_set():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                websockets.broadcast(clients, message["data"].decode())
    await pubsub.aclose()
    await redis.aclose()


async def _raw_clients(port: int, count: int) -> tuple[list, dict[str, list[float]]]:
    arrivals: dict[str, list[float]] = {}
    sockets = [await websockets.connect(f"ws://127.0.0.1:{port}") for _ in range(count)]

    async def read(ws) -> None:
        async for raw in ws:
            arrivals.setdefault(raw, []).append(time.perf_counter())

    tasks = [asyncio.create_task(read(ws)) for ws in sockets]
    return [sockets, tasks], arrivals


async def raw_floor(samples: int, fanout: int) -> dict:
    channel = f"bench-raw-{uuid.uuid4().hex}"
    stop = asyncio.Event()
    readies = [asyncio.Event(), asyncio.Event()]
    servers = [asyncio.create_task(_raw_server(_port(4 + i), channel, readies[i], stop)) for i in range(2)]
    for ready in readies:
        await ready.wait()
    redis = aioredis.from_url(_redis_url())
    result: dict = {}
    handles = []
    try:
        if samples:
            handle, arrivals = await _raw_clients(_port(4), 1)
            handles.append(handle)
            await asyncio.sleep(0.2)
            latencies = []
            for i in range(samples + 3):
                key = f"s{i}"
                await redis.publish(channel, key)
                returned = time.perf_counter()
                deadline = time.monotonic() + 5
                while key not in arrivals and time.monotonic() < deadline:
                    await asyncio.sleep(0.0005)
                if i >= 3 and key in arrivals:
                    latencies.append((arrivals[key][0] - returned) * 1000)
                await asyncio.sleep(0.005)
            result["latency"] = latencies
        if fanout:
            per_server = fanout // 2
            handle_a, arrivals_a = await _raw_clients(_port(4), per_server)
            handle_b, arrivals_b = await _raw_clients(_port(5), fanout - per_server)
            handles += [handle_a, handle_b]
            await asyncio.sleep(0.5)
            times, received = [], []
            for i in range(5):
                key = f"f{i}"
                await redis.publish(channel, key)
                returned = time.perf_counter()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    got = len(arrivals_a.get(key, [])) + len(arrivals_b.get(key, []))
                    if got >= fanout:
                        break
                    await asyncio.sleep(0.001)
                stamps = arrivals_a.get(key, []) + arrivals_b.get(key, [])
                received.append(len(stamps))
                if stamps:
                    times.append((max(stamps) - returned) * 1000)
                await asyncio.sleep(0.2)
            result["fanout"] = times
            result["fanout_received"] = received
    finally:
        for sockets, tasks in handles:
            for task in tasks:
                task.cancel()
            for ws in sockets:
                with contextlib.suppress(Exception):
                    await ws.close()
        stop.set()
        await asyncio.gather(*servers, return_exceptions=True)
        await redis.aclose()
    return result


async def _publishes(channel: str, stamps: list[float], ready: asyncio.Event) -> None:
    """Records when each publish on a channel-layer group's Redis channel is seen (the start of a fan-out)."""
    client = aioredis.from_url(_redis_url())
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    ready.set()
    try:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                stamps.append(time.perf_counter())
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
            await client.aclose()


async def graphql_fanout(
    urls: tuple[str, str],
    token: str,
    conversation_gid: str,
    fanout: int,
    rounds: int = 5,
    group_channel: str = "",
    viewer_tokens: list[str] | None = None,
) -> dict:
    """`viewer_tokens`: one per subscriber (distinct staff users); else every subscriber is the bench user."""
    tokens = viewer_tokens or [token] * fanout
    subscribers = [
        Subscriber(urls[i % 2].replace("http", "ws") + "/graphql", tokens[i], conversation_gid) for i in range(fanout)
    ]
    retries = 0
    for start in range(0, fanout, 10):  # connect in small batches: the figure is delivery, not the handshake
        retries += sum(await asyncio.gather(*(s.start() for s in subscribers[start : start + 10])))
    times, after_return, received = [], [], []
    refused = [s for s in subscribers if not s.connected]
    subscribers = [s for s in subscribers if s.connected]
    published: list[float] = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(_publishes(group_channel, published, ready))
    await asyncio.wait_for(ready.wait(), 10)
    async with httpx.AsyncClient(timeout=30) as client:
        message_id, _, _ = await _send(client, urls[0], token, conversation_gid)  # warm-up: all subscriptions live
        await _wait_all(subscribers, message_id, 30)
        warm = sum(message_id in s.arrivals for s in subscribers)
        for _ in range(rounds):
            await asyncio.sleep(0.5)
            seen = len(published)
            message_id, _, returned = await _send(client, urls[0], token, conversation_gid)
            await _wait_all(subscribers, message_id, 30)
            stamps = [s.arrivals[message_id] for s in subscribers if message_id in s.arrivals]
            received.append(len(stamps))
            if stamps and len(published) > seen:
                # From the publish on Redis (as the floor times from its own PUBLISH) to the last subscriber's `next`.
                times.append((max(stamps) - published[seen]) * 1000)
                after_return.append(max(0.0, max(stamps) - returned) * 1000)
    watcher.cancel()
    await asyncio.gather(*(s.close() for s in subscribers))
    return {
        "times": times,
        "after_return": after_return,
        "received": received,
        "warm_up_received": warm,
        "connect_retries": retries,
        "connect_refused": len(refused),
        "refusal": refused[0].refusal if refused else "",
    }


def distinct_staff_tokens(mailbox_id: int, count: int) -> list[str]:
    """`count` different staff users of the mailbox's practice, each subscribed to it, one token each (made once)."""
    from core.models import Mailbox, MailboxSubscription, Membership, User
    from core.tokens import issue_token

    mailbox = Mailbox.objects.get(pk=mailbox_id)
    names = [f"fanout-{n:04d}" for n in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create([User(username=n, full_name=f"Fan-out {n[-4:]}") for n in names if n not in existing])
    users = list(User.objects.filter(username__in=names).order_by("username"))
    Membership.objects.bulk_create(
        [Membership(user=u, practice_id=mailbox.practice_id) for u in users], ignore_conflicts=True
    )
    MailboxSubscription.objects.bulk_create(
        [MailboxSubscription(user=u, mailbox=mailbox) for u in users], ignore_conflicts=True
    )
    return [issue_token(user=u) for u in users]


def measure(info: dict, samples: int, fanout: int) -> list[dict]:
    from bench.run import BIG_DB, Server, gid
    from core.events import conversation_group
    from core.models import Conversation, User
    from core.tokens import issue_token

    token = issue_token(user=User.objects.get(pk=info["bench_user"]))
    # A short conversation of the bench user's busy mailbox (not the long thread of measurement 6).
    conversation = Conversation.objects.filter(mailbox_id=info["busy_mailbox"], status="ACTIVE").order_by("pk").first()
    conversation_gid = gid("Conversation", conversation.pk)
    servers = [Server(_port(0), BIG_DB), Server(_port(1), BIG_DB)]
    urls = (servers[0].url, servers[1].url)
    rows: list[dict] = []
    try:
        floor = asyncio.run(raw_floor(samples, fanout))
        if samples:
            figure = asyncio.run(graphql_latency(urls, token, conversation_gid, samples))
            for p, goal in ((50, 3.0), (99, 5.0)):
                value, base = _pct(figure["after_return"], p), _pct(floor["latency"], p)
                rows.append(
                    {
                        "id": f"3.p{p}",
                        "figure": f"live event p{p}, sendMessage return -> next",
                        "value": value,
                        "floor": base,
                        "ratio": value / base,
                        "goal": f"<= {goal:g}x",
                        "met": value / base <= goal,
                        "unit": "ms",
                        "detail": {
                            "from_request_start_p50": _pct(figure["from_request_start"], 50),
                            "arrived_before_return": figure["arrived_before_return"],
                            "lost": figure["lost"],
                            "samples": len(figure["after_return"]),
                            "floor_is": "raw Redis PUBLISH -> raw websockets server -> client",
                        },
                    }
                )
        if fanout:
            from django.conf import settings

            group = f"{settings.REDIS_PREFIX}__group__{conversation_group(conversation.pk)}"
            viewers = distinct_staff_tokens(info["busy_mailbox"], fanout)
            try:
                for row_id, who, tokens in (
                    ("4.fanout", "the same user", None),
                    ("4.fanout.users", "distinct staff users", viewers),
                ):
                    figure = asyncio.run(
                        graphql_fanout(urls, token, conversation_gid, fanout, group_channel=group, viewer_tokens=tokens)
                    )
                    rows.append(_fanout_row(row_id, who, fanout, figure, floor))
            finally:
                unsubscribe_fanout_users(info["busy_mailbox"])
    finally:
        for server in servers:
            server.stop()
    return rows


def unsubscribe_fanout_users(mailbox_id: int) -> None:
    """The busy mailbox is measurement 2's page, whose `subscribers` the fan-out users would otherwise join (503
    instead of 3 on the next run of the reused data)."""
    from core.models import MailboxSubscription

    MailboxSubscription.objects.filter(mailbox_id=mailbox_id, user__username__startswith="fanout-").delete()


def _fanout_row(row_id: str, who: str, fanout: int, figure: dict, floor: dict) -> dict:
    value, base = statistics.median(figure["times"]), statistics.median(floor["fanout"])
    lost = sum(fanout - r for r in figure["received"])
    return {
        "id": row_id,
        "figure": f"fan-out to {fanout} subscribers ({who}), 2 processes, publish -> last next",
        "value": value,
        "floor": base,
        "ratio": value / base,
        "goal": "<= 2x, none lost",
        "met": value / base <= 2 and lost == 0,
        "unit": "ms",
        "detail": {
            "after_sendMessage_returned_median": statistics.median(figure["after_return"]),
            "rounds_ms": figure["times"],
            "received_per_round": figure["received"],
            "lost": lost,
            "floor_received": floor["fanout_received"],
            "warm_up_received": figure["warm_up_received"],
            "connect_retries": figure["connect_retries"],
            "connect_refused": figure["connect_refused"],
            "refusal": figure["refusal"],
        },
    }
