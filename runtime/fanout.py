"""One execution and one serialization per subscription event, shared by the subscribers
who may see the same thing.

A hub event reaches every local subscriber of its channel as one dict. Done naively, each
subscriber builds its own payload from it, graphql-core executes the selection over that
payload, and the transport serializes the result: about 200 µs of CPU per delivery
(bench/conversations.py), so one core tops out near 5k deliveries/s. Here instead:

- `shared(event, key, build)` (and `shared_async`) builds a subscription's payload once
  per event and key, and marks it shareable;
- the executor (`execute_shared`, called by runtime/execution.py) executes a selection over
  a shareable payload once per operation, variables and *audience* — what a principal may
  see: its kind, workspace, role and permissions, and for a contact session the contact —
  and hands the others the same result. Agents of one role share; a contact shares with
  no one but its own other sockets;
- `SharedFrames` (the graphql-transport-ws handler, runtime/websocket.py) serializes a
  result's data once and sends every subscriber the same text, behind its own operation id;
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

Library internals it relies on: graphql-core 3.3.2's execution context (`root_value`,
`operation`, `variable_values.coerced`, `context_value`, `is_awaitable`,
`build_per_event_executor`, `execute_operation(serially)`: the executor of a
subscription, as runtime/execution.py hands it over); strawberry-graphql 0.341.2's
schema `extensions` and their `SchemaExtension.get_results` / `on_stream_result` (and
`MaskErrors.on_stream_result`), to know whether its per-result steps can be skipped;
the handler and operation of runtime/websocket.py.

    >>> event = {"n": 1}
    >>> first = shared(event, "k", lambda: Payload())
    >>> first is shared(event, "k", lambda: Payload())
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from graphql import ExecutionResult, OperationType
from strawberry.extensions import MaskErrors, SchemaExtension

from core.hub import SubscriberTooSlow, Subscription
from runtime.websocket import SharedFrames, current_operation, frames

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
    with contextlib.suppress(AttributeError):  # a scalar payload: nothing to execute, nothing to share
        payload.__dict__[_RESULTS] = {}
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


async def _await_shared(
    task: asyncio.Future[Any], execute: Callable[[], Any], is_awaitable: Callable[[Any], bool]
) -> Any:
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


# The graphql-core executor of the subscription being subscribed: set in the operation's
# own task (runtime/execution.py); its graphql-transport-ws operation is
# runtime/websocket.py's `current_operation`.
subscription_executor: contextvars.ContextVar[Any] = contextvars.ContextVar("subscription_executor")


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
    wanted: Callable[[dict[str, Any]], bool] | None = None,
) -> Subscription:
    """Let the hub deliver `events` straight to this subscriber's socket where it can.

        async with ctx.hub.subscribe(channel) as events:
            async for event in direct(info, events, allowed=can_read, payload=build):
                ...  # only the events the hub handed back: check, build and yield as ever

    `allowed(principal)` is the per-event permission check; `payload(event)` builds the
    shared payload (`shared`); `wanted(event)`, if given, passes over the events this
    subscriber did not ask for (its filter), which the stream must pass over too. Over
    anything but this module's graphql-transport-ws handler, or with extensions that want
    every result, nothing changes."""
    operation = current_operation.get(None)
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
        if wanted is not None and not wanted(event):
            return True
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
