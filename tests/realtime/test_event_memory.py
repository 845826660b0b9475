"""Subscription events keep nothing once delivered: graphql-core 3.3.2's per-event
executor shares a cache with the subscription's executor, keyed by per-event objects that
are never removed; Parley's executor (runtime/execution.py) gives each event its own."""

from __future__ import annotations

from graphql import build_schema, parse

from runtime.execution import Executor


def test_each_event_leaves_the_subscriptions_executor_as_it_was() -> None:
    sdl = build_schema("type Query { a: String } type Event { n: Int child: Event } type Subscription { e: Event }")
    executor = Executor.build(sdl, parse("subscription { e { n child { n child { n } } } }"))
    assert not isinstance(executor, list)
    before = (len(executor._relevant_sub_fields), len(executor.__dict__.get("_row_plans", {})))
    for n in range(50):
        event = executor.build_per_event_executor({"e": {"n": n, "child": {"n": n, "child": {"n": n}}}})
        result = event.execute_operation(False)
        assert result.data == {"e": {"n": n, "child": {"n": n, "child": {"n": n}}}}  # type: ignore[union-attr]
    assert (len(executor._relevant_sub_fields), len(executor.__dict__.get("_row_plans", {}))) == before
