"""One execution and one serialization per subscription event, shared by the subscribers
who may see the same thing.

A hub event reaches every local subscriber of its channel as one dict. Done naively, each
subscriber builds its own payload from it, graphql-core executes the selection over that
payload, and the transport serializes the result: about 200 µs of CPU per delivery
(bench/conversations.py), so one core tops out near 5k deliveries/s. Here instead:

- `shared(event, key, build)` (and `shared_async`) builds a subscription's payload once
  per event and key, and marks it shareable;
- the executor (`execute_shared`, called by core/execution.py) executes a selection over
  a shareable payload once per operation, variables and *audience* — what a principal may
  see: its kind, workspace, role and permissions, and for a contact session the contact —
  and hands the others the same result. Agents of one role share; a contact shares with
  no one but its own other sockets;
- `SharedFrames` (the graphql-transport-ws handler) serializes a result's data once and
  sends every subscriber the same text, behind its own operation id;
- `direct(info, events, ...)` lets the hub deliver a subscription's events itself, as it
  reads them: for each subscriber it checks the principal (as fresh as the resolver's own
  check), takes the shared result and writes the frame to the socket's `Outlet`, with no
  task, async generator or Strawberry stream step per subscriber and event. Whatever it
  cannot do at once — a principal due for its re-check or no longer allowed, a payload or
  selection that needs I/O, a result with errors, an operation whose extensions want every
  result — it hands back to the subscription's own stream, which does it as before, in
  order. An `Outlet` sends a socket's frames in order, eagerly while the socket takes
  them, and keeps at most `limit` of them while it doesn't: a subscriber further behind is
  dropped (the hub's SubscriberTooSlow), so a slow client neither grows memory nor holds
  up the others.

A result with errors is never handed to another subscriber: each executes on its own, and
its errors are formatted and masked for it as before.

    >>> event = {"n": 1}
    >>> first = shared(event, "k", lambda: Payload())
    >>> first is shared(event, "k", lambda: Payload())
    True
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import types
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable, Mapping
from typing import Any, TypeVar

from graphql import ExecutionResult, OperationType
from starlette.websockets import WebSocketDisconnect
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation

from core.config import settings
from core.hub import SubscriberTooSlow, Subscription
from core.limits import RequestRejected, TooManySockets, check_document, sockets
from core.socket_guard import socket_guard

log = logging.getLogger("parley.fanout")

T = TypeVar("T")

# Where an event keeps the payloads built from it, and a payload the results executed on it.
_PAYLOADS = "\x00payloads"
_RESULTS = "_fanout_results"
# Among a payload's results: the frame text after `"data":` of each, once serialized.
_TEXTS = "\x00texts"


class Payload:
    """A stand-in payload for the doctest."""


def _mark(payload: T) -> T:
    try:
        payload.__dict__[_RESULTS] = {}
    except AttributeError:  # a scalar payload: nothing to execute, nothing to share
        pass
    return payload


def shared(event: dict[str, Any], key: Hashable, build: Callable[[], T]) -> T:
    """The payload built from `event` under `key`, built by the first subscriber to ask."""
    payloads = event.setdefault(_PAYLOADS, {})
    try:
        return payloads[key]  # type: ignore[no-any-return]
    except KeyError:
        payload = payloads[key] = _mark(build())
        return payload


async def shared_async(event: dict[str, Any], key: Hashable, build: Callable[[], Awaitable[T]]) -> T:
    """`shared` for a payload that needs a query: one query per event, not per subscriber.
    A subscriber cancelled while waiting does not cancel the others' build."""
    payloads = event.setdefault(_PAYLOADS, {})
    task = payloads.get(key)
    if task is None:

        async def built() -> T:
            return _mark(await build())

        task = payloads[key] = asyncio.ensure_future(built())
    return await asyncio.shield(task)  # type: ignore[no-any-return]


def audience(context: Any) -> Hashable:
    """What decides what a principal sees of a payload (not who it is, for agents and keys)."""
    principal = getattr(context, "principal", None)
    if principal is None:
        return None
    own = (principal.contact_id, principal.channel_id) if principal.contact_id is not None else ()
    return (principal.kind, principal.workspace_id, principal.role, principal.permissions, *own)


def execute_shared(executor: Any, serially: bool | None, execute: Callable[[bool | None], Any]) -> Any:
    """`execute(serially)`, or the result another subscriber's execution of the same
    operation, variables and audience over the same shareable payload produced."""
    results = getattr(executor.root_value, _RESULTS, None)
    if results is None or executor.operation.operation is not OperationType.SUBSCRIPTION:
        return execute(serially)
    key = (*_operation_key(executor), audience(executor.context_value))
    found = results.get(key)
    if found is not None and found[0] is executor.operation:
        outcome = found[1]
        if isinstance(outcome, ExecutionResult):
            return outcome
        return _await_shared(outcome, lambda: execute(serially), executor.is_awaitable)
    result = execute(serially)
    if executor.is_awaitable(result):
        task = asyncio.ensure_future(result)
        results[key] = (executor.operation, task)
        task.add_done_callback(lambda done: _forget_failed(results, key, done))
        return _shielded(task)
    if not result.errors:
        results[key] = (executor.operation, result)
    return result


def _operation_key(executor: Any) -> tuple[int, str]:
    return id(executor.operation), repr(sorted(executor.variable_values.coerced.items()))


def _forget_failed(results: dict[Any, Any], key: Any, task: asyncio.Future[Any]) -> None:
    if task.cancelled() or task.exception() is not None or task.result().errors:
        results.pop(key, None)


async def _shielded(task: asyncio.Future[T]) -> T:
    # One subscriber leaving must not cancel the execution the others wait for.
    return await asyncio.shield(task)


async def _await_shared(task: asyncio.Future[Any], execute: Callable[[], Any], is_awaitable: Callable[[Any], bool]) -> Any:
    try:
        result = await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # this subscriber is being cancelled
        result = None
    except Exception:
        result = None
    if result is None or result.errors:
        # Another subscriber's execution failed: this one executes for itself, and gets
        # its own errors, masked for it.
        own = execute()
        return await own if is_awaitable(own) else own
    return result


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


# The graphql-core executor of the subscription being subscribed, and the
# graphql-transport-ws operation it runs for: set in the operation's own task.
subscription_executor: contextvars.ContextVar[Any] = contextvars.ContextVar("subscription_executor")
_operation: contextvars.ContextVar[Operation[Any, Any]] = contextvars.ContextVar("ws_operation")


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


# Where asgi.py leaves the server's ASGI `send` in a WebSocket's scope.
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

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except TooManySockets as exc:
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
        _operation.set(operation)  # this task's own context: seen by its resolver only
        await super().run_operation(operation)

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


_plain_streams: dict[int, bool] = {}


def _streams_plainly(schema: Any) -> bool:
    """Whether Strawberry's per-result steps leave a result without errors as it is: no
    extension adds results or handles streamed results (masking errors aside)."""
    found = _plain_streams.get(id(schema))
    if found is None:
        found = True
        for extension in getattr(schema, "extensions", ()):
            cls = extension if isinstance(extension, type) else type(extension())
            if cls.get_results is not SchemaExtension.get_results or cls.on_stream_result not in (
                SchemaExtension.on_stream_result,
                MaskErrors.on_stream_result,
            ):
                found = False
        _plain_streams[id(schema)] = found
    return found


def direct(
    info: Any,
    events: Subscription,
    *,
    allowed: Callable[[Any], bool],
    payload: Callable[[dict[str, Any]], Any],
) -> Subscription:
    """Let the hub deliver `events` straight to this subscriber's socket where it can.

        async with ctx.hub.subscribe(channel) as events:
            async for event in direct(info, events, allowed=can_read, payload=build):
                ...  # only the events the hub handed back: check, build and yield as ever

    `allowed(principal)` is the per-event permission check; `payload(event)` builds the
    shared payload (`shared`). Over anything but this module's graphql-transport-ws
    handler, or with extensions that want every result, nothing changes."""
    operation = _operation.get(None)
    executor = subscription_executor.get(None)
    if operation is None or executor is None or not _streams_plainly(info.schema):
        return events
    handler = operation.handler
    assert isinstance(handler, SharedFrames)
    ctx = info.context
    outlet = handler.outlet
    encode = handler.view.encode_json
    operations = handler.operations
    op_id = operation.id
    document = executor.operation
    operation_key = _operation_key(executor)
    prefix = f'{{"id":{json.dumps(op_id)},"type":"next","payload":{{"data":'
    seen: list[Any] = [None, None]  # the principal last seen, and its results' key

    def deliver(event: dict[str, Any]) -> bool:
        if operations.get(op_id) is not operation:
            return True  # completed or unsubscribed: nothing more for it
        principal = ctx.fresh_principal()
        if principal is None or not allowed(principal):
            return False  # the stream re-checks, and says why
        root = payload(event)
        results = getattr(root, _RESULTS, None)
        if results is None:
            return False
        if principal is not seen[0]:
            seen[0], seen[1] = principal, (*operation_key, audience(ctx))
        key = seen[1]
        texts = results.setdefault(_TEXTS, {})
        text = texts.get(key)
        if text is None or text[0] is not document:
            found = results.get(key)
            if found is None or found[0] is not document:
                ctx.reset_loaders()
                result = executor.build_per_event_executor(root).execute_operation(False)
                if executor.is_awaitable(result):
                    return False  # shared as a task now: the stream awaits it
                found = results.get(key)
                if found is None or found[0] is not document:
                    return False  # errors: the stream executes for itself and masks them
            outcome = found[1]
            if not isinstance(outcome, ExecutionResult) or outcome.errors:
                return False
            text = texts[key] = (document, frames.text(outcome.data, encode) + "}}")
        if not outlet.push(prefix + text[1]):
            raise SubscriberTooSlow(events.channel)
        return True

    events.direct = deliver
    return events
