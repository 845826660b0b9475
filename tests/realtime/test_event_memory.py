"""Subscription events keep nothing once delivered (graphql-core's per-event executor
shares a cache with the subscription's: core/graphql_patches.py)."""

from __future__ import annotations

from graphql import build_schema, parse
from graphql.execution.executor import Executor

import schema as _  # noqa: F401 - applies the patches, as the app does


def test_each_event_leaves_the_subscriptions_executor_as_it_was() -> None:
    sdl = build_schema("type Query { a: String } type Event { n: Int child: Event } type Subscription { e: Event }")
    executor = Executor.build(sdl, parse("subscription { e { n child { n child { n } } } }"))
    assert not isinstance(executor, list)
    before = len(executor._relevant_sub_fields)
    for n in range(50):
        event = executor.build_per_event_executor({"e": {"n": n, "child": {"n": n, "child": {"n": n}}}})
        result = event.execute_operation(False)
        assert result.data == {"e": {"n": n, "child": {"n": n, "child": {"n": n}}}}  # type: ignore[union-attr]
    assert len(executor._relevant_sub_fields) == before
