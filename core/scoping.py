"""Workspace scoping, in one place.

Every resolver reaches workspace data through `Scope`: `scope.all(Model)` and
`scope.get(Model, pk)` filter by the caller's workspace, and global ids resolve only to
rows of that workspace. A row of another workspace is indistinguishable from a row that
does not exist.

    contact = await ctx.scope.get(Contact, 42)        # None if 42 is another tenant's
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

from strawberry.relay import GlobalID
from tortoise.models import Model
from tortoise.queryset import QuerySet

from core.db import dialect

M = TypeVar("M", bound=Model)


# No row has an id outside a 64-bit integer: SQLite and asyncpg refuse such a parameter
# with an error of their own (an INTERNAL error, found by tests/security/test_fuzz.py).
MAX_ID = 2**63 - 1


def decode_global_id(value: str | GlobalID) -> tuple[str, int] | None:
    """('Contact', 42) for a well-formed global id, else None."""
    try:
        gid = value if isinstance(value, GlobalID) else GlobalID.from_id(value)
        pk = int(gid.node_id)
    except (ValueError, TypeError):
        return None
    return (gid.type_name, pk) if 0 < pk <= MAX_ID else None


def fits_pk(model: type[Model], pk: int) -> bool:
    """Whether `pk` can be an id of `model`: an id beyond its column's integer (32 bits for
    most tables) finds nothing, rather than failing the query on PostgreSQL."""
    return 0 < pk <= int(model._meta.pk.constraints.get("le", MAX_ID))


def encode_global_id(type_name: str, pk: int) -> str:
    return str(GlobalID(type_name, str(pk)))


@dataclass(frozen=True)
class _RowPlan:
    sql: str
    postgres: bool
    convert: Callable[[list[dict[str, Any]]], None] | None  # the rows' conversions, in place


# Per model, dialect and columns (every column, or those a selection reads): bounded,
# the oldest goes first.
_row_plans: dict[tuple[type[Model], str, tuple[str, ...]], _RowPlan] = {}
ROW_PLANS_MAX = 1_000
_page_plans: dict[tuple[type[Model], str, tuple[str, ...], tuple[str, ...]], _RowPlan | None] = {}
PAGE_PLANS_MAX = 1_000


def _scope_column(model: type[Model]) -> str:
    """The column that holds a row's workspace (a workspace's own id)."""
    return "id" if model.__name__ == "Workspace" else "workspace_id"


def _selection(model: type[Model], names: Iterable[str]) -> tuple[str, list[tuple[str, Callable[[Any], Any]]]]:
    """The SELECT list of these fields, and the conversions Tortoise's `.values()` applies
    to them (none for the columns the driver returns as Python already)."""
    meta = model._meta
    native = {name for _, name, _ in meta.db_native_fields}
    projection = meta.fields_db_projection
    names = list(names)
    columns = ", ".join(f'"{projection[n]}"' if projection[n] == n else f'"{projection[n]}" AS "{n}"' for n in names)
    return columns, [(n, meta.fields_map[n].to_python_value) for n in names if n not in native]


def _row_plan(model: type[Model], sql_dialect: str, names: tuple[str, ...]) -> _RowPlan:
    """`rows_by_id`'s and `columns_by_id`'s SELECT of these columns by id."""
    postgres = sql_dialect == "postgres"
    columns, converters = _selection(model, names)
    scoped_by = _scope_column(model)
    if postgres:
        where = f'"{scoped_by}" = $1 AND "id" = ANY($2::bigint[])'
    else:
        where = f'"{scoped_by}" = ? AND "id" IN (SELECT value FROM json_each(?))'  # noqa: S608
    sql = f'SELECT {columns} FROM "{model._meta.db_table}" WHERE {where}'  # noqa: S608
    while len(_row_plans) >= ROW_PLANS_MAX:
        del _row_plans[next(iter(_row_plans))]
    plan = _row_plans[(model, sql_dialect, names)] = _RowPlan(sql, postgres, _rows_converter(converters))
    return plan


def _page_plan(model: type[Model], sql_dialect: str, names: tuple[str, ...], sort: tuple[str, ...]) -> _RowPlan | None:
    """`first_rows`'s SELECT … ORDER BY … LIMIT, or None when a name is not a column;
    built on a miss of `_page_plans` and kept there."""
    projection = model._meta.fields_db_projection
    plan = None
    if all(n in projection for n in names) and all(c.lstrip("-") in projection for c in sort):
        postgres = sql_dialect == "postgres"
        columns, converters = _selection(model, names)
        order = ", ".join(f'"{projection[c.lstrip("-")]}" {"DESC" if c.startswith("-") else "ASC"}' for c in sort)
        where, limit = ("$1", "$2") if postgres else ("?", "?")
        sql = (
            f'SELECT {columns} FROM "{model._meta.db_table}" WHERE "{_scope_column(model)}" = {where} '  # noqa: S608
            f"ORDER BY {order} LIMIT {limit}"
        )
        plan = _RowPlan(sql, postgres, _rows_converter(converters))
    while len(_page_plans) >= PAGE_PLANS_MAX:
        del _page_plans[next(iter(_page_plans))]
    _page_plans[(model, sql_dialect, names, sort)] = plan
    return plan


class _ScopedQuerySet(QuerySet[M]):
    """What `Scope.all` returns: a queryset that knows it is exactly "this workspace's
    rows". Every refinement (filter, order, limit…) is a clone, which does not carry the
    mark, so only the unrefined queryset has it."""

    __slots__ = ("unrefined_workspace_id",)
    unrefined_workspace_id: int


def unrefined_workspace(query: QuerySet[Any]) -> int | None:
    """The workspace of a `Scope.all(...)` queryset not refined since; None for any other."""
    return getattr(query, "unrefined_workspace_id", None)


async def first_rows(
    query: QuerySet[Any], names: tuple[str, ...], sort: tuple[str, ...], limit: int
) -> list[dict[str, Any]] | None:
    """`query.order_by(*sort).limit(limit).values(*names)` for an unrefined `Scope.all`
    queryset, by SQL built once per shape rather than by the query builder per request
    (the first page of a list is the request a client makes most); None for any other
    queryset, or names that are not plain columns."""
    workspace_id = unrefined_workspace(query)
    if workspace_id is None:
        return None
    model = query.model
    sql_dialect = dialect()
    key = (model, sql_dialect, names, sort)
    plan = _page_plans[key] if key in _page_plans else _page_plan(model, sql_dialect, names, sort)
    if plan is None:
        return None
    rows: list[dict[str, Any]] = await model._meta.db.execute_query_dict(plan.sql, [workspace_id, limit])
    if plan.convert is not None:
        plan.convert(rows)
    return rows


def _rows_converter(
    converters: list[tuple[str, Callable[[Any], Any]]],
) -> Callable[[list[dict[str, Any]]], None] | None:
    """One function that converts the rows' columns in place, generated per plan: no loop
    over the columns per row, and a column's converter is called for its non-null values
    only when it answers None for None (every Tortoise field does: checked here). About
    370 values an inbox page, half of them nulls."""
    if not converters:
        return None
    names: dict[str, Any] = {}
    lines = ["def convert(rows):", "    for row in rows:"]
    for i, (name, convert) in enumerate(converters):
        names[f"c{i}"] = convert
        if convert(None) is None:
            lines += [f"        v = row[{name!r}]", f"        if v is not None: row[{name!r}] = c{i}(v)"]
        else:
            lines.append(f"        row[{name!r}] = c{i}(row[{name!r}])")
    exec(compile("\n".join(lines), "<convert rows>", "exec"), names)  # noqa: S102 — our own source, from the models
    return names["convert"]  # type: ignore[no-any-return]


class Scope:
    def __init__(self, workspace_id: int) -> None:
        self.workspace_id = workspace_id

    def all(self, model: type[M]) -> QuerySet[M]:
        query: _ScopedQuerySet[M] = _ScopedQuerySet(model).filter(**{_scope_column(model): self.workspace_id})  # type: ignore[assignment]
        query.unrefined_workspace_id = self.workspace_id
        return query

    async def get(self, model: type[M], pk: int | None) -> M | None:
        if pk is None or not fits_pk(model, pk):
            return None
        return await self.all(model).get_or_none(id=pk)

    async def get_many(self, model: type[M], pks: list[int]) -> dict[int, M]:
        rows = await self.all(model).filter(id__in=[pk for pk in pks if fits_pk(model, pk)])
        return {row.pk: row for row in rows}

    async def rows_by_id(self, model: type[Model], pks: list[int]) -> dict[int, SimpleNamespace]:
        """Like get_many, as plain rows: every column as an attribute (enums, JSON and
        datetimes converted as on a model), with no model object built. For reading only.
        The SQL is built once per model (the ids are one parameter), not by the query
        builder each time: a related load is a third of an inbox page's queries."""
        rows = await self._by_id(
            model, [pk for pk in pks if fits_pk(model, pk)], tuple(model._meta.fields_db_projection)
        )
        return {row["id"]: SimpleNamespace(**row) for row in rows}

    async def columns_by_id(
        self, model: type[Model], pks: list[int], names: tuple[str, ...]
    ) -> dict[int, dict[str, Any]]:
        """`rows_by_id` as dicts of these columns only (the id among them): for a
        selection that reads a few of a wide row's columns, the rest are neither read
        nor converted."""
        return {row["id"]: row for row in await self._by_id(model, pks, names)}

    async def _by_id(self, model: type[Model], pks: list[int], names: tuple[str, ...]) -> list[dict[str, Any]]:
        sql_dialect = dialect()
        plan = _row_plans.get((model, sql_dialect, names)) or _row_plan(model, sql_dialect, names)
        params = [self.workspace_id, pks if plan.postgres else json.dumps(pks)]
        rows = await model._meta.db.execute_query_dict(plan.sql, params)
        if plan.convert is not None:
            plan.convert(rows)
        return rows

    async def by_global_id(self, value: str | GlobalID, type_name: str, model: type[M]) -> M | None:
        decoded = decode_global_id(value)
        if decoded is None or decoded[0] != type_name:
            return None
        return await self.get(model, decoded[1])

    def owns(self, row: Any) -> bool:
        return getattr(row, "workspace_id", None) == self.workspace_id
