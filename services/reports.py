"""The inbox report, computed in the database: conversations created in a range, grouped by
agent (the assignee), team, channel or day (UTC), with counts, ratings, and the median and
90th percentile of first-response and resolution times.

The times are the conversation's own figures (models/conversations.py): seconds in the
channel's business hours when it has them, stamped when the first reply and the latest
resolution happen; a reopened conversation has none until it is resolved again, and a
campaign's conversations (created resolved, by nobody) have none.

Percentiles are nearest-rank (the value at rank ceil(p x n) of the n sorted values), with
the same window-function SQL on SQLite and PostgreSQL; a report is six statements whatever
the number of conversations, and returns one row a group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tortoise import connections

from core.db import SqlBuilder, bind_datetime


class GroupBy(StrEnum):
    AGENT = "agent"
    TEAM = "team"
    CHANNEL = "channel"
    DAY = "day"


@dataclass
class Durations:
    count: int = 0
    median_seconds: int | None = None
    p90_seconds: int | None = None


@dataclass
class ReportRow:
    key: int | str | None  # the agent, team or channel id, or the day as YYYY-MM-DD
    conversations: int = 0
    resolved: int = 0
    ratings: int = 0
    average_rating: float | None = None
    first_response: Durations = field(default_factory=Durations)
    resolution: Durations = field(default_factory=Durations)


def _key(group_by: GroupBy | None, postgres: bool) -> str:
    if group_by is None:
        return "NULL"
    if group_by is GroupBy.DAY:
        return "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')" if postgres else "substr(created_at, 1, 10)"
    return {GroupBy.AGENT: "assignee_id", GroupBy.TEAM: "team_id", GroupBy.CHANNEL: "channel_id"}[group_by]


async def _query(workspace_id: int, start: datetime, end: datetime, group_by: GroupBy | None) -> dict[Any, ReportRow]:
    conn = connections.get("default")
    rows: dict[Any, ReportRow] = {}

    def scope() -> tuple[SqlBuilder, str]:
        q = SqlBuilder()
        where = (
            f"workspace_id = {q.param(workspace_id)} AND created_at >= {q.param(bind_datetime(start))} "
            f"AND created_at < {q.param(bind_datetime(end))}"
        )
        return q, where

    q, where = scope()
    key = _key(group_by, q.postgres)
    # The total (no group_by) is one group: no GROUP BY, and one window over all rows.
    grouped = f" GROUP BY {key}" if group_by is not None else ""
    partition = f"PARTITION BY {key} " if group_by is not None else ""
    sql = (
        f"SELECT {key} AS g, COUNT(*) AS conversations, COUNT(resolved_at) AS resolved, "  # noqa: S608
        "COUNT(rating) AS ratings, AVG(CAST(rating AS FLOAT)) AS average_rating "
        f"FROM conversations WHERE {where}{grouped}"
    )
    for r in await conn.execute_query_dict(sql, q.params):
        rows[r["g"]] = ReportRow(
            key=r["g"],
            conversations=int(r["conversations"]),
            resolved=int(r["resolved"]),
            ratings=int(r["ratings"]),
            average_rating=None if r["average_rating"] is None else round(float(r["average_rating"]), 2),
        )
    for column, attribute in (("first_response_seconds", "first_response"), ("resolution_seconds", "resolution")):
        q, where = scope()
        sql = (
            "WITH ranked AS ("  # noqa: S608
            f"  SELECT {key} AS g, {column} AS v, "
            f"    ROW_NUMBER() OVER ({partition}ORDER BY {column}) AS rn, "
            f"    COUNT(*) OVER ({partition.strip()}) AS n "
            f"  FROM conversations WHERE {where} AND {column} IS NOT NULL) "
            "SELECT g, MAX(n) AS n, "
            "  MAX(CASE WHEN rn = (n * 50 + 99) / 100 THEN v END) AS median, "
            "  MAX(CASE WHEN rn = (n * 90 + 99) / 100 THEN v END) AS p90 "
            "FROM ranked GROUP BY g"
        )
        for r in await conn.execute_query_dict(sql, q.params):
            row = rows.setdefault(r["g"], ReportRow(key=r["g"]))
            setattr(row, attribute, Durations(int(r["n"]), int(r["median"]), int(r["p90"])))
    return rows


async def inbox_report(
    workspace_id: int, start: datetime, end: datetime, group_by: GroupBy
) -> tuple[list[ReportRow], ReportRow]:
    """(one row a group, ordered by key with the unassigned group last; the total)."""
    groups = await _query(workspace_id, start, end, group_by)
    total = (await _query(workspace_id, start, end, None)).get(None, ReportRow(key=None))
    ordered = sorted(
        groups.values(), key=lambda r: (r.key is None, str(r.key) if group_by is GroupBy.DAY else r.key or 0)
    )
    return ordered, total
