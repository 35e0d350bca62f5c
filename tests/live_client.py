"""A graphql-transport-ws client over a real ASGI WebSocket (Channels' communicator), as a frontend would."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.testing import WebsocketCommunicator

MAILBOX_EVENTS = """
subscription($practiceId: ID!, $after: String) {
  mailboxEvents(practiceId: $practiceId, after: $after) {
    cursor kind mailboxId conversationId mailboxName
    mailbox { id name status isSubscribed unreadCount practice { name } }
    conversation { id status unreadCount patient { fullName } mailbox { name } }
    message { id sequence direction body senderName sentAt attachments { filename url } }
  }
}
"""

CONVERSATION_EVENTS = """
subscription($conversationId: ID!, $after: String, $via: AccessSource) {
  conversationEvents(conversationId: $conversationId, after: $after, via: $via) {
    cursor kind message { sequence body direction }
  }
}
"""

PORTAL_EVENTS = """
subscription($after: String) {
  portalEvents(after: $after) { cursor kind conversation { id } message { sequence body direction } }
}
"""


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"socket closed with {code}")
        self.code = code


class LiveClient:
    def __init__(self, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        from config.asgi import application

        self.ws = WebsocketCommunicator(
            application, "/graphql", headers=headers or [], subprotocols=["graphql-transport-ws"]
        )
        self.pending: list[dict] = []

    async def open(self, token: str | None = None, payload: dict | None = None) -> dict:
        connected, subprotocol = await self.ws.connect()
        assert connected
        assert subprotocol == "graphql-transport-ws"
        if payload is None:
            payload = {"authorization": f"Bearer {token}"} if token else {}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def send(self, message: dict) -> None:
        await self.ws.send_json_to(message)

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    async def receive(self, timeout: float = 5) -> dict:
        """The next protocol message; answers server pings; raises Closed when the server closes."""
        while True:
            output = await self._output(timeout)
            if output["type"] == "websocket.close":
                raise Closed(output.get("code"))
            message = json.loads(output["text"])
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def _output(self, timeout: float) -> dict:
        # Not `receive_output(timeout)`: on timeout it cancels the application, and silence is often expected.
        if self.ws.future.done():
            self.ws.future.result()
        return await asyncio.wait_for(self.ws.output_queue.get(), timeout)

    async def next_for(self, op_id: str, timeout: float = 5) -> dict:
        """The next message of one operation; messages of other operations are kept for later."""
        for i, message in enumerate(self.pending):
            if message.get("id") == op_id:
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            message = await self.receive(max(0.01, deadline - time.monotonic()))
            if message.get("id") == op_id:
                return message
            self.pending.append(message)

    async def event(self, op_id: str, field: str, timeout: float = 5) -> dict:
        message = await self.next_for(op_id, timeout)
        assert message["type"] == "next", message
        assert not message["payload"].get("errors"), message["payload"]["errors"]
        return message["payload"]["data"][field]

    async def refusal(self, op_id: str, timeout: float = 5) -> str:
        """The error code that ended an operation (a `next` with errors, then `complete`)."""
        message = await self.next_for(op_id, timeout)
        assert message["type"] == "next", message
        assert message["payload"].get("errors"), message
        assert (await self.next_for(op_id, timeout))["type"] == "complete"
        return message["payload"]["errors"][0]["extensions"]["code"]

    async def nothing_for(self, seconds: float) -> None:
        try:
            message = await self.receive(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, got {message}")

    async def closed_code(self, timeout: float = 7) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.receive(max(0.01, deadline - time.monotonic()))
            except Closed as closed:
                return closed.code

    async def close(self) -> None:
        await self.ws.disconnect()
        # Let the consumer's cleanup (group discards, thread-pool DB calls) finish before the test tears down.
        await asyncio.sleep(0)


def start_counting_queries() -> None:
    """Run on the live thread (`live_db`): record the SQL it runs from now on."""
    from django.db import connections

    connection = connections["default"]
    connection.ensure_connection()
    connection.force_debug_cursor = True
    connection.queries_log.clear()


def stop_counting_queries() -> list[str]:
    """Run on the live thread: the SQL it ran since `start_counting_queries`."""
    from django.db import connections

    connection = connections["default"]
    connection.force_debug_cursor = False
    return [q["sql"] for q in connection.queries_log]
