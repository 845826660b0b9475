"""The inbox report: conversations, response and resolution times, ratings, by agent, team,
channel or day."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from core.context import Context
from models.channels import Channel as ChannelRow
from models.workspaces import Agent as AgentRow
from models.workspaces import Team as TeamRow
from resolvers import conversations as rc
from resolvers import reports as r
from schema.channels import Channel
from schema.workspaces import Agent, Team

ReportGroupBy = strawberry.enum(r.GroupBy, name="ReportGroupBy")


@strawberry.type(description="Times in seconds; nearest-rank percentiles; null when there are none.")
class DurationStats:
    count: int
    median_seconds: int | None
    p90_seconds: int | None


@strawberry.type(
    description="""One group of the report (or its total). `agent` is the assignee (null: not
assigned), `team`, `channel` or `day` (UTC) the group, as groupBy says."""
)
class InboxReportRow:
    day: date | None
    conversations: int = strawberry.field(description="Conversations created in the range.")
    resolved: int = strawberry.field(description="Of them, resolved now (a reopened one is not, a campaign's never).")
    ratings: int
    average_rating: float | None
    first_response: DurationStats = strawberry.field(
        description="From the start to the first agent reply, in the channel's business hours if it has them."
    )
    resolution: DurationStats = strawberry.field(
        description="From the start to the latest resolution, in the channel's business hours if it has them."
    )
    _agent_id: strawberry.Private[int | None]
    _team_id: strawberry.Private[int | None]
    _channel_id: strawberry.Private[int | None]

    @strawberry.field
    def agent(self, info: Info[Context, None]) -> Agent | None:
        return rc.related(info.context, AgentRow, self._agent_id, Agent.from_model)  # type: ignore[no-any-return]

    @strawberry.field
    def team(self, info: Info[Context, None]) -> Team | None:
        return rc.related(info.context, TeamRow, self._team_id, Team.from_model)  # type: ignore[no-any-return]

    @strawberry.field
    def channel(self, info: Info[Context, None]) -> Channel | None:
        return rc.related(info.context, ChannelRow, self._channel_id, Channel.from_model)  # type: ignore[no-any-return]

    @classmethod
    def from_row(cls, row: r.ReportRow, group_by: r.GroupBy | None) -> InboxReportRow:
        def durations(d: r.Durations) -> DurationStats:
            return DurationStats(count=d.count, median_seconds=d.median_seconds, p90_seconds=d.p90_seconds)

        key = row.key
        return cls(
            day=date.fromisoformat(str(key)) if group_by is r.GroupBy.DAY and key else None,
            conversations=row.conversations,
            resolved=row.resolved,
            ratings=row.ratings,
            average_rating=row.average_rating,
            first_response=durations(row.first_response),
            resolution=durations(row.resolution),
            _agent_id=key if group_by is r.GroupBy.AGENT else None,  # type: ignore[arg-type]
            _team_id=key if group_by is r.GroupBy.TEAM else None,  # type: ignore[arg-type]
            _channel_id=key if group_by is r.GroupBy.CHANNEL else None,  # type: ignore[arg-type]
        )


@strawberry.type
class InboxReport:
    rows: list[InboxReportRow]
    total: InboxReportRow


@strawberry.type
class ReportQuery:
    @strawberry.field(
        description="Conversations created in [from, to) (at most 366 days), grouped; owners and admins, or an "
        "API key with reports:read."
    )
    async def inbox_report(
        self,
        info: Info[Context, None],
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        group_by: ReportGroupBy,  # type: ignore[valid-type]
    ) -> InboxReport:
        rows, total = await r.report(info.context, from_, to, group_by)
        return InboxReport(
            rows=[InboxReportRow.from_row(row, group_by) for row in rows], total=InboxReportRow.from_row(total, None)
        )
