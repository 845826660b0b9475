"""Channels: where conversations come from (web widget, mobile SDK, e-mail, SMS, messenger)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from models.workspaces import Workspace


class ChannelKind(StrEnum):
    WEB_WIDGET = "web_widget"
    MOBILE_SDK = "mobile_sdk"
    EMAIL = "email"
    SMS = "sms"
    MESSENGER = "messenger"


class Channel(Model):
    id = fields.IntField(primary_key=True)
    workspace: fields.ForeignKeyRelation[Workspace] = fields.ForeignKeyField(
        "models.Workspace", related_name="channels", on_delete=fields.CASCADE
    )
    workspace_id: int
    kind = fields.CharEnumField(ChannelKind)
    name = fields.CharField(max_length=120)
    # Public: embedded in the widget or app, it names the channel.
    public_key = fields.CharField(max_length=64, unique=True)
    # Secret: signs identity hashes (HMAC of the contact's external id) and webhooks.
    secret = fields.CharField(max_length=64)
    # When set, a session for an identified contact needs a valid user hash.
    identity_verification = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "channels"
