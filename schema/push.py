"""Mobile push notifications: devices (contact sessions), provider credentials and options
(owners and admins; secrets go in and never come out), and the delivery log."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from core.scoping import encode_global_id
from models import push as m
from resolvers import push as r
from schema.common import Connection, UserError, mutate, provided, to_connection

DevicePlatform = strawberry.enum(m.DevicePlatform, name="DevicePlatform")
ApnsEnvironment = strawberry.enum(m.ApnsEnvironment, name="ApnsEnvironment")
PushOutcome = strawberry.enum(m.PushOutcome, name="PushOutcome")


@strawberry.type
class PushDevice:
    """A phone that receives the contact's notifications."""

    id: strawberry.ID
    platform: DevicePlatform  # type: ignore[valid-type]
    app_id: str
    locale: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, d: m.Device) -> PushDevice:
        return cls(
            id=strawberry.ID(encode_global_id("PushDevice", d.id)),
            platform=d.platform,
            app_id=d.app_id,
            locale=d.locale,
            created_at=d.created_at,
            updated_at=d.updated_at,
        )


@strawberry.type
class ApnsSettings:
    """APNs token-based authentication. The .p8 key itself is never shown."""

    configured: bool
    key_id: str
    team_id: str
    bundle_id: str
    environment: ApnsEnvironment  # type: ignore[valid-type]


@strawberry.type
class FcmSettings:
    """FCM HTTP v1. The service account's private key is never shown."""

    configured: bool
    project_id: str
    client_email: str


@strawberry.type
class PushSettings:
    channel_id: relay.GlobalID
    apns: ApnsSettings | None = strawberry.field(description="Null until APNs credentials are set.")
    fcm: FcmSettings | None = strawberry.field(description="Null until FCM credentials are set.")
    show_message_text: bool = strawberry.field(
        description="Notifications carry the reply's text; off: only that there is one."
    )
    respect_quiet_hours: bool = strawberry.field(
        description="Nothing is pushed 20:00–08:00 in the contact's time zone (when known): it waits."
    )
    updated_at: datetime | None

    @classmethod
    def from_result(cls, s: r.PushSettings) -> PushSettings:
        c = s.config
        apns = fcm = None
        if c is not None and c.apns_key_sealed and c.apns_key_id and c.apns_team_id and c.apns_bundle_id:
            apns = ApnsSettings(
                configured=True,
                key_id=c.apns_key_id,
                team_id=c.apns_team_id,
                bundle_id=c.apns_bundle_id,
                environment=c.apns_environment,
            )
        if c is not None and c.fcm_account_sealed and c.fcm_project_id:
            fcm = FcmSettings(configured=True, project_id=c.fcm_project_id, client_email=c.fcm_client_email or "")
        return cls(
            channel_id=relay.GlobalID("Channel", str(s.channel.id)),
            apns=apns,
            fcm=fcm,
            show_message_text=c.show_message_text if c else False,
            respect_quiet_hours=c.respect_quiet_hours if c else True,
            updated_at=c.updated_at if c else None,
        )


@strawberry.type
class PushAttempt:
    """One request to APNs or FCM for one device."""

    id: strawberry.ID
    channel_id: relay.GlobalID
    contact_id: relay.GlobalID
    conversation_id: relay.GlobalID
    message_id: relay.GlobalID
    device_id: strawberry.ID = strawberry.field(description="The PushDevice (which may have been removed since).")
    platform: DevicePlatform  # type: ignore[valid-type]
    token_hint: str = strawberry.field(description="The device token's last 8 characters.")
    attempt: int
    outcome: PushOutcome  # type: ignore[valid-type]
    status_code: int | None = strawberry.field(description="The provider's HTTP status; null when there was no answer.")
    error: str | None = strawberry.field(
        description="Our words, or the provider's reason code (Unregistered, UNREGISTERED, …)."
    )
    duration_ms: int
    at: datetime

    @classmethod
    def from_model(cls, a: m.PushAttempt) -> PushAttempt:
        return cls(
            id=strawberry.ID(encode_global_id("PushAttempt", a.id)),
            channel_id=relay.GlobalID("Channel", str(a.channel_id)),
            contact_id=relay.GlobalID("Contact", str(a.contact_id)),
            conversation_id=relay.GlobalID("Conversation", str(a.conversation_id)),
            message_id=relay.GlobalID("Message", str(a.message_id)),
            device_id=strawberry.ID(encode_global_id("PushDevice", a.device_id)),
            platform=a.platform,
            token_hint=a.token_hint,
            attempt=a.attempt,
            outcome=a.outcome,
            status_code=a.status_code,
            error=a.error,
            duration_ms=a.duration_ms,
            at=a.at,
        )


# -- inputs and payloads -------------------------------------------------------------------


@strawberry.input
class RegisterDeviceInput:
    platform: DevicePlatform  # type: ignore[valid-type]
    token: str = strawberry.field(description="The APNs device token (hex) or the FCM registration token.")
    app_id: str = strawberry.field(description="The app's bundle id (iOS) or package name (Android).")
    locale: str | None = None


@strawberry.input
class UnregisterDeviceInput:
    token: str


@strawberry.input
class SetApnsCredentialsInput:
    channel_id: relay.GlobalID
    private_key: str = strawberry.field(
        description="The .p8 file's text (BEGIN PRIVATE KEY). Stored encrypted; never shown again."
    )
    key_id: str
    team_id: str
    bundle_id: str = strawberry.field(description="The app's bundle id: the apns-topic of every notification.")
    environment: ApnsEnvironment = m.ApnsEnvironment.PRODUCTION  # type: ignore[valid-type]


@strawberry.input
class SetFcmCredentialsInput:
    channel_id: relay.GlobalID
    service_account_json: str = strawberry.field(
        description="The service account key file's JSON. Stored encrypted; never shown again."
    )


@strawberry.input
class RemovePushCredentialsInput:
    channel_id: relay.GlobalID
    platform: DevicePlatform  # type: ignore[valid-type]


@strawberry.input
class SetPushOptionsInput:
    channel_id: relay.GlobalID
    show_message_text: bool | None = strawberry.UNSET
    respect_quiet_hours: bool | None = strawberry.UNSET


@strawberry.type
class RegisterDevicePayload:
    device: PushDevice | None = None
    user_errors: list[UserError]


@strawberry.type
class UnregisterDevicePayload:
    removed: bool = False
    user_errors: list[UserError]


@strawberry.type
class PushSettingsPayload:
    push_settings: PushSettings | None = None
    user_errors: list[UserError]


def _settings(result: r.PushSettings) -> dict[str, object]:
    return {"push_settings": PushSettings.from_result(result)}


@strawberry.type
class PushQuery:
    @strawberry.field(
        description="A mobile SDK channel's push providers and options (owners and admins); null for other channels."
    )
    async def push_settings(self, info: Info[Context, None], channel_id: relay.GlobalID) -> PushSettings | None:
        found = await r.push_settings(info.context, str(channel_id))
        return PushSettings.from_result(found) if found else None

    @strawberry.field(description="Every request to APNs and FCM, newest first (owners and admins).")
    async def push_attempts(
        self,
        info: Info[Context, None],
        channel_id: relay.GlobalID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[PushAttempt]:
        page = await r.list_attempts(
            info.context, channel_gid=str(channel_id) if channel_id else None, first=first, after=after
        )
        return to_connection(page, PushAttempt.from_model)


@strawberry.type
class PushMutation:
    @strawberry.mutation(
        description="From a mobile SDK session: this phone receives the contact's notifications. "
        "A token another contact registered moves to this one."
    )
    async def register_device(self, info: Info[Context, None], input: RegisterDeviceInput) -> RegisterDevicePayload:
        work = r.register_device(
            info.context,
            platform=m.DevicePlatform(input.platform),
            token=input.token,
            app_id=input.app_id,
            locale=input.locale,
        )
        return await mutate(RegisterDevicePayload, work, lambda d: {"device": PushDevice.from_model(d)})

    @strawberry.mutation(
        description="From a contact session: this phone stops receiving the contact's notifications (sign-out)."
    )
    async def unregister_device(
        self, info: Info[Context, None], input: UnregisterDeviceInput
    ) -> UnregisterDevicePayload:
        return await mutate(
            UnregisterDevicePayload, r.unregister_device(info.context, input.token), lambda _: {"removed": True}
        )

    @strawberry.mutation(description="APNs token-based credentials of a mobile SDK channel (owners and admins).")
    async def set_apns_credentials(
        self, info: Info[Context, None], input: SetApnsCredentialsInput
    ) -> PushSettingsPayload:
        work = r.set_apns(
            info.context,
            str(input.channel_id),
            private_key=input.private_key,
            key_id=input.key_id,
            team_id=input.team_id,
            bundle_id=input.bundle_id,
            environment=m.ApnsEnvironment(input.environment),
        )
        return await mutate(PushSettingsPayload, work, _settings)

    @strawberry.mutation(
        description="FCM HTTP v1 credentials (a service account) of a mobile SDK channel (owners and admins)."
    )
    async def set_fcm_credentials(
        self, info: Info[Context, None], input: SetFcmCredentialsInput
    ) -> PushSettingsPayload:
        work = r.set_fcm(info.context, str(input.channel_id), service_account_json=input.service_account_json)
        return await mutate(PushSettingsPayload, work, _settings)

    @strawberry.mutation(description="Forget one platform's credentials: its devices get no more notifications.")
    async def remove_push_credentials(
        self, info: Info[Context, None], input: RemovePushCredentialsInput
    ) -> PushSettingsPayload:
        work = r.remove_credentials(info.context, str(input.channel_id), m.DevicePlatform(input.platform))
        return await mutate(PushSettingsPayload, work, _settings)

    @strawberry.mutation
    async def set_push_options(self, info: Info[Context, None], input: SetPushOptionsInput) -> PushSettingsPayload:
        work = r.set_options(
            info.context, str(input.channel_id), provided(input, ("show_message_text", "respect_quiet_hours"))
        )
        return await mutate(PushSettingsPayload, work, _settings)
