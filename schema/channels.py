"""Channels: the inboxes of a workspace (web widget, SDK, e-mail, SMS, messenger), their
settings and keys."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from core.permissions import Permission
from models import channels as mc
from resolvers import channels as r
from runtime.execution import plain
from schema.common import JSON, Connection, UserError, mutate, provided, to_connection

ChannelKind = strawberry.enum(mc.ChannelKind, name="ChannelKind")
AutoResponderAudience = strawberry.enum(mc.AutoResponderAudience, name="AutoResponderAudience")


@strawberry.type
class Channel(relay.Node):
    id: relay.NodeID[int]
    kind: ChannelKind  # type: ignore[valid-type]
    name: str
    public_key: str = strawberry.field(description="Embedded in the widget or app to open contact sessions.")
    identity_verification: bool
    business_hours: JSON | None = strawberry.field(
        description='Weekly schedule: {"timeZone": "Europe/Paris", "days": {"mon": [["09:00", "17:00"]], …}}; '
        "null means always open."
    )
    auto_responder_enabled: bool
    auto_responder_text: str | None
    auto_responder_audience: AutoResponderAudience  # type: ignore[valid-type]
    help_reply: str | None = strawberry.field(
        description="The reply to an inbound HELP text; null uses the built-in text."
    )
    offline_notifications: bool = strawberry.field(
        description="E-mail agents about offline messages and missed chats when no agent is online."
    )
    missed_chat_minutes: int
    created_at: datetime
    updated_at: datetime
    _secret: strawberry.Private[str]
    # Settings a contact session is not shown (the widget's narrow view): null or empty there.
    _default_sender: strawberry.Private[str | None]
    _gateway_url: strawberry.Private[str | None]
    _notify_emails: strawberry.Private[list[str]]
    _crm_lookup_url: strawberry.Private[str | None]
    _crm_lookup_secret_set: strawberry.Private[bool]

    @strawberry.field(
        description="From address (e-mail) or sender number (SMS) of outbound messages; null in a contact session."
    )
    @plain
    def default_sender(self, info: Info[Context, None]) -> str | None:
        return None if info.context.viewing_contact_id is not None else self._default_sender

    @strawberry.field(
        description="SMS and messenger: outbound messages are POSTed here as signed JSON; null in a contact session."
    )
    @plain
    def gateway_url(self, info: Info[Context, None]) -> str | None:
        return None if info.context.viewing_contact_id is not None else self._gateway_url

    @strawberry.field(
        description="Told by e-mail of every new inbound message (none by default); empty in a contact session."
    )
    @plain
    def notify_emails(self, info: Info[Context, None]) -> list[str]:
        return [] if info.context.viewing_contact_id is not None else self._notify_emails

    @strawberry.field(
        description="Called (signed POST) when a conversation starts; its answer fills CRM-managed attributes. "
        "Null in a contact session."
    )
    @plain
    def crm_lookup_url(self, info: Info[Context, None]) -> str | None:
        return None if info.context.viewing_contact_id is not None else self._crm_lookup_url

    @strawberry.field(
        description="Whether the CRM lookup has its signing secret; the secret itself is never shown again. "
        "False in a contact session."
    )
    @plain
    def crm_lookup_secret_set(self, info: Info[Context, None]) -> bool:
        return info.context.viewing_contact_id is None and self._crm_lookup_secret_set

    @strawberry.field(
        description="Signs identity hashes and inbound webhooks. Owners and admins only; null for others."
    )
    def secret(self, info: Info[Context, None]) -> str | None:
        principal = info.context.principal
        return self._secret if principal is not None and principal.can(Permission.WORKSPACE_MANAGE) else None

    @classmethod
    def from_model(cls, c: mc.Channel) -> Channel:
        return cls(
            id=c.id,
            kind=c.kind,
            name=c.name,
            public_key=c.public_key,
            identity_verification=c.identity_verification,
            business_hours=c.business_hours,
            _default_sender=c.default_sender,
            auto_responder_enabled=c.auto_responder_enabled,
            auto_responder_text=c.auto_responder_text,
            auto_responder_audience=c.auto_responder_audience,
            help_reply=c.help_reply,
            _gateway_url=c.gateway_url,
            _notify_emails=list(c.notify_emails or []),
            _crm_lookup_url=c.crm_lookup_url,
            _crm_lookup_secret_set=c.crm_lookup_secret_sealed is not None,
            offline_notifications=c.offline_notifications,
            missed_chat_minutes=c.missed_chat_minutes,
            created_at=c.created_at,
            updated_at=c.updated_at,
            _secret=c.secret,
        )


@strawberry.input
class ChannelSettingsInput:
    name: str | None = strawberry.UNSET
    identity_verification: bool | None = strawberry.UNSET
    business_hours: JSON | None = strawberry.UNSET
    default_sender: str | None = strawberry.UNSET
    auto_responder_enabled: bool | None = strawberry.UNSET
    auto_responder_text: str | None = strawberry.UNSET
    auto_responder_audience: AutoResponderAudience | None = strawberry.UNSET  # type: ignore[valid-type]
    help_reply: str | None = strawberry.UNSET
    gateway_url: str | None = strawberry.UNSET
    notify_emails: list[str] | None = strawberry.UNSET
    offline_notifications: bool | None = strawberry.UNSET
    missed_chat_minutes: int | None = strawberry.UNSET
    crm_lookup_url: str | None = strawberry.field(
        default=strawberry.UNSET, description="http(s), at most 2048 characters, public addresses only."
    )
    crm_lookup_secret: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Signs the CRM lookup's requests (X-Parley-Signature), 16 to 256 characters; "
        "write-only, sealed at rest. Null removes it.",
    )


@strawberry.input
class CreateChannelInput(ChannelSettingsInput):
    kind: ChannelKind  # type: ignore[valid-type]


@strawberry.input
class UpdateChannelInput(ChannelSettingsInput):
    id: relay.GlobalID
    kind: ChannelKind | None = strawberry.field(  # type: ignore[valid-type]
        default=strawberry.UNSET,
        description="Change the kind; live proactive messages of a channel that can no longer show them get errors.",
    )


@strawberry.input
class ChannelIdInput:
    id: relay.GlobalID


@strawberry.type
class ChannelPayload:
    channel: Channel | None = None
    user_errors: list[UserError]


@strawberry.type
class DeleteChannelPayload:
    deleted_id: relay.GlobalID | None = None
    user_errors: list[UserError]


def _channel(c: mc.Channel) -> dict[str, object]:
    return {"channel": Channel.from_model(c)}


@strawberry.type
class ChannelQuery:
    @strawberry.field
    async def channels(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Channel]:
        return to_connection(await r.list_channels(info.context, first=first, after=after), Channel.from_model)


@strawberry.type
class ChannelMutation:
    @strawberry.mutation(description="Owners and admins: a new channel of any kind, with its settings.")
    async def create_channel(self, info: Info[Context, None], input: CreateChannelInput) -> ChannelPayload:
        values = provided(input, r.CHANNEL_SETTINGS)
        return await mutate(ChannelPayload, r.add_channel(info.context, input.kind, values), _channel)

    @strawberry.mutation(description="Owners and admins: change a channel's settings; omitted fields stay.")
    async def update_channel(self, info: Info[Context, None], input: UpdateChannelInput) -> ChannelPayload:
        values = provided(input, (*r.CHANNEL_SETTINGS, "kind"))
        return await mutate(ChannelPayload, r.update_channel(info.context, str(input.id), values), _channel)

    @strawberry.mutation(
        description="Owners and admins: a new secret; "
        "identity hashes and webhooks signed with the old one stop working."
    )
    async def rotate_channel_secret(self, info: Info[Context, None], input: ChannelIdInput) -> ChannelPayload:
        return await mutate(ChannelPayload, r.rotate_channel_secret(info.context, str(input.id)), _channel)

    @strawberry.mutation(description="Owners and admins: removes the channel with its conversations and messages.")
    async def delete_channel(self, info: Info[Context, None], input: ChannelIdInput) -> DeleteChannelPayload:
        return await mutate(
            DeleteChannelPayload, r.delete_channel(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )
