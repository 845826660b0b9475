"""A minimal graphql-transport-ws client for the tests, over `websockets`.

    async with GraphQLWs.open(server.ws_url, token) as ws:      # connection_init + ack
        sub = await ws.subscribe(QUERY, {"id": contact_id})
        message = await sub.receive()          # {"type": "next", "payload": {...}}

A reader task answers pings and files every message under its operation id, so a test
can hold several subscriptions on one socket. When the socket closes, every waiter gets
`Closed` with the close code and reason the server sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"
TIMEOUT = 10.0  # only there to turn a hang into a failure; never asserted on


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"socket closed: {code} {reason}")
        self.code = code
        self.reason = reason


_CLOSED = object()


class Operation:
    def __init__(self, client: GraphQLWs, op_id: str) -> None:
        self.client = client
        self.id = op_id
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message for this operation (next, error or complete)."""
        item = await asyncio.wait_for(self.queue.get(), timeout)
        if item is _CLOSED:
            self.queue.put_nowait(_CLOSED)  # later waiters see the close too
            raise self.client.closed_error()
        return item  # type: ignore[no-any-return]

    async def next_data(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The `data` of the next `next` message; fails on anything else."""
        message = await self.receive(timeout)
        assert message["type"] == "next", message
        assert not message["payload"].get("errors"), message
        return message["payload"]["data"]  # type: ignore[no-any-return]

    async def complete(self) -> None:
        await self.client.send({"id": self.id, "type": "complete"})


class GraphQLWs:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._control: asyncio.Queue[Any] = asyncio.Queue()
        self._operations: dict[str, Operation] = {}
        self._ids = itertools.count(1)
        self._done = False
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, subprotocols: list[str] | None = None) -> AsyncIterator[GraphQLWs]:
        """The socket only: no connection_init yet."""
        protocols = [PROTOCOL] if subprotocols is None else subprotocols
        async with connect(url, subprotocols=protocols, open_timeout=TIMEOUT, close_timeout=2) as ws:  # type: ignore[arg-type]
            client = cls(ws)
            try:
                yield client
            finally:
                client._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await client._reader

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, token: str) -> AsyncIterator[GraphQLWs]:
        """Connected and acknowledged with `Bearer <token>`."""
        async with cls.connect(url) as client:
            ack = await client.init({"authorization": f"Bearer {token}"})
            assert ack["type"] == "connection_ack", ack
            yield client

    async def send(self, message: dict[str, Any]) -> None:
        """Send a message; on a closed socket it is dropped (the reader reports the close)."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message))

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        """Send connection_init; the server's answer (connection_ack), or raises Closed."""
        message: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        return await self.control()

    async def control(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        item = await asyncio.wait_for(self._control.get(), timeout)
        if item is _CLOSED:
            self._control.put_nowait(_CLOSED)
            raise self.closed_error()
        return item  # type: ignore[no-any-return]

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> Operation:
        op = Operation(self, str(next(self._ids)))
        self._operations[op.id] = op
        if self._done:
            op.queue.put_nowait(_CLOSED)
        await self.send({"id": op.id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
        return op

    async def wait_closed(self, timeout: float = TIMEOUT) -> Closed:
        """Wait for the server to close the socket; its close code and reason."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.closed_error()

    def closed_error(self) -> Closed:
        rcvd = self.ws.protocol.close_rcvd  # what the server sent; None if it just dropped
        return Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await self.send({"type": "pong"})
                    continue
                op = self._operations.get(message.get("id", ""))
                (op.queue if op else self._control).put_nowait(message)
        except ConnectionClosed:
            pass
        finally:
            self._done = True
            self._control.put_nowait(_CLOSED)
            for op in self._operations.values():
                op.queue.put_nowait(_CLOSED)
