"""The inbox report (`inboxReport`): owners and admins, or an API key with reports:read.
The range is checked here (aware times, `from` before `to`, at most MAX_DAYS); the figures
are computed in the database (services/reports.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.context import Context
from core.errors import Code, PublicError
from core.permissions import Permission
from services.reports import Durations, GroupBy, ReportRow, inbox_report

MAX_DAYS = 366

__all__ = ["MAX_DAYS", "Durations", "GroupBy", "ReportRow", "report"]


async def report(ctx: Context, start: datetime, end: datetime, group_by: GroupBy) -> tuple[list[ReportRow], ReportRow]:
    ctx.require(Permission.REPORTS_READ)
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise PublicError(f"{name}: give the time with its offset, e.g. 2026-11-01T00:00:00Z.", Code.INVALID)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise PublicError("to: the end of the range must come after its start.", Code.INVALID)
    if end - start > timedelta(days=MAX_DAYS):
        raise PublicError(f"to: a report covers at most {MAX_DAYS} days.", Code.INVALID)
    return await inbox_report(ctx.scope.workspace_id, start, end, group_by)
