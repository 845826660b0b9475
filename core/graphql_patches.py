"""Work-arounds for the GraphQL library, applied once when the schema is built.

graphql-core 3.3.2 leaks on every subscription event: `Executor.build_per_event_executor`
makes a shallow copy of the subscription's executor, so each event's executor shares its
`_relevant_sub_fields` cache, keyed by `id()` of per-event field lists that are never
removed — about 2.5 KB kept per delivery, for as long as the subscription lives (measured
with bench/conversations.py: 133 MB -> 429 MB over 120k deliveries). Each event gets a
cache of its own here, dropped with its executor. Remove when graphql-core fixes it.
"""

from __future__ import annotations

from typing import Any

from graphql.execution.executor import Executor

_original = Executor.build_per_event_executor


def _per_event_executor(self: Executor, payload: Any) -> Executor:
    executor = _original(self, payload)
    executor._relevant_sub_fields = {}  # type: ignore[attr-defined]
    return executor


def apply() -> None:
    Executor.build_per_event_executor = _per_event_executor  # type: ignore[method-assign]
