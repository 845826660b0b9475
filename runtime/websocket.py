"""The WebSocket handler: graphql-transport-ws, each socket's frames through one `Outlet`.

`SharedFrames` is Strawberry's graphql-transport-ws handler with Parley's additions:

- a shared result's data (runtime/fanout.py) is serialized once (`frames`) and every
  subscriber gets the same text behind its own operation id;
- every frame of a socket goes through its `Outlet`, which writes straight to the
  server's ASGI `send` (left in the scope by asgi.py's RequestIdMiddleware) and keeps at
  most `subscriber_queue_size` frames waiting for a slow socket;
- `connection_init` past the per-principal socket limit closes the socket with 4429 (a
  refusal counted in `parley_rate_limited_total` as "sockets-per-principal");
  an accepted socket is watched by the socket guard (runtime/socket_guard.py), which
  closes it when its credentials stop working; a `subscribe` whose document breaks the
  request limits (core/limits.py) gets an `error` message;
- the operation being run is left in `current_operation`, in the operation's own task,
  for runtime/fanout.py's `direct` delivery;
- with tracing on, each operation is a span (core/tracing.py) for as long as it runs, the
  SQL and Redis calls of its executions within it; its `parley.outcome` is ok (it ended),
  stopped (the client's `complete`, or the socket closed) or error.

Library internals it relies on (strawberry-graphql 0.341.2): the handler base class
`strawberry.subscriptions.protocols.graphql_transport_ws.handlers.BaseGraphQLTransportWSHandler`
and its `Operation`, their attributes (`websocket.ws`, `view.encode_json`, `context`,
`connection_acknowledged`, `operations`, `operation.handler`, `operation.id`) and the
methods overridden here (`handle`, `handle_connection_init`, `handle_subscribe`, `shutdown`,
`run_operation`, `send_message`), plus `strawberry.http.exceptions.WebSocketDisconnected`;
Starlette's ASGI WebSocket messages (`websocket.send` with `text`).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import types
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any

from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation

from core.config import settings
from core.errors import request_id_var
from core.limits import RequestRejected, TooManySockets, check_document, sockets
from core.metrics import ACTIVE_SUBSCRIPTIONS, OPEN_SOCKETS, RATE_LIMITED
from core.tracing import SpanKind, describe_operation, span
from runtime.socket_guard import socket_guard


class _Frames:
    """The serialized `data` of the last results sent, by identity: a shared result's
    data is one object for all its subscribers, so it is encoded once."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._texts: OrderedDict[int, tuple[Any, str]] = OrderedDict()

    def text(self, data: Any, encode: Callable[[Any], str | bytes]) -> str:
        key = id(data)
        found = self._texts.get(key)
        if found is not None and found[0] is data:
            return found[1]
        encoded = encode(data)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        self._texts[key] = (data, text)
        if len(self._texts) > self.size:
            self._texts.popitem(last=False)
        return text


frames = _Frames()


# The graphql-transport-ws operation being run: set in the operation's own task.
current_operation: contextvars.ContextVar[Operation[Any, Any]] = contextvars.ContextVar("ws_operation")


class Outlet:
    """One socket's outgoing frames, in the order they were given.

    A frame is sent at once when the socket takes it (the ASGI send completes without
    waiting: the common case); while the socket does not (its transport paused, the
    client reading slowly), frames wait in a backlog drained by one task. `push` (the hub's
    direct deliveries) refuses a frame beyond `limit` waiting ones; `send` (the protocol's
    own messages, each awaited by its operation) always queues and waits its turn.
    """

    def __init__(self, send_text: Callable[[str], Coroutine[Any, Any, None]], limit: int) -> None:
        self._send_text = send_text
        self.limit = limit
        self._backlog: deque[tuple[str, asyncio.Future[None] | None]] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def waiting(self) -> int:
        return 0 if self._backlog is None else len(self._backlog)

    def push(self, text: str) -> bool:
        """Send or queue `text`; False when `limit` frames already wait."""
        if self._backlog is not None:
            if len(self._backlog) >= self.limit:
                return False
            self._backlog.append((text, None))
            return True
        self._start(text, None)
        return True

    async def send(self, text: str) -> None:
        """Send `text` after whatever waits, and return once it is sent."""
        if self._backlog is None:
            done = None
            if self._start(text, None):
                return
            # It is in flight in the drainer now: wait for the drainer to have sent it.
            done = asyncio.get_running_loop().create_future()
            assert self._backlog is not None
            self._backlog.appendleft(("", done))  # a marker: resolved once the first is sent
        else:
            done = asyncio.get_running_loop().create_future()
            self._backlog.append((text, done))
        await done

    def _start(self, text: str, done: asyncio.Future[None] | None) -> bool:
        """Send now; True when sent (or the socket is gone), False when it had to wait and
        the drainer carries it on."""
        if self.closed:
            return True
        coro = self._send_text(text)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return True
        except (WebSocketDisconnect, WebSocketDisconnected, RuntimeError, OSError):
            self.closed = True  # the receive loop notices the disconnect and cleans up
            return True
        self._backlog = deque()
        self._drainer = asyncio.get_running_loop().create_task(self._drain(_resumed(coro, waiting_on)))
        return False

    async def _drain(self, first: Awaitable[None]) -> None:
        done: asyncio.Future[None] | None = None
        try:
            await first
            assert self._backlog is not None
            while self._backlog:
                text, done = self._backlog.popleft()
                if text:
                    await self._send_text(text)
                if done is not None and not done.done():
                    done.set_result(None)
                done = None
        except (WebSocketDisconnect, WebSocketDisconnected, RuntimeError, OSError) as exc:
            self.closed = True
            self._fail(done, exc)
        except BaseException as exc:
            self._fail(done, exc)
            raise
        finally:
            self._backlog = None
            self._drainer = None

    def _fail(self, done: asyncio.Future[None] | None, exc: BaseException) -> None:
        error = WebSocketDisconnected() if not isinstance(exc, asyncio.CancelledError) else exc
        waiting = [done] if done is not None else []
        waiting += [d for _, d in self._backlog or () if d is not None]
        for future in waiting:
            if not future.done():
                future.set_exception(error)


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """Carry on, inside a task, a coroutine that was started outside one and suspended
    on `waiting_on` (the future it yielded)."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as exc:
            try:
                waiting_on = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_on = coro.send(sent)
            except StopIteration:
                return


# The limit a 4429 close counts under in parley_rate_limited_total (MAX_SOCKETS_PER_PRINCIPAL).
SOCKETS_LIMIT = "sockets-per-principal"

# Where asgi.py's RequestIdMiddleware leaves the server's ASGI `send` in a WebSocket's scope.
SERVER_SEND = "parley.server_send"


def _sender(send: Callable[[Mapping[str, Any]], Awaitable[None]]) -> Callable[[str], Coroutine[Any, Any, None]]:
    """A text frame straight to the server's `send` (an accepted socket: Starlette's
    WebSocket wrapper and the HTTP middlewares add nothing to it; the server itself refuses
    a frame after the close, which the Outlet takes as the socket gone)."""

    async def send_text(text: str) -> None:
        await send({"type": "websocket.send", "text": text})

    return send_text


class SharedFrames(BaseGraphQLTransportWSHandler[Any, Any]):
    """graphql-transport-ws, sending a shared result's frame text to every subscriber, and
    every frame of the socket through one `Outlet`."""

    @property
    def outlet_limit(self) -> int:
        # As many frames waiting for a socket as events waiting for a subscriber (core/hub.py).
        return settings.subscriber_queue_size

    @property
    def outlet(self) -> Outlet:
        outlet: Outlet | None = self.__dict__.get("_outlet")
        if outlet is None:
            ws = self.websocket.ws  # type: ignore[attr-defined]
            server_send = ws.scope.get(SERVER_SEND)
            send_text = ws.send_text if server_send is None else _sender(server_send)
            outlet = self.__dict__["_outlet"] = Outlet(send_text, self.outlet_limit)
        return outlet

    async def handle(self) -> None:
        with OPEN_SOCKETS.track_inprogress():  # GET /metrics: parley_websockets_open
            await super().handle()

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except TooManySockets as exc:
            RATE_LIMITED.labels(SOCKETS_LIMIT).inc()  # GET /metrics: parley_rate_limited_total
            await self.websocket.close(code=4429, reason=str(exc))
            return
        if self.connection_acknowledged and self.context.socket_holder is not None:
            socket_guard.add(self)  # closed when its credentials stop working

    async def handle_subscribe(self, message: Any) -> None:
        try:
            if self.connection_acknowledged and message["id"] not in self.operations:
                check_document(message["payload"].get("query"))
        except RequestRejected as exc:
            error = {"message": exc.message, "extensions": {"code": exc.code}}
            await self.send_message({"id": message["id"], "type": "error", "payload": [error]})
            return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        socket_guard.discard(self)
        try:
            await super().shutdown()
        finally:
            holder, self.context.socket_holder = self.context.socket_holder, None
            if holder is not None:
                sockets.release(holder)

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        current_operation.set(operation)  # this task's own context: seen by its resolver only
        with (
            ACTIVE_SUBSCRIPTIONS.track_inprogress(),  # GET /metrics: parley_subscriptions_active
            span("GraphQL", kind=SpanKind.SERVER, **{"parley.request_id": request_id_var.get()}) as traced,
        ):
            outcome = "error"
            try:
                await super().run_operation(operation)
                outcome = "ok"
            except asyncio.CancelledError:
                outcome = "stopped"  # the client's `complete`, or the socket closed
                raise
            finally:
                if traced is not None:  # tracing is on (core/tracing.py)
                    prepared = self.schema.prepare(operation.query)  # type: ignore[attr-defined]
                    kind = None if prepared is None else prepared.operation(operation.operation_name)
                    describe_operation(traced, kind and kind.value, operation.operation_name, outcome)

    async def send_message(self, message: Mapping[str, Any]) -> None:  # type: ignore[override]
        payload = message.get("payload") if message.get("type") == "next" else None
        if isinstance(payload, dict) and payload.keys() == {"data"}:
            data = frames.text(payload["data"], self.view.encode_json)
            text = f'{{"id":{json.dumps(message["id"])},"type":"next","payload":{{"data":{data}}}}}'
        else:
            encoded = self.view.encode_json(message)
            text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.outlet.send(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc
