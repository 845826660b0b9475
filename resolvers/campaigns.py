"""Campaigns through the API: `createCampaign` (to a segment or a list of contacts, on
one channel, now or at `scheduledAt`), `cancelCampaign`, `campaigns`, `campaign(id)`, and
the figures a campaign shows. jobs/campaigns.py sends them.

Creating and cancelling need campaigns:send (owners and admins; API keys with that
scope); reading needs conversations:read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise import connections

from core.clock import now
from core.context import Context
from core.db import SqlBuilder
from core.errors import Code, UserError, UserFailure
from core.events import atomic
from core.permissions import Permission
from core.queue import enqueue
from core.scoping import decode_global_id
from domain.masking import mask_card_numbers
from models.campaigns import Campaign, CampaignRecipient, CampaignStatus, RecipientStatus
from models.channels import Channel
from models.contacts import Contact
from models.conversations import Topic
from models.job_records import Job, JobKind
from resolvers.conversations import MAX_SUBJECT, clean_body
from resolvers.pagination import Order, Page, paginate
from services.job_records import arq_job_id, cancel_job, create_job

NEWEST_FIRST = Order(("id",), descending=True)
MAX_NAME = 200
# Larger audiences are a segment's.
MAX_CONTACT_IDS = 10_000
# Unknown ids reported one by one, at most this many.
MAX_ID_ERRORS = 20
MAX_SCHEDULE_AHEAD = timedelta(days=366)
# A scheduledAt this far in the past is a mistake, not "now".
SCHEDULE_GRACE = timedelta(minutes=5)


@dataclass
class CampaignInput:
    name: str
    channel_gid: str
    body: str
    subject: str | None = None
    segment_gid: str | None = None
    contact_gids: list[str] | None = None
    scheduled_at: datetime | None = None
    topic_gid: str | None = None


async def create_campaign(ctx: Context, data: CampaignInput) -> Campaign:
    """Validate everything (every problem reported, each naming its field), then record
    the campaign and its job and queue the job at `scheduledAt` (default: now)."""
    principal = ctx.require(Permission.CAMPAIGNS_SEND)
    workspace_id = ctx.scope.workspace_id
    errors: list[UserError] = []

    name = " ".join(data.name.split())
    if not name:
        errors.append(UserError(["name"], Code.REQUIRED, "A campaign needs a name."))
    elif len(name) > MAX_NAME:
        errors.append(UserError(["name"], Code.TOO_LONG, f"A campaign name may be at most {MAX_NAME} characters."))
    body = ""
    try:
        body = clean_body(data.body)
    except UserFailure as failure:
        errors.extend(failure.errors)
    subject = mask_card_numbers(" ".join((data.subject or "").split())) or None
    if subject is not None and len(subject) > MAX_SUBJECT:
        errors.append(UserError(["subject"], Code.TOO_LONG, f"A subject may be at most {MAX_SUBJECT} characters."))

    channel = await ctx.scope.by_global_id(data.channel_gid, "Channel", Channel)
    if channel is None:
        errors.append(UserError(["channelId"], Code.NOT_FOUND, "No channel with this id."))

    topic_id: int | None = None
    if data.topic_gid is not None:
        topic = await ctx.scope.by_global_id(data.topic_gid, "Topic", Topic)
        if topic is None:
            errors.append(UserError(["topicId"], Code.NOT_FOUND, "No topic with this id."))
        else:
            topic_id = topic.id

    segment_id: int | None = None
    contact_ids: list[int] = []
    if (data.segment_gid is None) == (data.contact_gids is None):
        errors.append(UserError(["segmentId"], Code.REQUIRED, "Give either segmentId or contactIds (not both)."))
    elif data.segment_gid is not None:
        from resolvers.segments import find_segment

        segment = await find_segment(ctx, data.segment_gid) if principal.can(Permission.CONTACTS_READ) else None
        if segment is None:
            errors.append(UserError(["segmentId"], Code.NOT_FOUND, "No segment with this id."))
        else:
            segment_id = segment.id
    else:
        contact_ids = await _contact_ids(workspace_id, data.contact_gids or [], errors)

    at = now()
    scheduled_at = at
    if data.scheduled_at is not None:
        if data.scheduled_at.tzinfo is None:
            errors.append(
                UserError(
                    ["scheduledAt"], Code.INVALID, "Give the time with its offset, e.g. 2026-11-23T09:00:00+01:00."
                )
            )
        elif data.scheduled_at < at - SCHEDULE_GRACE:
            errors.append(
                UserError(["scheduledAt"], Code.INVALID, "This time has passed; omit scheduledAt to send now.")
            )
        elif data.scheduled_at > at + MAX_SCHEDULE_AHEAD:
            errors.append(UserError(["scheduledAt"], Code.INVALID, "A campaign can be scheduled a year ahead at most."))
        else:
            scheduled_at = max(data.scheduled_at.astimezone(UTC), at)
    if errors:
        raise UserFailure(*errors)
    assert channel is not None

    async with atomic(ctx.outbox):
        campaign = await Campaign.create(
            workspace_id=workspace_id,
            name=name,
            channel_id=channel.id,
            body=body,
            subject=subject,
            segment_id=segment_id,
            topic_id=topic_id,
            status=CampaignStatus.SCHEDULED,
            scheduled_at=scheduled_at,
            created_by_id=principal.agent_id,
        )
        job = await create_job(workspace_id, JobKind.CAMPAIGN, principal=principal, params={"campaign_id": campaign.id})
        campaign.job_id = job.id
        if segment_id is None:
            campaign.recipients = await _add_recipients(workspace_id, campaign.id, contact_ids)
            campaign.audience_frozen_at = at
        await campaign.save(update_fields=["job_id", "recipients", "audience_frozen_at"])
        pool, delay = ctx.jobs, scheduled_at - at

        async def queue() -> None:
            await enqueue(
                pool,
                "send_campaign",
                campaign.id,
                job_id=arq_job_id(job.id),
                defer=delay if delay > timedelta(0) else None,
            )

        ctx.outbox.after_commit(queue)
    return campaign


async def _contact_ids(workspace_id: int, gids: list[str], errors: list[UserError]) -> list[int]:
    """The listed contacts of this workspace, in order, once each; an error per id that
    is not one (another workspace's contact is not one), at most MAX_ID_ERRORS."""
    if not gids:
        errors.append(UserError(["contactIds"], Code.REQUIRED, "List at least one contact."))
        return []
    if len(gids) > MAX_CONTACT_IDS:
        errors.append(
            UserError(["contactIds"], Code.INVALID, f"At most {MAX_CONTACT_IDS} contacts; send to a segment instead.")
        )
        return []
    wanted: list[tuple[int, int]] = []
    bad: list[int] = []
    for i, gid in enumerate(gids):
        decoded = decode_global_id(gid)
        if decoded is None or decoded[0] != "Contact":
            bad.append(i)
        else:
            wanted.append((i, decoded[1]))
    found: set[int] = set()
    pks = sorted({pk for _, pk in wanted})
    for start in range(0, len(pks), 1000):
        chunk = pks[start : start + 1000]
        found.update(await Contact.filter(workspace_id=workspace_id, id__in=chunk).values_list("id", flat=True))
    bad.extend(i for i, pk in wanted if pk not in found)
    for i in sorted(bad)[:MAX_ID_ERRORS]:
        errors.append(UserError(["contactIds", str(i)], Code.NOT_FOUND, "No contact with this id."))
    return list(dict.fromkeys(pk for _, pk in wanted if pk in found))


async def _add_recipients(workspace_id: int, campaign_id: int, contact_ids: list[int]) -> int:
    rows = [CampaignRecipient(workspace_id=workspace_id, campaign_id=campaign_id, contact_id=c) for c in contact_ids]
    await CampaignRecipient.bulk_create(rows, batch_size=2000)
    return len(rows)


# -- reading -----------------------------------------------------------------------------------


async def find_campaign(ctx: Context, gid: str) -> Campaign | None:
    if not ctx.require_principal().can(Permission.CONVERSATIONS_READ):
        return None
    return await ctx.scope.by_global_id(gid, "Campaign", Campaign)


async def list_campaigns(ctx: Context, *, first: int | None, after: str | None) -> Page[Campaign]:
    ctx.require(Permission.CONVERSATIONS_READ)
    return await paginate(ctx.scope.all(Campaign), NEWEST_FIRST, first=first, after=after, default_size=25)


async def counts(campaign: Campaign) -> dict[str, int]:
    """Recipients waiting for quiet hours, and messages whose delivery failed."""
    waiting = await CampaignRecipient.filter(campaign_id=campaign.id, status=RecipientStatus.WAITING).count()
    q = SqlBuilder()
    sql = (
        "SELECT count(*) AS n FROM campaign_recipients r JOIN messages m ON m.id = r.message_id "  # noqa: S608
        f"WHERE r.campaign_id = {q.param(campaign.id)} AND r.status = 'sent' AND m.delivery_state = 'failed'"
    )
    failed = (await connections.get("default").execute_query_dict(sql, q.params))[0]["n"]
    return {"waiting": waiting, "failed": int(failed)}


async def skip_reasons(campaign: Campaign) -> list[tuple[str, int]]:
    q = SqlBuilder()
    sql = (
        "SELECT skip_reason, count(*) AS n FROM campaign_recipients "  # noqa: S608
        f"WHERE campaign_id = {q.param(campaign.id)} AND status = 'skipped' GROUP BY skip_reason ORDER BY skip_reason"
    )
    rows = await connections.get("default").execute_query_dict(sql, q.params)
    return [(str(r["skip_reason"]), int(r["n"])) for r in rows]


# -- cancelling --------------------------------------------------------------------------------


async def cancel_campaign(ctx: Context, gid: str) -> Campaign:
    """Stop a scheduled or running campaign: nothing more is sent after the batch in
    flight; what was sent stays sent."""
    ctx.require(Permission.CAMPAIGNS_SEND)
    campaign = await ctx.scope.by_global_id(gid, "Campaign", Campaign)
    if campaign is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No campaign with this id.")
    stamp = now()
    changed = await Campaign.filter(
        id=campaign.id, status__in=[CampaignStatus.SCHEDULED, CampaignStatus.RUNNING]
    ).update(status=CampaignStatus.CANCELLED, finished_at=stamp)
    if not changed:
        raise UserFailure.of("id", Code.NOT_ALLOWED, f"This campaign has finished ({campaign.status.value}).")
    job = await Job.get_or_none(id=campaign.job_id) if campaign.job_id else None
    if job is not None:
        await cancel_job(job, ctx.hub, reason="The campaign was cancelled.")
    await campaign.refresh_from_db()
    return campaign
