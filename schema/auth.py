"""Signing in: `login` for agents, `startContactSession` for the widget and SDKs, and
`viewer`, who the token belongs to."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from core.context import Context
from resolvers import auth as r
from schema.channels import Channel
from schema.common import JSON, UserError, mutate
from schema.contacts import Contact
from schema.workspaces import Agent


@strawberry.input
class LoginInput:
    email: str
    password: str
    workspace: str | None = strawberry.field(
        default=None, description="Workspace slug, when the e-mail belongs to several."
    )


@strawberry.type
class LoginPayload:
    token: str | None = strawberry.field(default=None, description="Send as `Authorization: Bearer <token>`.")
    agent: Agent | None = None
    user_errors: list[UserError]


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.input
class RequestPasswordResetInput:
    email: str
    workspace: str | None = strawberry.field(
        default=None, description="Workspace slug; unset: every workspace where this e-mail is an agent."
    )


@strawberry.input
class ResetPasswordInput:
    token: str = strawberry.field(description="The token from the reset e-mail.")
    new_password: str


@strawberry.type
class OkPayload:
    ok: bool = False
    user_errors: list[UserError]


@strawberry.input
class DeviceInput:
    """What the widget or SDK knows of the visitor's device and page."""

    locale: str | None = None
    browser_language: str | None = None
    os: str | None = None
    browser: str | None = None
    time_zone: str | None = None
    referrer: str | None = None


@strawberry.input
class StartContactSessionInput:
    channel_key: str = strawberry.field(description="The channel's public key.")
    external_id: str | None = strawberry.field(default=None, description="Your user id, for identified users.")
    user_hash: str | None = strawberry.field(
        default=None,
        description="HMAC-SHA256 of externalId with the channel secret, hex; "
        "required when the channel verifies identities.",
    )
    email: str | None = None
    name: str | None = None
    session_token: str | None = strawberry.field(
        default=None, description="A previous session's token, to stay the same anonymous visitor."
    )
    device: DeviceInput | None = None
    platform_attributes: JSON | None = strawberry.field(
        default=None, description="Values of the workspace's platform attributes."
    )


@strawberry.type
class StartContactSessionPayload:
    token: str | None = strawberry.field(default=None, description="The contact session's bearer token.")
    contact: Contact | None = None
    channel: Channel | None = None
    user_errors: list[UserError]


@strawberry.type
class Viewer:
    kind: str
    agent: Agent | None
    contact: Contact | None
    scopes: list[str]


@strawberry.type
class AuthQuery:
    @strawberry.field(description="Who the current credentials belong to; null when anonymous.")
    async def viewer(self, info: Info[Context, None]) -> Viewer | None:
        principal = info.context.principal
        if principal is None:
            return None
        agent, contact = await r.viewer(info.context, principal)
        return Viewer(
            kind=principal.kind.value.upper(),
            agent=Agent.from_model(agent) if agent else None,
            contact=Contact.from_model(contact) if contact else None,
            scopes=sorted(p.value for p in principal.permissions),
        )


def _signed_in(result: r.LoginResult) -> dict[str, object]:
    """login, changePassword and resetPassword answer alike: the new token and its agent."""
    return {"token": result.token, "agent": Agent.from_model(result.agent)}


@strawberry.type
class AuthMutation:
    @strawberry.mutation
    async def login(self, info: Info[Context, None], input: LoginInput) -> LoginPayload:
        return await mutate(
            LoginPayload, r.login(info.context, input.email, input.password, input.workspace), _signed_in
        )

    @strawberry.mutation(
        description="Ends every session of the calling agent: all its tokens stop working, on every device."
    )
    async def logout(self, info: Info[Context, None]) -> OkPayload:
        return await mutate(OkPayload, r.logout(info.context), lambda _: {"ok": True})

    @strawberry.mutation(
        description="Ends every session of the calling contact (widget or SDK): its tokens stop working and its "
        "open sockets close. Call it when your app's user logs out."
    )
    async def end_contact_session(self, info: Info[Context, None]) -> OkPayload:
        return await mutate(OkPayload, r.end_contact_session(info.context), lambda _: {"ok": True})

    @strawberry.mutation(
        description="The calling agent's password; every older token stops working, `token` is this session's new one."
    )
    async def change_password(self, info: Info[Context, None], input: ChangePasswordInput) -> LoginPayload:
        return await mutate(
            LoginPayload, r.change_password(info.context, input.current_password, input.new_password), _signed_in
        )

    @strawberry.mutation(
        description="E-mails a single-use reset token to the agent with this e-mail. "
        "Answers `ok` whether or not the e-mail is known."
    )
    async def request_password_reset(self, info: Info[Context, None], input: RequestPasswordResetInput) -> OkPayload:
        return await mutate(
            OkPayload, r.request_password_reset(info.context, input.email, input.workspace), lambda _: {"ok": True}
        )

    @strawberry.mutation(
        description="A new password with the e-mailed token (once, before it expires); every older token stops working."
    )
    async def reset_password(self, info: Info[Context, None], input: ResetPasswordInput) -> LoginPayload:
        return await mutate(LoginPayload, r.reset_password(info.context, input.token, input.new_password), _signed_in)

    @strawberry.mutation(
        description="The widget or SDK opens the session of its user (see DESIGN.md, identity verification)."
    )
    async def start_contact_session(
        self, info: Info[Context, None], input: StartContactSessionInput
    ) -> StartContactSessionPayload:
        device = input.device
        device_values = (
            {k: getattr(device, k) for k in ("locale", "browser_language", "os", "browser", "time_zone", "referrer")}
            if device
            else {}
        )
        ip = info.context.client_ip
        if ip:
            device_values["ip"] = ip
        work = r.start_contact_session(
            info.context,
            channel_key=input.channel_key,
            external_id=input.external_id,
            user_hash=input.user_hash,
            email=input.email,
            name=input.name,
            session_token=input.session_token,
            device=device_values,
            platform_attributes=input.platform_attributes,
        )
        return await mutate(
            StartContactSessionPayload,
            work,
            lambda s: {
                "token": s.token,
                "contact": Contact.from_model(s.contact),
                "channel": Channel.from_model(s.channel),
            },
        )
