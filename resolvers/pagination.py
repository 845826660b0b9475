"""Keyset (cursor) pagination over a Tortoise queryset, for every connection.

    page = await paginate(scope.all(Contact), Order(("last_seen_at", "id"), descending=True),
                          first=50, after=cursor)

A cursor is the sort key of its row, so pages stay stable while rows are added, and the
database walks an index instead of an OFFSET.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from core.config import settings
from core.errors import Code, PublicError
from core.scoping import first_rows

T = TypeVar("T")


@dataclass(frozen=True)
class Order:
    """A unique sort key: its last column must be unique (the primary key)."""

    columns: tuple[str, ...]
    descending: bool = True


class Cursors(Sequence[str]):
    """A page's cursors, each encoded when it is read: most clients read only pageInfo's
    two, and encoding all fifty cost more than the rest of the connection."""

    __slots__ = ("_keys",)

    def __init__(self, keys: list[list[Any]]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [encode_cursor(k) for k in self._keys[index]]
        return encode_cursor(self._keys[index])


@dataclass
class Page(Generic[T]):
    items: list[T]
    cursors: Sequence[str]
    has_next_page: bool
    has_previous_page: bool
    # Counts the unpaginated rows, for a totalCount asked for separately.
    count: Callable[[], Awaitable[int]]


def encode_cursor(values: list[Any]) -> str:
    """The cursor of a row whose sort key is `values`: what its connection's edges carry,
    and what an event about the row carries so a client can catch up with `after:`."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, order: Order) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(values, list) or len(values) != len(order.columns):
            raise ValueError
        return [
            datetime.fromisoformat(v) if isinstance(v, str) and col.endswith("_at") else v
            for col, v in zip(order.columns, values, strict=True)
        ]
    except (ValueError, TypeError, UnicodeDecodeError):
        raise PublicError("Invalid cursor.", Code.INVALID) from None


def _after(order: Order, values: list[Any], forward: bool) -> Q:
    """Rows strictly after `values` in the walking direction."""
    op = "lt" if order.descending == forward else "gt"
    clauses = []
    for i, col in enumerate(order.columns):
        eq = {c: v for c, v in zip(order.columns[:i], values[:i], strict=True)}
        clauses.append(Q(**eq, **{f"{col}__{op}": values[i]}))
    result = clauses[0]
    for clause in clauses[1:]:
        result |= clause
    if len(order.columns) > 1 and values[0] is not None:
        # Implied by the OR, but a bound the database can start its index walk at: with the
        # OR alone PostgreSQL walks from the first row and filters its way to the cursor
        # (74 ms for a page 100,000 rows deep into a segment's members; 0.07 ms with it).
        result &= Q(**{f"{order.columns[0]}__{op}e": values[0]})
    return result


def page_size(first: int | None, last: int | None, default: int) -> int:
    if first is not None and last is not None:
        raise PublicError("Pass either first or last, not both.", Code.INVALID)
    size = first if first is not None else last if last is not None else default
    if size < 0:
        raise PublicError("first and last must not be negative.", Code.INVALID)
    if size > settings.max_page_size:
        raise PublicError(f"first and last may be at most {settings.max_page_size}.", Code.INVALID)
    return size


async def paginate(
    query: QuerySet[Any],
    order: Order,
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    default_size: int = 20,
    values: tuple[str, ...] | None = None,
) -> Page[Any]:
    """With `values`, the page holds dicts of those columns (no model objects: cheaper,
    for lists that need a few columns); the order's columns are always among them."""
    size = page_size(first, last, default_size)
    forward = last is None
    sort = [f"-{c}" if order.descending == forward else c for c in order.columns]
    walk = query
    if after:
        walk = walk.filter(_after(order, decode_cursor(after, order), forward=True))
    if before:
        walk = walk.filter(_after(order, decode_cursor(before, order), forward=False))
    rows: list[Any] | None = None
    if values and not after and not before:
        rows = await first_rows(query, tuple(dict.fromkeys((*values, *order.columns))), tuple(sort), size + 1)
    if rows is None:
        ordered = walk.order_by(*sort).limit(size + 1)
        rows = list(await (ordered.values(*{*values, *order.columns}) if values else ordered))
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    keys = (
        [[r[c] for c in order.columns] for r in rows]
        if values
        else [[getattr(r, c) for c in order.columns] for r in rows]
    )
    return Page(
        items=rows,
        cursors=Cursors(keys),
        has_next_page=more if forward else bool(before),
        has_previous_page=bool(after) if forward else more,
        count=query.count,
    )
