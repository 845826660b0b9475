"""Who is calling: bearer tokens for agents and contact sessions, API keys for
integrators; `login` and `startContactSession`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.models import Model

from core.auth import (
    DUMMY_PASSWORD_HASH,
    Claims,
    TokenKind,
    api_key_matches,
    api_key_prefix,
    decode_token,
    issue_token,
    verify_password,
)
from core.context import Context
from core.errors import Code, UserFailure
from core.events import atomic
from core.permissions import (
    Principal,
    PrincipalKind,
    agent_permissions,
    api_key_permissions,
)
from core.principal_cache import principal_cache
from core.ratelimit import rate_limits
from domain.identity import MESSENGER_PREFIX, verify_user_hash
from models.channels import SESSION_KINDS, Channel
from models.contacts import Contact
from models.workspaces import Agent, ApiKey, Role, Workspace
from resolvers import contacts as contact_logic


async def authenticate(authorization: str | None) -> Principal | None:
    """The principal behind an `Authorization: Bearer …` value, or None."""
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    if api_key_prefix(credential):
        return await principal_cache.get(credential, lambda: _api_key_principal(credential))
    claims = decode_token(credential)  # expiry on every request, signature once per token
    if claims is None:
        return None
    return await principal_cache.get(credential, lambda: _token_principal(claims))


async def _token_principal(claims: Claims) -> Principal | None:
    if claims.kind is TokenKind.AGENT:
        # One query, no model object: this runs on every request.
        rows = await Agent.filter(id=claims.subject_id, workspace_id=claims.workspace_id).values(
            "role", "can_edit_contact_identity", "workspace__agents_can_edit_crm_attributes"
        )
        if not rows:
            return None
        row = rows[0]
        return _agent_principal(
            claims.workspace_id, claims.subject_id, Role(row["role"]), row["can_edit_contact_identity"],
            bool(row["workspace__agents_can_edit_crm_attributes"]),
        )  # fmt: skip
    contact_exists = await Contact.filter(
        id=claims.subject_id, workspace_id=claims.workspace_id
    ).exists()
    if not contact_exists:
        return None
    return contact_principal(claims.workspace_id, claims.subject_id, claims.channel_id)


def contact_principal(workspace_id: int, contact_id: int, channel_id: int | None) -> Principal:
    return Principal(
        kind=PrincipalKind.CONTACT,
        workspace_id=workspace_id,
        contact_id=contact_id,
        channel_id=channel_id,
    )


async def agent_principal(agent: Agent) -> Principal:
    crm = await Workspace.filter(id=agent.workspace_id).values_list(
        "agents_can_edit_crm_attributes", flat=True
    )
    return _agent_principal(agent.workspace_id, agent.id, agent.role, agent.can_edit_contact_identity, bool(crm and crm[0]))


def _agent_principal(workspace_id: int, agent_id: int, role: Role, can_edit_identity: bool, crm: bool) -> Principal:
    return Principal(
        kind=PrincipalKind.AGENT,
        workspace_id=workspace_id,
        agent_id=agent_id,
        role=role,
        permissions=agent_permissions(role, can_edit_contact_identity=can_edit_identity, agents_can_edit_crm_attributes=crm),
    )


async def _api_key_principal(plaintext: str) -> Principal | None:
    key = await ApiKey.get_or_none(prefix=api_key_prefix(plaintext), revoked_at=None)
    if key is None or not api_key_matches(plaintext, key.key_hash):
        return None
    stamp = datetime.now(UTC)
    if key.last_used_at is None or stamp - key.last_used_at > LAST_USED_RESOLUTION:
        # Written at most once a minute per key: a busy integration costs no extra writes.
        await ApiKey.filter(id=key.id).update(last_used_at=stamp)
    return Principal(
        kind=PrincipalKind.API_KEY,
        workspace_id=key.workspace_id,
        api_key_id=key.id,
        permissions=api_key_permissions(key.scopes),
    )


@dataclass
class LoginResult:
    token: str
    agent: Agent


def _max_length(model: type[Model], field: str) -> int:
    return int(model._meta.fields_map[field].max_length)  # type: ignore[attr-defined]


async def login(ctx: Context, email: str, password: str, workspace_slug: str | None) -> LoginResult:
    # Before any password is checked: a locked account is refused even the right one.
    await rate_limits.check_login(email, ctx.client_ip)
    address = email.strip().lower()
    candidates = Agent.filter(email=address)
    if workspace_slug:
        candidates = candidates.filter(workspace__slug=workspace_slug)
    # A value longer than its column matches nobody (Tortoise refuses it in a filter with a
    # ValidationError, which answered INTERNAL: tests/security/test_fuzz.py).
    fits = len(address) <= _max_length(Agent, "email") and len(workspace_slug or "") <= _max_length(Workspace, "slug")
    agents = await candidates.limit(2) if fits else []
    # The password is checked before anything is said about the e-mail: without it, an
    # unknown e-mail, a wrong password and an e-mail of several workspaces look the same.
    # A dummy hash is verified when nobody matched, so timing does not reveal accounts.
    if agents:
        ok = any([await verify_password(a.password_hash, password) for a in agents])
    else:
        await verify_password(DUMMY_PASSWORD_HASH, password)
        ok = False
    if not ok:
        await rate_limits.login_failed(email, ctx.client_ip)
        raise UserFailure.of(None, Code.INVALID_CREDENTIALS, "Wrong e-mail or password.")
    await rate_limits.login_succeeded(email)
    if len(agents) > 1:
        raise UserFailure.of(
            "workspace", Code.REQUIRED, "This e-mail belongs to several workspaces: name one."
        )
    agent = agents[0]
    agent.last_login_at = datetime.now(UTC)
    await agent.save(update_fields=["last_login_at"])
    token = issue_token(TokenKind.AGENT, workspace_id=agent.workspace_id, subject_id=agent.id)
    ctx.principal = await agent_principal(agent)
    return LoginResult(token=token, agent=agent)


@dataclass
class ContactSession:
    token: str
    contact: Contact
    channel: Channel


LAST_USED_RESOLUTION = timedelta(minutes=1)


async def start_contact_session(
    ctx: Context,
    *,
    channel_key: str,
    external_id: str | None,
    user_hash: str | None,
    email: str | None,
    name: str | None,
    session_token: str | None,
    device: dict[str, Any],
    platform_attributes: Any,
) -> ContactSession:
    """Open (or resume) the session of the widget's or SDK's user.

    - Anonymous visitors get a new contact, or keep theirs by passing back the session
      token they were given.
    - Identified users pass an external id and, to prove it, `user_hash` =
      HMAC-SHA256(channel secret, external id): required on a channel that verifies
      identities, checked wherever it is given. Which contact an external id reaches, with
      or without proof, is resolvers.contacts._session_contact: an unproven one never
      reaches a contact that a trusted writer or a verified session identified, nor any
      contact once a channel of the workspace verifies identities.
    - The e-mail and name fill the contact's empty fields only (contacts.fill_from_session)
      and never join this session to another contact.
    """
    await rate_limits.hit_widget("contact-session", channel_key, ctx.client_ip)
    if platform_attributes is not None and not isinstance(platform_attributes, dict):
        raise UserFailure.of("platformAttributes", Code.INVALID, "platformAttributes must be a JSON object.")
    channel = await Channel.get_or_none(public_key=channel_key)
    if channel is None or channel.kind not in SESSION_KINDS:
        raise UserFailure.of("channelKey", Code.NOT_FOUND, "No widget or SDK channel has this key.")
    verified = False
    if external_id is not None:
        external_id = external_id.strip()
        if not external_id:
            raise UserFailure.of("externalId", Code.INVALID, "externalId must not be blank.")
        if external_id.startswith(MESSENGER_PREFIX):
            raise UserFailure.of("externalId", Code.INVALID, f"externalId may not start with {MESSENGER_PREFIX!r} (reserved).")
        verified = verify_user_hash(channel.secret, external_id, user_hash)
        if not verified and (channel.identity_verification or user_hash):
            raise UserFailure.of(
                "userHash",
                Code.IDENTITY_VERIFICATION_FAILED,
                "userHash is not the HMAC-SHA256 of externalId with the channel secret.",
            )
    elif channel.identity_verification and (email or name):
        # Unverified sessions cannot claim an identity on a verified channel.
        raise UserFailure.of(
            "externalId", Code.REQUIRED, "This channel verifies identities: pass externalId and userHash."
        )

    previous: Contact | None = None
    if session_token:
        claims = decode_token(session_token)
        if (
            claims is not None
            and claims.kind is TokenKind.CONTACT
            and claims.workspace_id == channel.workspace_id
        ):
            previous = await Contact.get_or_none(id=claims.subject_id, workspace_id=channel.workspace_id)

    async with atomic(ctx.outbox):
        contact = await contact_logic.identify_contact(
            ctx.outbox,
            workspace_id=channel.workspace_id,
            channel=channel,
            previous=previous,
            external_id=external_id,
            verified=verified,
            email=email,
            name=name,
            device=device,
            platform_attributes=platform_attributes or {},
        )
    token = issue_token(
        TokenKind.CONTACT,
        workspace_id=channel.workspace_id,
        subject_id=contact.id,
        channel_id=channel.id,
    )
    # The rest of this response is read as the contact (its tags, attributes, …).
    ctx.principal = contact_principal(channel.workspace_id, contact.id, channel.id)
    return ContactSession(token=token, contact=contact, channel=channel)
