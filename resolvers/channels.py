"""Channels: the web widget, SDK, e-mail, SMS and messenger inboxes of a workspace; their
keys, settings and sessions (`channels`, `createChannel`, `updateChannel`,
`rotateChannelSecret`, `deleteChannel`)."""

from __future__ import annotations

import secrets
from typing import Any

from tortoise.expressions import F, Subquery

from core import outbound
from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.events import atomic
from core.permissions import Permission
from core.principal_cache import auth_changed
from core.sealed import seal
from domain import contact_fields as cf
from domain.masking import mask_card_numbers
from domain.schedule import BusinessHours, ScheduleError
from models.channels import SESSION_KINDS, Channel, ChannelKind
from models.conversations import Conversation, Message
from resolvers import proactive
from resolvers.pagination import Order, Page, paginate

BY_ID = Order(("id",), descending=False)


async def create_channel(
    workspace_id: int, kind: ChannelKind, name: str, *, identity_verification: bool | None = None
) -> Channel:
    """A channel with new keys. Widget and SDK channels verify identities unless told
    otherwise: their public key sits in web pages and apps, and without a userHash anyone
    could name any external id (README, "Identity verification")."""
    if identity_verification is None:
        identity_verification = kind in SESSION_KINDS
    return await Channel.create(
        workspace_id=workspace_id,
        kind=kind,
        name=name,
        public_key=f"ch_{secrets.token_urlsafe(18)}",
        secret=secrets.token_hex(32),
        identity_verification=identity_verification,
    )


async def list_channels(ctx: Context, *, first: int | None, after: str | None) -> Page[Channel]:
    ctx.require_agent()
    return await paginate(ctx.scope.all(Channel), BY_ID, first=first, after=after)


CHANNEL_SETTINGS = (
    "name",
    "identity_verification",
    "business_hours",
    "default_sender",
    "auto_responder_enabled",
    "auto_responder_text",
    "auto_responder_audience",
    "help_reply",
    "gateway_url",
    "notify_emails",
    "offline_notifications",
    "missed_chat_minutes",
    "crm_lookup_url",
    "crm_lookup_secret",
)
MAX_NOTIFY_EMAILS = 20
MAX_URL = 2048
CRM_SECRET_LENGTH = (16, 256)


def _clean_channel_settings(kind: ChannelKind, values: dict[str, Any]) -> dict[str, Any]:
    """Validate channel settings; every problem names its field."""
    errors: list[UserError] = []
    clean: dict[str, Any] = {}

    def fail(field: list[str], code: Code, message: str) -> None:
        errors.append(UserError(field, code, message))

    for key, value in values.items():
        if key == "name":
            name = " ".join((value or "").split())
            if not name:
                fail(["name"], Code.REQUIRED, "A channel needs a name.")
            elif len(name) > 120:
                fail(["name"], Code.TOO_LONG, "A channel name may be at most 120 characters.")
            clean[key] = name
        elif key == "business_hours":
            if value is None:
                clean[key] = None
                continue
            try:
                clean[key] = BusinessHours.parse(value).to_dict()
            except ScheduleError as exc:
                fail(["businessHours", *exc.path], Code.INVALID, exc.message)
        elif key == "default_sender" and value:
            try:
                if kind is ChannelKind.EMAIL:
                    clean[key] = cf.normalize_email(value)
                elif kind is ChannelKind.SMS:
                    clean[key] = cf.normalize_phone(value)
                else:
                    clean[key] = cf.normalize_text(value, 254)
            except ValueError as exc:
                fail(["defaultSender"], Code.INVALID, f"defaultSender is {exc}.")
        elif key in ("auto_responder_text", "help_reply") and value is not None:
            text = value.strip()
            if len(text) > 1_000:
                fail([cf.camel(key)], Code.TOO_LONG, f"{cf.camel(key)} may be at most 1000 characters.")
            clean[key] = mask_card_numbers(text) or None
        elif key in ("gateway_url", "crm_lookup_url") and value:
            problem = (
                f"must be an http(s) URL of at most {MAX_URL} characters."
                if len(value) > MAX_URL
                else outbound.url_problem(value)
            )
            if problem is not None:
                fail([cf.camel(key)], Code.INVALID, f"{cf.camel(key)} {problem}")
            clean[key] = value
        elif key == "crm_lookup_secret":
            # Sealed at rest and never shown again (core/sealed.py); null removes it.
            shortest, longest = CRM_SECRET_LENGTH
            if value is not None and not (
                shortest <= len(value) <= longest and value.isascii() and value.isprintable()
            ):
                fail(
                    ["crmLookupSecret"],
                    Code.INVALID,
                    f"crmLookupSecret must be {shortest} to {longest} printable ASCII characters.",
                )
            elif " " in (value or ""):
                fail(["crmLookupSecret"], Code.INVALID, "crmLookupSecret must not contain spaces.")
            clean["crm_lookup_secret_sealed"] = seal(value) if value else None
        elif key == "notify_emails":
            addresses = []
            for i, address in enumerate((value or [])[: MAX_NOTIFY_EMAILS + 1]):
                try:
                    addresses.append(cf.normalize_email(address))
                except ValueError as exc:
                    fail(["notifyEmails", str(i)], Code.INVALID, f"notifyEmails[{i}] is {exc}.")
            if len(value or []) > MAX_NOTIFY_EMAILS:
                fail(["notifyEmails"], Code.TOO_LONG, f"At most {MAX_NOTIFY_EMAILS} notification addresses.")
            clean[key] = addresses
        elif key == "missed_chat_minutes":
            if value is None or not 1 <= value <= 1440:
                fail(["missedChatMinutes"], Code.INVALID, "missedChatMinutes must be between 1 and 1440.")
            clean[key] = value
        elif value is None and key in (
            "identity_verification",
            "auto_responder_enabled",
            "offline_notifications",
            "auto_responder_audience",
        ):
            fail([cf.camel(key)], Code.REQUIRED, f"{cf.camel(key)} cannot be null.")
        else:
            clean[key] = value
    if errors:
        raise UserFailure(*errors)
    return clean


def _require_crm_secret(url: str | None, sealed_secret: str | None) -> None:
    """A CRM lookup URL is called signed: it needs a secret."""
    if url and not sealed_secret:
        raise UserFailure.of(
            "crmLookupSecret", Code.REQUIRED, "A CRM lookup URL needs a crmLookupSecret to sign its requests."
        )


async def add_channel(ctx: Context, kind: ChannelKind, values: dict[str, Any]) -> Channel:
    ctx.require(Permission.WORKSPACE_MANAGE)
    clean = _clean_channel_settings(kind, {"name": values.pop("name", ""), **values})
    # Widget and SDK channels verify identities unless the input turns it off.
    _require_crm_secret(clean.get("crm_lookup_url"), clean.get("crm_lookup_secret_sealed"))
    channel = await create_channel(
        ctx.scope.workspace_id, kind, clean.pop("name"), identity_verification=clean.pop("identity_verification", None)
    )
    if clean:
        await Channel.filter(id=channel.id).update(**clean)
        await channel.refresh_from_db()
    return channel


async def _channel_to_manage(ctx: Context, gid: str) -> Channel:
    ctx.require(Permission.WORKSPACE_MANAGE)
    channel = await ctx.scope.by_global_id(gid, "Channel", Channel)
    if channel is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No channel with this id.")
    return channel


async def update_channel(ctx: Context, gid: str, values: dict[str, Any]) -> Channel:
    """Settings, and the kind: a channel turned into one that cannot show proactive
    messages leaves its live ones with errors."""
    channel = await _channel_to_manage(ctx, gid)
    kind = values.pop("kind", None) or channel.kind
    clean = _clean_channel_settings(kind, values)
    if kind is not channel.kind:
        clean["kind"] = kind
    # Turning verification on ends every session opened without it (unverified ones).
    verifies_now = clean.get("identity_verification") is True and not channel.identity_verification
    for key, value in clean.items():
        setattr(channel, key, value)
    _require_crm_secret(channel.crm_lookup_url, channel.crm_lookup_secret_sealed)
    if clean:
        async with atomic(ctx.outbox):
            await channel.save(update_fields=[*clean, "updated_at"])
            await proactive.channel_changed(ctx.outbox, channel.id)
            if verifies_now:
                await _end_sessions(ctx, channel)
    return channel


async def _end_sessions(ctx: Context, channel: Channel) -> None:
    """Every contact session token of the channel stops working, in every process (its
    session version goes up). Inside the transaction."""
    await Channel.filter(id=channel.id).update(session_version=F("session_version") + 1)
    channel.session_version += 1
    auth_changed(ctx.outbox, channel_id=channel.id)


async def rotate_channel_secret(ctx: Context, gid: str) -> Channel:
    channel = await _channel_to_manage(ctx, gid)
    channel.secret = secrets.token_hex(32)
    async with atomic(ctx.outbox):
        await channel.save(update_fields=["secret", "updated_at"])
        await _end_sessions(ctx, channel)  # sessions opened with the old secret's hashes end
    return channel


async def delete_channel(ctx: Context, gid: str) -> None:
    """Removes the channel with its conversations and messages."""
    channel = await _channel_to_manage(ctx, gid)
    async with atomic(ctx.outbox):
        await proactive.channel_deleted(ctx.outbox, channel.id)
        conversation_ids = Conversation.filter(channel_id=channel.id).values("id")
        await Message.filter(conversation_id__in=Subquery(conversation_ids)).delete()
        await Conversation.filter(channel_id=channel.id).delete()
        await channel.delete()
