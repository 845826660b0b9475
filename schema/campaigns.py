"""Campaigns: `createCampaign`, `cancelCampaign`, `campaigns`, `campaign(id)`. Follow a
campaign's sending with `jobProgress(jobId: campaign.job.id)`."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from models import campaigns as m
from models.channels import Channel as ChannelRow
from models.conversations import Topic as TopicRow
from models.workspaces import Agent as AgentRow
from resolvers import campaigns as r
from resolvers import short_links
from resolvers.conversations import related
from resolvers.job_records import job_by_id
from runtime.execution import plain
from schema.channels import Channel
from schema.common import Connection, UserError, gid, mutate, to_connection
from schema.conversations import Topic
from schema.job_records import Job
from schema.segments import Segment
from schema.workspaces import Agent

CampaignStatus = strawberry.enum(m.CampaignStatus, name="CampaignStatus")
CampaignSkipReason = strawberry.enum(m.SkipReason, name="CampaignSkipReason")


@strawberry.type(description="How a campaign is going.")
class CampaignStats:
    recipients: int = strawberry.field(
        description="Contacts in the audience (a segment's members when sending started)."
    )
    sent: int = strawberry.field(description="Messages sent (e-mail, SMS and messenger: handed to delivery).")
    skipped: int = strawberry.field(
        description="Contacts not messaged: blocked, no consent, no address (see skipReasons)."
    )
    failed: int = strawberry.field(description="Messages whose delivery failed (e-mail, SMS, messenger).")
    waiting: int = strawberry.field(
        description="E-mail, SMS and messenger recipients waiting for their quiet hours to end (08:00 local)."
    )
    replied: int = strawberry.field(description="Contacts whose reply was attributed to this campaign.")
    clicks: int = strawberry.field(description="Clicks on the short links of its SMS messages.")
    clicked_contacts: int = strawberry.field(description="Contacts who clicked at least one of its short links.")


@strawberry.type
class CampaignSkipCount:
    reason: CampaignSkipReason  # type: ignore[valid-type]
    count: int


@strawberry.type(
    description="A message sent in bulk to a segment or a list of contacts, on one channel, now or at a time."
)
class Campaign(relay.Node):
    id: relay.NodeID[int]
    name: str
    body: str
    subject: str | None = strawberry.field(description="E-mail campaigns: the subject line.")
    status: CampaignStatus  # type: ignore[valid-type]
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    _row: strawberry.Private[m.Campaign]

    @strawberry.field
    @plain
    def channel(self, info: Info[Context, None]) -> Channel | None:
        return related(info.context, ChannelRow, self._row.channel_id, Channel.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="The segment sent to (null for a list of contacts, or a segment you cannot see).")
    async def segment(self, info: Info[Context, None]) -> Segment | None:
        if self._row.segment_id is None:
            return None
        from resolvers.segments import find_segment
        from schema.common import node_id

        found = await find_segment(info.context, str(node_id("Segment", self._row.segment_id)))
        return Segment.from_model(found) if found else None

    @strawberry.field(description="The topic of the conversations it creates; null for none.")
    @plain
    def topic(self, info: Info[Context, None]) -> Topic | None:
        return related(info.context, TopicRow, self._row.topic_id, Topic.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="Who created it (null for an API key).")
    @plain
    def created_by(self, info: Info[Context, None]) -> Agent | None:
        return related(info.context, AgentRow, self._row.created_by_id, Agent.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="The job sending it: its progress is the campaign's (jobProgress).")
    async def job(self, info: Info[Context, None]) -> Job | None:
        job = await job_by_id(info.context, self._row.job_id)
        return Job.from_model(job) if job else None

    @strawberry.field
    async def stats(self, info: Info[Context, None]) -> CampaignStats:
        row = self._row
        extra = await r.counts(row)
        clicks, clicked_contacts = await short_links.campaign_clicks(info.context, row.id)
        return CampaignStats(
            recipients=row.recipients,
            sent=row.sent,
            skipped=row.skipped,
            replied=row.replied,
            clicks=clicks,
            clicked_contacts=clicked_contacts,
            **extra,
        )

    @strawberry.field(description="Skipped contacts by reason.")
    async def skip_reasons(self) -> list[CampaignSkipCount]:
        return [
            CampaignSkipCount(reason=m.SkipReason(reason), count=n) for reason, n in await r.skip_reasons(self._row)
        ]

    @classmethod
    def from_model(cls, c: m.Campaign) -> Campaign:
        return cls(
            id=c.id,
            name=c.name,
            body=c.body,
            subject=c.subject,
            status=c.status,
            scheduled_at=c.scheduled_at,
            started_at=c.started_at,
            finished_at=c.finished_at,
            created_at=c.created_at,
            _row=c,
        )


@strawberry.input(
    description="""Exactly one of segmentId (its members when sending starts) and contactIds
(at most 10,000). Without scheduledAt the campaign is sent now."""
)
class CreateCampaignInput:
    name: str
    channel_id: relay.GlobalID
    body: str
    subject: str | None = strawberry.field(default=None, description="E-mail campaigns: the subject line.")
    segment_id: relay.GlobalID | None = None
    # Plain ids, decoded by the resolver: a malformed one is a userError naming its index.
    contact_ids: list[strawberry.ID] | None = None
    scheduled_at: datetime | None = strawberry.field(default=None, description="With its offset; at most a year ahead.")
    topic_id: relay.GlobalID | None = strawberry.field(
        default=None, description="The topic of the conversations it creates (and so of the contacts' replies)."
    )


@strawberry.input
class CancelCampaignInput:
    id: relay.GlobalID


@strawberry.type
class CampaignPayload:
    campaign: Campaign | None = None
    user_errors: list[UserError]


def _payload(campaign: m.Campaign) -> dict[str, object]:
    return {"campaign": Campaign.from_model(campaign)}


@strawberry.type
class CampaignQuery:
    @strawberry.field(description="A campaign of your workspace (conversations:read), else null.")
    async def campaign(self, info: Info[Context, None], id: relay.GlobalID) -> Campaign | None:
        found = await r.find_campaign(info.context, str(id))
        return Campaign.from_model(found) if found else None

    @strawberry.field(description="The workspace's campaigns, newest first.")
    async def campaigns(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Campaign]:
        return to_connection(await r.list_campaigns(info.context, first=first, after=after), Campaign.from_model)


@strawberry.type
class CampaignMutation:
    @strawberry.mutation(
        description="Sends a message to a segment or a list of contacts now or at scheduledAt (campaigns:send)."
    )
    async def create_campaign(self, info: Info[Context, None], input: CreateCampaignInput) -> CampaignPayload:
        data = r.CampaignInput(
            name=input.name,
            channel_gid=str(input.channel_id),
            body=input.body,
            subject=input.subject,
            segment_gid=gid(input.segment_id),
            contact_gids=[str(c) for c in input.contact_ids] if input.contact_ids is not None else None,
            scheduled_at=input.scheduled_at,
            topic_gid=gid(input.topic_id),
        )
        return await mutate(CampaignPayload, r.create_campaign(info.context, data), _payload)

    @strawberry.mutation(
        description="Stops a scheduled or running campaign after the batch in flight (campaigns:send)."
    )
    async def cancel_campaign(self, info: Info[Context, None], input: CancelCampaignInput) -> CampaignPayload:
        return await mutate(CampaignPayload, r.cancel_campaign(info.context, str(input.id)), _payload)
