"""Who may see an object of a type, checked wherever the type is reached.

A type that carries personal data declares its guard once, on the type:

    @guard(lambda ctx, note: ctx.lacks(Permission.CONTACTS_READ))
    @strawberry.type
    class ContactNote(relay.Node): ...

`install(schema)` makes each guarded GraphQL type's `is_type_of` ask its guard. graphql-core
asks `is_type_of` once per object it completes, and so does runtime/execution.py's short path
(with the request's context), whichever field reached the object: a root field, a nested
field (`conversations { contact }`), a mutation's payload, a subscription's event or
`node(id:)`. So a new field returning a Contact is checked without anyone remembering to,
at the cost of one call per object, not one per field.

A guard returns None to let the caller see the object, or the message of the refusal: the
field that reached the object is then null, with a FORBIDDEN error carrying that message
at its path (the rest of the response is unaffected).

Library internals it relies on: graphql-core 3.3.2's `GraphQLObjectType.is_type_of`
(replaced on the built schema's types; called with the value and the resolve info) and
strawberry-graphql 0.341.2's `strawberry-definition` extension of a GraphQL type, whose
`origin` is the decorated class. runtime/execution.py's short path calls `is_type_of`
the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from graphql import GraphQLObjectType, GraphQLSchema

from core.errors import forbidden

# (the request's context, the object) -> None when it may be seen, else why not.
Guard = Callable[[Any, Any], str | None]
T = TypeVar("T", bound=type)

_GUARD = "_parley_guard"


def guard(check: Guard) -> Callable[[T], T]:
    """Declares the type's guard (put it above `@strawberry.type`)."""

    def mark(cls: T) -> T:
        setattr(cls, _GUARD, check)
        return cls

    return mark


def guarded_types(schema: GraphQLSchema) -> dict[str, Guard]:
    """GraphQL type name -> its guard, for every guarded type of the schema."""
    found = {}
    for name, t in schema.type_map.items():
        origin = (
            getattr(t.extensions.get("strawberry-definition"), "origin", None)
            if isinstance(t, GraphQLObjectType)
            else None
        )
        check = origin.__dict__.get(_GUARD) if isinstance(origin, type) else None
        if check is not None:
            found[name] = check
    return found


def install(schema: GraphQLSchema) -> None:
    for name, check in guarded_types(schema).items():
        object_type = schema.type_map[name]
        assert isinstance(object_type, GraphQLObjectType)
        object_type.is_type_of = _checked(object_type.is_type_of, check)


def _checked(is_type_of: Callable[[Any, Any], Any] | None, check: Guard) -> Callable[[Any, Any], bool]:
    def checked(value: Any, info: Any) -> bool:
        if is_type_of is not None and not is_type_of(value, info):
            return False
        refusal = check(info.context, value)
        if refusal is not None:
            raise forbidden(refusal)
        return True

    return checked
