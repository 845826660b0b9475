"""The GraphQL executor: graphql-core's, with a short path for plain leaf fields.

Most of a list page's fields are plain attributes of a row (`name`, `email`, `lastSeenAt`):
Strawberry marks their resolvers `_is_default`, and they take no arguments. graphql-core
still runs each one through the whole field machinery — a response path, a resolve-info
object, argument coercion, an awaitable check and value completion, about 5 µs a field —
which cost a 50-contact page more than its database query (bench/readpath.py). Here such a
field is read and coerced in place; anything else (resolvers, arguments, objects, lists,
`__typename`, and every error, including a null in a non-null field) takes graphql-core's
own path, so results and errors are exactly what graphql-core would produce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLLeafType, GraphQLNonNull, GraphQLObjectType, is_leaf_type
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# (read the attribute, coerce it, may it be null) for a plain leaf field; None otherwise.
_Plan = tuple[Callable[[Any], Any], Callable[[Any], Any], bool] | None
_plans: dict[tuple[GraphQLObjectType, str], _Plan] = {}


def _plan(parent_type: GraphQLObjectType, field_name: str) -> _Plan:
    key = (parent_type, field_name)
    try:
        return _plans[key]
    except KeyError:
        pass
    plan: _Plan = None
    field = parent_type.fields.get(field_name)
    if field is not None and not field.args and getattr(field.resolve, "_is_default", False):
        # Strawberry's plain-field resolver reads the attribute and ignores its other arguments.
        nullable = not isinstance(field.type, GraphQLNonNull)
        leaf = field.type if nullable else field.type.of_type
        if is_leaf_type(leaf):
            assert isinstance(leaf, GraphQLLeafType)
            plan = (field.resolve, leaf.coerce_output_value, nullable)
    _plans[key] = plan
    return plan


class Executor(StrawberryGraphQLCoreExecutionContext):
    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        if self.middleware_manager is not None and self.middleware_manager.middlewares:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        slow: dict[str, Any] = {}
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            plan = None if node.arguments else _plan(parent_type, node.name.value)
            if plan is not None:
                resolve, coerce, nullable = plan
                try:
                    value = resolve(source_value)
                    if value is None:
                        if nullable:
                            results[response_name] = None
                            continue
                    else:
                        coerced = coerce(value)
                        if coerced is not None and coerced is not Undefined:
                            results[response_name] = coerced
                            continue
                except Exception:  # noqa: S110 — graphql-core's path below reports it
                    pass
            slow[response_name] = field_details_list
            results[response_name] = None  # holds the field's place in the response
        if not slow:
            return results
        # The rest in graphql-core's own way (errors, null propagation, awaitables).
        rest = super().execute_fields(parent_type, source_value, path, slow, position_context)  # type: ignore[arg-type]
        if self.is_awaitable(rest):

            async def merged() -> dict[str, Any]:
                return _fill(results, slow, await rest)

            return merged()
        return _fill(results, slow, rest)


def _fill(results: dict[str, Any], slow: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    for name in slow:
        if name in rest:
            results[name] = rest[name]
        else:
            del results[name]
    return results
