"""Bulk writes of Tortoise model instances in a few statements, on SQLite and PostgreSQL:
values are encoded by the models' own fields (so they read back as Tortoise wrote them),
and batches stay under both databases' parameter limits.

    rows = await insert_returning(Contact, contacts, returning=["id", "external_id"])
    await update_many(Contact, contacts, ["name", "attributes", "updated_at"])

Inside a transaction they use its connection, like every query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import tortoise
from tortoise.models import Model

from core.db import SqlBuilder

M = TypeVar("M", bound=Model)

# Both databases allow 32,766 or more parameters per statement; stay well below.
MAX_PARAMS = 30_000


def columns_of(model: type[Model]) -> list[str]:
    """Every column but the primary key: data fields and foreign-key ids."""
    meta = model._meta
    names = [*sorted(f"{name}_id" for name in meta.fk_fields), *meta.fields_db_projection]
    return [name for name in dict.fromkeys(names) if name != meta.pk_attr]


def _value(obj: Model, column: str) -> Any:
    field = obj._meta.fields_map.get(column)
    value = getattr(obj, column)
    if field is None or column.endswith("_id") and column[:-3] in obj._meta.fk_fields:
        return value
    return field.to_db_value(value, obj)


def _cast(model: type[Model], column: str, postgres: bool) -> str:
    """PostgreSQL needs the type of a parameter it cannot infer (VALUES in a CTE)."""
    if not postgres:
        return ""
    field = model._meta.fields_map.get(column)
    if field is None or column.endswith("_id") and column[:-3] in model._meta.fk_fields:
        return "::bigint"
    return f"::{field.get_for_dialect('postgres', 'SQL_TYPE')}"


async def insert_returning(model: type[M], objs: Sequence[M], returning: list[str]) -> list[dict[str, Any]]:
    """INSERT the instances (primary keys left to the database), RETURNING `returning`
    of every row. Rows come back in no promised order: return a column that tells them
    apart (an id, a unique key)."""
    if not objs:
        return []
    columns = columns_of(model)
    table = model._meta.db_table
    per_statement = max(1, MAX_PARAMS // len(columns))
    found: list[dict[str, Any]] = []
    for start in range(0, len(objs), per_statement):
        q = SqlBuilder()
        values = ", ".join(
            "(" + ", ".join(q.param(_value(obj, c)) for c in columns) + ")"
            for obj in objs[start : start + per_statement]
        )
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} RETURNING {', '.join(returning)}"  # noqa: S608
        # execute_query_dict fetches: asyncpg's execute_query drops an INSERT's rows.
        found.extend(await tortoise.connections.get("default").execute_query_dict(sql, q.params))
    return found


async def update_many(model: type[M], objs: Sequence[M], fields: list[str]) -> int:
    """UPDATE `fields` of each instance to its current value, by primary key: one
    statement per batch (WITH v AS (VALUES …) UPDATE … FROM v). Returns the rows sent."""
    if not objs or not fields:
        return 0
    table = model._meta.db_table
    pk = model._meta.pk_attr
    columns = [pk, *fields]
    per_statement = max(1, MAX_PARAMS // len(columns))
    changed = 0
    for start in range(0, len(objs), per_statement):
        q = SqlBuilder()
        rows = []
        for obj in objs[start : start + per_statement]:
            rows.append(
                "(" + ", ".join(f"{q.param(_value(obj, c))}{_cast(model, c, q.postgres)}" for c in columns) + ")"
            )
        assignments = ", ".join(f"{c} = v.{c}" for c in fields)
        sql = (
            f"WITH v({', '.join(columns)}) AS (VALUES {', '.join(rows)}) "  # noqa: S608
            f"UPDATE {table} SET {assignments} FROM v WHERE {table}.{pk} = v.{pk}"
        )
        await tortoise.connections.get("default").execute_query(sql, q.params)
        changed += len(rows)
    return changed
