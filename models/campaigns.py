"""Campaigns: one message sent in bulk to a segment or a list of contacts, on one channel,
now or at a time; and their recipients, one row per contact (jobs/campaigns.py sends)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.indexes import Index

from models.channels import Channel
from models.contacts import Contact
from models.conversations import Topic
from models.job_records import Job
from models.segments import Segment
from models.workspaces import Agent, WorkspaceScoped


class CampaignStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its time (now, for a campaign sent at once)
    RUNNING = "running"  # sending, or waiting for recipients' quiet hours to end
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)


class RecipientStatus(StrEnum):
    PENDING = "pending"
    # SMS in the contact's quiet hours: sent at next_attempt_at.
    WAITING = "waiting"
    SENT = "sent"
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    BLOCKED = "blocked"
    NO_SMS_CONSENT = "no_sms_consent"
    NO_PHONE = "no_phone"
    NO_EMAIL = "no_email"
    NO_MESSENGER_ID = "no_messenger_id"


class Campaign(WorkspaceScoped):
    name = fields.CharField(max_length=200)
    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, on_delete=fields.CASCADE
    )
    channel_id: int
    # Card numbers masked, as every message. The subject is for e-mail campaigns.
    body = fields.TextField()
    subject = fields.CharField(max_length=255, null=True)
    # The audience: a segment (its members when the send starts), or the contacts listed
    # at creation (their recipient rows are written then; segment is null).
    segment: fields.ForeignKeyNullableRelation[Segment] = fields.ForeignKeyField(
        "models.Segment", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    segment_id: int | None
    # The topic of the conversations it creates (Freshdesk's campaign topic): replies land
    # in it, and the inbox filters by it. Deleting the topic leaves the campaign without.
    topic: fields.ForeignKeyNullableRelation[Topic] = fields.ForeignKeyField(
        "models.Topic", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    topic_id: int | None
    status = fields.CharEnumField(CampaignStatus, max_length=16, default=CampaignStatus.SCHEDULED)
    scheduled_at = fields.DatetimeField()
    # Set in the transaction that wrote the recipient rows: a retried job does not re-read
    # the segment.
    audience_frozen_at = fields.DatetimeField(null=True)
    job: fields.ForeignKeyNullableRelation[Job] = fields.ForeignKeyField(
        "models.Job", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    job_id: int | None
    created_by: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_by_id: int | None
    # Moved in the transactions that move the recipients, so they always agree.
    recipients = fields.IntField(default=0)
    sent = fields.IntField(default=0)
    skipped = fields.IntField(default=0)
    # Counted by services/attribution.py when a reply is credited to the campaign.
    replied = fields.IntField(default=0)
    started_at = fields.DatetimeField(null=True)
    # Written by every batch: a running campaign silent for CAMPAIGN_STALE_SECONDS lost
    # its worker, and the sweep queues it again.
    heartbeat_at = fields.DatetimeField(null=True)
    # Runs that ended in an unexpected error; at MAX_ATTEMPTS the campaign is FAILED.
    failed_runs = fields.IntField(default=0)
    finished_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "campaigns"
        indexes = (Index(fields=("workspace_id", "id")), Index(fields=("status", "scheduled_at")))


class CampaignRecipient(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    campaign: fields.ForeignKeyRelation[Campaign] = fields.ForeignKeyField(
        "models.Campaign", related_name=False, on_delete=fields.CASCADE
    )
    campaign_id: int
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    status = fields.CharEnumField(RecipientStatus, max_length=16, default=RecipientStatus.PENDING)
    skip_reason = fields.CharEnumField(SkipReason, max_length=32, null=True)
    # The message sent (not a foreign key: the contact's conversations may be deleted).
    message_id = fields.BigIntField(null=True)
    sent_at = fields.DatetimeField(null=True)
    next_attempt_at = fields.DatetimeField(null=True)

    class Meta:
        table = "campaign_recipients"
        unique_together = (("campaign", "contact"),)
        # By message: a delivered SMS's short links name their campaign (services/short_links.py).
        indexes = (Index(fields=("campaign_id", "status", "id")), Index(fields=("message_id",)))
