"""Mobile push: devices a contact session registers, the providers' credentials of an SDK
channel (owners and admins: workspace:manage), and the delivery log. Sending is
jobs/push.py; the provider clients are services/push.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tortoise.exceptions import IntegrityError

from core.clock import now
from core.context import Context
from core.errors import Code, PublicError, UserError, UserFailure
from core.permissions import Permission
from core.ratelimit import rate_limits
from core.sealed import seal
from models.channels import Channel, ChannelKind
from models.push import ApnsEnvironment, Device, DevicePlatform, PushAttempt, PushConfig
from resolvers.pagination import Order, Page, paginate
from services import push

# A contact's devices on one channel; registering one more forgets the least recently registered.
MAX_DEVICES_PER_CONTACT = 10
MAX_SECRET = 16 * 1024
NEWEST_FIRST = Order(("id",), descending=True)
# APNs device tokens are hex (32 bytes today; Apple may lengthen them): they go into a URL path.
APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
# FCM registration tokens: URL-safe base64 and ':'.
FCM_TOKEN = re.compile(r"[A-Za-z0-9_:\-]{20,512}")
APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
LOCALE = re.compile(r"[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8}){0,3}")
APPLE_ID = re.compile(r"[A-Z0-9]{10}")


# -- devices (contact sessions) -----------------------------------------------------------


def _clean_device(platform: DevicePlatform, token: str, app_id: str, locale: str | None) -> tuple[str, str, str | None]:
    errors: list[UserError] = []
    token = token.strip()
    if platform is DevicePlatform.IOS:
        pattern, what = APNS_TOKEN, "an APNs device token (hex)"
    else:
        pattern, what = FCM_TOKEN, "an FCM registration token"
    if not pattern.fullmatch(token):
        errors.append(UserError(["token"], Code.INVALID, f"token must be {what}."))
    app_id = app_id.strip()
    if not APP_ID.fullmatch(app_id):
        errors.append(
            UserError(
                ["appId"],
                Code.INVALID,
                "appId must be the app's bundle id or package name (letters, digits, '.', '_', '-').",
            )
        )
    clean_locale = (locale or "").strip() or None
    if clean_locale is not None and not LOCALE.fullmatch(clean_locale):
        errors.append(UserError(["locale"], Code.INVALID, "locale must be a language tag such as en, fr-CA or pt_BR."))
    if errors:
        raise UserFailure(*errors)
    return token.lower() if platform is DevicePlatform.IOS else token, app_id, clean_locale


async def register_device(
    ctx: Context, *, platform: DevicePlatform, token: str, app_id: str, locale: str | None
) -> Device:
    """This contact's phone receives their notifications. A token already registered to
    another contact of the workspace (someone else signed in on the phone) moves here."""
    principal = ctx.require_contact()
    assert principal.contact_id is not None and principal.channel_id is not None
    # Anybody holding the SDK's public key can call this: counted with page views and events.
    await rate_limits.hit_widget("widget-events", str(principal.channel_id), ctx.client_ip)
    channel = await Channel.get_or_none(id=principal.channel_id)
    if channel is None or channel.kind is not ChannelKind.MOBILE_SDK:
        raise UserFailure.of("platform", Code.NOT_ALLOWED, "Devices register from a mobile SDK channel's session.")
    token, app_id, locale = _clean_device(platform, token, app_id, locale)
    values = {
        "contact_id": principal.contact_id,
        "channel_id": channel.id,
        "platform": platform,
        "app_id": app_id,
        "locale": locale,
        "updated_at": now(),
    }
    same_token = Device.filter(workspace_id=principal.workspace_id, token=token)
    if not await same_token.update(**values):
        try:
            await Device.create(workspace_id=principal.workspace_id, token=token, **values)
        except IntegrityError:  # registered at the same moment by another request
            await same_token.update(**values)
    device = await same_token.get()
    stale = (
        await Device.filter(contact_id=principal.contact_id, channel_id=channel.id)
        .order_by("-updated_at", "-id")
        .offset(MAX_DEVICES_PER_CONTACT)
        .values_list("id", flat=True)
    )
    if stale:
        await Device.filter(id__in=list(stale)).delete()
    return device


async def unregister_device(ctx: Context, token: str) -> None:
    """The contact signed out on this phone: it stops receiving their notifications."""
    principal = ctx.require_contact()
    tokens = [token.strip(), token.strip().lower()]  # APNs tokens are kept in lowercase
    removed = await Device.filter(
        workspace_id=principal.workspace_id, contact_id=principal.contact_id, token__in=tokens
    ).delete()
    if not removed:
        raise UserFailure.of("token", Code.NOT_FOUND, "No device of yours has this token.")


# -- credentials (owners and admins) ------------------------------------------------------


async def _sdk_channel(ctx: Context, gid: str, field: str = "channelId") -> Channel:
    ctx.require(Permission.WORKSPACE_MANAGE)
    channel = await ctx.scope.by_global_id(gid, "Channel", Channel)
    if channel is None:
        raise UserFailure.of(field, Code.NOT_FOUND, "No channel with this id.")
    if channel.kind is not ChannelKind.MOBILE_SDK:
        raise UserFailure.of(field, Code.NOT_ALLOWED, "Push notifications are for mobile SDK channels.")
    return channel


@dataclass
class PushSettings:
    channel: Channel
    config: PushConfig | None


async def push_settings(ctx: Context, channel_gid: str) -> PushSettings | None:
    try:
        channel = await _sdk_channel(ctx, channel_gid)
    except UserFailure:
        return None
    return PushSettings(channel, await PushConfig.get_or_none(channel_id=channel.id))


async def _config(channel: Channel) -> PushConfig:
    config, _ = await PushConfig.get_or_create(channel_id=channel.id, defaults={"workspace_id": channel.workspace_id})
    return config


def _too_long(value: str, field: str) -> None:
    if len(value) > MAX_SECRET:
        raise UserFailure.of(field, Code.TOO_LONG, f"{field} may be at most {MAX_SECRET} characters.")


async def set_apns(
    ctx: Context,
    channel_gid: str,
    *,
    private_key: str,
    key_id: str,
    team_id: str,
    bundle_id: str,
    environment: ApnsEnvironment,
) -> PushSettings:
    channel = await _sdk_channel(ctx, channel_gid)
    _too_long(private_key, "privateKey")
    errors: list[UserError] = []
    try:
        push.apns_key(private_key)
    except ValueError as exc:
        errors.append(UserError(["privateKey"], Code.INVALID, f"privateKey {exc}"))
    key_id, team_id, bundle_id = key_id.strip(), team_id.strip(), bundle_id.strip()
    if not APPLE_ID.fullmatch(key_id):
        errors.append(
            UserError(["keyId"], Code.INVALID, "keyId must be the key's 10-character id from Apple (A-Z, 0-9).")
        )
    if not APPLE_ID.fullmatch(team_id):
        errors.append(UserError(["teamId"], Code.INVALID, "teamId must be your 10-character Apple team id (A-Z, 0-9)."))
    if not APP_ID.fullmatch(bundle_id):
        errors.append(
            UserError(["bundleId"], Code.INVALID, "bundleId must be the app's bundle id, such as com.example.app.")
        )
    if errors:
        raise UserFailure(*errors)
    config = await _config(channel)
    config.update_from_dict(
        {
            "apns_key_sealed": seal(private_key.strip()),
            "apns_key_id": key_id,
            "apns_team_id": team_id,
            "apns_bundle_id": bundle_id,
            "apns_environment": environment,
        }
    )
    await config.save()
    return PushSettings(channel, config)


async def set_fcm(ctx: Context, channel_gid: str, *, service_account_json: str) -> PushSettings:
    channel = await _sdk_channel(ctx, channel_gid)
    _too_long(service_account_json, "serviceAccountJson")
    try:
        account = push.service_account(service_account_json)
    except ValueError as exc:
        raise UserFailure.of("serviceAccountJson", Code.INVALID, f"serviceAccountJson {exc}") from exc
    config = await _config(channel)
    config.update_from_dict(
        {
            "fcm_account_sealed": seal(service_account_json.strip()),
            "fcm_project_id": account["project_id"],
            "fcm_client_email": account["client_email"][:255],
        }
    )
    await config.save()
    return PushSettings(channel, config)


async def remove_credentials(ctx: Context, channel_gid: str, platform: DevicePlatform) -> PushSettings:
    channel = await _sdk_channel(ctx, channel_gid)
    config = await _config(channel)
    if platform is DevicePlatform.IOS:
        config.update_from_dict(
            {"apns_key_sealed": None, "apns_key_id": None, "apns_team_id": None, "apns_bundle_id": None}
        )
    else:
        config.update_from_dict({"fcm_account_sealed": None, "fcm_project_id": None, "fcm_client_email": None})
    await config.save()
    return PushSettings(channel, config)


async def set_options(ctx: Context, channel_gid: str, values: dict[str, Any]) -> PushSettings:
    channel = await _sdk_channel(ctx, channel_gid)
    config = await _config(channel)
    for name in ("show_message_text", "respect_quiet_hours"):
        if values.get(name) is not None:
            setattr(config, name, bool(values[name]))
    await config.save()
    return PushSettings(channel, config)


# -- the delivery log -----------------------------------------------------------------------


async def list_attempts(
    ctx: Context, *, channel_gid: str | None, first: int | None, after: str | None
) -> Page[PushAttempt]:
    """Every request to APNs and FCM, newest first (owners and admins)."""
    ctx.require(Permission.WORKSPACE_MANAGE)
    query = ctx.scope.all(PushAttempt)
    if channel_gid is not None:
        channel = await ctx.scope.by_global_id(channel_gid, "Channel", Channel)
        if channel is None:
            raise PublicError("No channel with this id.", Code.NOT_FOUND)
        query = query.filter(channel_id=channel.id)
    return await paginate(query, NEWEST_FIRST, first=first, after=after)
