"""Short links: each link in an outbound SMS becomes PUBLIC_URL/l/{code}, one code per link
of each message, so the redirect counts clicks per message, campaign and contact."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index

from models.campaigns import Campaign
from models.contacts import Contact
from models.conversations import Message
from models.workspaces import WorkspaceScoped


class ShortLink(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    # secrets.token_urlsafe: unguessable, so a code cannot be found by counting.
    code = fields.CharField(max_length=32, unique=True)
    # Only http(s) URLs found in our own outbound text; the redirect goes nowhere else.
    url = fields.CharField(max_length=2048)
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, on_delete=fields.CASCADE
    )
    message_id: int
    # The link's place among the message's links: a retried delivery mints nothing new.
    position = fields.SmallIntField()
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    campaign: fields.ForeignKeyNullableRelation[Campaign] = fields.ForeignKeyField(
        "models.Campaign", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    campaign_id: int | None
    clicks = fields.IntField(default=0)
    last_clicked_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "short_links"
        unique_together = (("message", "position"),)
        indexes = (Index(fields=("campaign_id",)), Index(fields=("contact_id",)))
