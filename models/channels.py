"""Channels: where conversations come from (web widget, mobile SDK, e-mail, SMS, messenger)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields

from models.workspaces import Workspace, WorkspaceScoped, workspace_key


class ChannelKind(StrEnum):
    WEB_WIDGET = "web_widget"
    MOBILE_SDK = "mobile_sdk"
    EMAIL = "email"
    SMS = "sms"
    MESSENGER = "messenger"


class AutoResponderAudience(StrEnum):
    EVERYONE = "everyone"
    # Only contacts who have not subscribed to SMS (Klaviyo's default for SMS channels).
    WITHOUT_SMS_CONSENT = "without_sms_consent"


# Channels a contact opens a session on (public key), and where conversations start.
SESSION_KINDS = frozenset({ChannelKind.WEB_WIDGET, ChannelKind.MOBILE_SDK})
# Channels whose inbound messages arrive through the per-channel webhook route.
WEBHOOK_KINDS = frozenset({ChannelKind.EMAIL, ChannelKind.SMS, ChannelKind.MESSENGER})


class Channel(WorkspaceScoped):
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("channels")
    kind = fields.CharEnumField(ChannelKind)
    name = fields.CharField(max_length=120)
    # Public: embedded in the widget or app, it names the channel.
    public_key = fields.CharField(max_length=64, unique=True)
    # Secret: signs identity hashes (HMAC of the contact's external id) and webhooks.
    secret = fields.CharField(max_length=64)
    # When set, a session for an identified contact needs a valid user hash.
    identity_verification = fields.BooleanField(default=False)
    # Carried in the channel's contact session tokens: bumped by rotateChannelSecret and by
    # turning identity verification on, which ends every session opened before.
    session_version = fields.IntField(default=0)
    # Weekly schedule and time zone, as domain.schedule.BusinessHours.to_dict() writes it.
    business_hours: dict[str, Any] | None = fields.JSONField(null=True)  # type: ignore[assignment]
    # E-mail From address or SMS sender number of outbound messages.
    default_sender = fields.CharField(max_length=254, null=True)
    auto_responder_enabled = fields.BooleanField(default=False)
    auto_responder_text = fields.TextField(null=True)
    auto_responder_audience = fields.CharEnumField(AutoResponderAudience, default=AutoResponderAudience.EVERYONE)
    # The reply to an inbound HELP text (SMS). Null means the built-in text.
    help_reply = fields.TextField(null=True)
    # Outbound SMS and messenger go to this HTTP gateway (JSON, signed with the secret).
    gateway_url = fields.CharField(max_length=2048, null=True)
    # CRM lookup (jobs/crm.py): called, signed with its own secret, when a conversation
    # starts; its answer fills CRM-managed attributes. The secret is sealed (core/sealed.py)
    # and never leaves the server.
    crm_lookup_url = fields.CharField(max_length=2048, null=True)
    crm_lookup_secret_sealed = fields.TextField(null=True)
    # Notifications: e-mail addresses told of every new message (off when empty), and
    # whether agents get offline-message and missed-chat e-mails when nobody is online.
    notify_emails: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    offline_notifications = fields.BooleanField(default=True)
    missed_chat_minutes = fields.IntField(default=5)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "channels"
