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
  sends every subscriber the same text, behind its own operation id.

A result with errors is never handed to another subscriber: each executes on its own, and
its errors are formatted and masked for it as before.

    >>> event = {"n": 1}
    >>> first = shared(event, "k", lambda: Payload())
    >>> first is shared(event, "k", lambda: Payload())
    True
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, TypeVar

from graphql import ExecutionResult, OperationType
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler

T = TypeVar("T")

# Where an event keeps the payloads built from it, and a payload the results executed on it.
_PAYLOADS = "\x00payloads"
_RESULTS = "_fanout_results"


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
    key = (id(executor.operation), repr(sorted(executor.variable_values.coerced.items())), audience(executor.context_value))
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


class SharedFrames(BaseGraphQLTransportWSHandler[Any, Any]):
    """graphql-transport-ws, sending a shared result's frame text to every subscriber."""

    async def send_message(self, message: Mapping[str, Any]) -> None:  # type: ignore[override]
        payload = message.get("payload") if message.get("type") == "next" else None
        ws = getattr(self.websocket, "ws", None)
        if not isinstance(payload, dict) or payload.keys() != {"data"} or ws is None:
            await super().send_message(message)  # type: ignore[arg-type]
            return
        data = frames.text(payload["data"], self.view.encode_json)
        text = f'{{"id":{json.dumps(message["id"])},"type":"next","payload":{{"data":{data}}}}}'
        try:
            await ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc
