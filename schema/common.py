"""Shared API surface: the Node interface, Relay connections, userErrors, scalars and the
helper every mutation uses to turn `UserFailure` into `userErrors`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import strawberry
from strawberry import relay
from strawberry.scalars import JSON
from strawberry.types.nodes import SelectedField
from strawberry.types.unset import UNSET

from core.errors import Code, UserFailure
from resolvers.pagination import Page

T = TypeVar("T")
P = TypeVar("P")

__all__ = [
    "JSON",
    "Connection",
    "ContactIdInput",
    "DeletePayload",
    "UserError",
    "UserErrorCode",
    "build",
    "mutate",
    "provided",
    "to_connection",
]


def build(cls: type[T], values: dict[str, Any]) -> T:
    """`cls(**values)` for a Strawberry type, without running its dataclass `__init__`: a
    list page builds one object per row, and the generated `__init__` of a 25-field type
    costs ~3 µs against ~0.5 µs here. `values` must hold exactly the type's init fields
    (each caller's test checks it: `tests/api/test_rows.py`)."""
    obj = object.__new__(cls)
    obj.__dict__ = values
    return obj


# Every code Parley answers with, in `userErrors` and in errors' `extensions.code` (except
# INTERNAL, a masked unexpected error). docs/clients.md lists what each means.
UserErrorCode = strawberry.enum(
    Code, name="UserErrorCode", description="What went wrong, stably: switch on it, show `message`."
)


@strawberry.type
class UserError:
    """An expected failure the user can fix: which input field, a stable code, a message."""

    field: list[str] | None
    code: UserErrorCode
    message: str


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _page: strawberry.Private[Page[Any] | None] = None

    @strawberry.field(description="Rows matching, across all pages (one COUNT query).")
    async def total_count(self) -> int:
        return await self._page.count() if self._page is not None else len(self.edges)


class _PageEdge:
    """An Edge whose cursor is encoded only if the query asks for it (Edge has no
    is_type_of: GraphQL reads its fields by name)."""

    __slots__ = ("node", "_cursors", "_index")

    def __init__(self, node: Any, cursors: Sequence[str], index: int) -> None:
        self.node = node
        self._cursors = cursors
        self._index = index

    @property
    def cursor(self) -> str:
        return self._cursors[self._index]


def to_connection(page: Page[Any], convert: Callable[[Any], T]) -> Connection[T]:
    cursors = page.cursors
    edges: list[Any] = [_PageEdge(convert(item), cursors, i) for i, item in enumerate(page.items)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        _page=page,
    )


async def mutate(payload: Callable[..., P], work: Awaitable[Any], build: Callable[[Any], dict[str, Any]]) -> P:
    """Run a resolver; its UserFailure becomes `userErrors`, its result the payload."""
    try:
        result = await work
    except UserFailure as failure:
        return payload(user_errors=[UserError(field=e.field, code=e.code, message=e.message) for e in failure.errors])
    return payload(**build(result), user_errors=[])


def provided(input_obj: object, fields: Iterable[str]) -> dict[str, Any]:
    """The fields of an input the client actually sent (null included, UNSET left out)."""
    return {f: getattr(input_obj, f) for f in fields if getattr(input_obj, f) is not UNSET}


def selected_names(info: Any, *path: str) -> set[str]:
    """Names of the fields selected under `path` of the current field, through fragments:
    `selected_names(info, "edges", "node")` on a connection field."""
    level = [child for f in _fields(info.selected_fields) for child in _fields(f.selections)]
    for name in path:
        level = [child for f in level if f.name == name for child in _fields(f.selections)]
    return {f.name for f in level}


def _fields(selections: list[Any]) -> list[Any]:
    """The fields of selections, through fragments (a module function: a recursive closure
    is a reference cycle, left for the garbage collector on every request)."""
    found = []
    for s in selections:
        if isinstance(s, SelectedField):
            found.append(s)
        else:  # inline fragment or fragment spread
            found.extend(_fields(s.selections))
    return found


def gid(value: relay.GlobalID | None) -> str | None:
    """An optional global id argument as the string resolvers take."""
    return str(value) if value is not None else None


def node_id(type_name: str, pk: int) -> relay.GlobalID:
    return relay.GlobalID(type_name, str(pk))


# Shared by two areas' mutations (contacts and attribute definitions), whose schema names
# they keep.
@strawberry.input
class ContactIdInput:
    id: relay.GlobalID


@strawberry.type
class DeletePayload:
    deleted_id: relay.GlobalID | None = None
    user_errors: list[UserError]
