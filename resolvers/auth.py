"""Who is calling: bearer tokens for agents and contact sessions, API keys for
integrators; `login` and `startContactSession`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import F, Subquery
from tortoise.models import Model

from core.auth import (
    DUMMY_PASSWORD_HASH,
    Claims,
    TokenKind,
    api_key_matches,
    api_key_prefix,
    decode_reset_token,
    decode_token,
    hash_password,
    issue_reset_token,
    issue_token,
    verify_password,
)
from core.config import settings
from core.context import Context
from core.errors import Code, UserFailure, forbidden
from core.events import Outbox, atomic
from core.mail import Mail, MailError, MailNotConfigured, send_mail
from core.permissions import (
    Principal,
    PrincipalKind,
    agent_permissions,
    api_key_permissions,
)
from core.principal_cache import auth_changed, principal_cache
from core.ratelimit import account_key, address_key, rate_limits
from domain.identity import MESSENGER_PREFIX, verify_user_hash
from models.channels import SESSION_KINDS, Channel
from models.contacts import Contact
from models.workspaces import Agent, ApiKey, Role, Workspace
from resolvers import contacts as contact_logic

log = logging.getLogger("parley.auth")


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
    """The principal of a token whose version is current: one query, no model object (this
    runs on every request whose credential is not cached)."""
    if claims.kind is TokenKind.AGENT:
        rows = await Agent.filter(
            id=claims.subject_id, workspace_id=claims.workspace_id, token_version=claims.version, deactivated_at=None
        ).values("role", "can_edit_contact_identity", "workspace__agents_can_edit_crm_attributes")
        if not rows:
            return None
        row = rows[0]
        return _agent_principal(
            claims.workspace_id,
            claims.subject_id,
            Role(row["role"]),
            row["can_edit_contact_identity"],
            bool(row["workspace__agents_can_edit_crm_attributes"]),
        )
    if not await _session_current(claims):
        return None
    return contact_principal(claims.workspace_id, claims.subject_id, claims.channel_id)


async def _session_current(claims: Claims) -> bool:
    """A contact session token whose contact exists with the token's session version
    (endContactSession, a merge and an identity upgrade bump it) and whose channel's
    session version is the token's (rotateChannelSecret and turning verification on bump
    it): one query."""
    if claims.kind is not TokenKind.CONTACT or claims.channel_id is None:
        return False
    contact = Contact.filter(
        id=claims.subject_id, workspace_id=claims.workspace_id, session_version=claims.contact_version
    ).values("workspace_id")
    return await Channel.filter(
        id=claims.channel_id,
        workspace_id=claims.workspace_id,
        session_version=claims.version,
        workspace_id__in=Subquery(contact),
    ).exists()


def contact_principal(workspace_id: int, contact_id: int, channel_id: int | None) -> Principal:
    return Principal(
        kind=PrincipalKind.CONTACT,
        workspace_id=workspace_id,
        contact_id=contact_id,
        channel_id=channel_id,
    )


async def agent_principal(agent: Agent) -> Principal:
    crm = await Workspace.filter(id=agent.workspace_id).values_list("agents_can_edit_crm_attributes", flat=True)
    return _agent_principal(
        agent.workspace_id, agent.id, agent.role, agent.can_edit_contact_identity, bool(crm and crm[0])
    )


def _agent_principal(workspace_id: int, agent_id: int, role: Role, can_edit_identity: bool, crm: bool) -> Principal:
    return Principal(
        kind=PrincipalKind.AGENT,
        workspace_id=workspace_id,
        agent_id=agent_id,
        role=role,
        permissions=agent_permissions(
            role, can_edit_contact_identity=can_edit_identity, agents_can_edit_crm_attributes=crm
        ),
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


async def viewer(ctx: Context, principal: Principal) -> tuple[Agent | None, Contact | None]:
    """`viewer`: the agent or the contact the credentials belong to (None for the other
    kind, an API key, or a row gone meanwhile)."""
    scope = ctx.scope
    agent = await scope.get(Agent, principal.agent_id) if principal.kind is PrincipalKind.AGENT else None
    contact = await scope.get(Contact, principal.contact_id) if principal.kind is PrincipalKind.CONTACT else None
    return agent, contact


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
        raise UserFailure.of("workspace", Code.REQUIRED, "This e-mail belongs to several workspaces: name one.")
    agent = agents[0]
    if agent.deactivated_at is not None:
        # Said only to whoever knows the password: an owner or admin can reactivate it.
        raise UserFailure.of(
            None, Code.DEACTIVATED, "This account is deactivated: ask an owner or admin of the workspace."
        )
    agent.last_login_at = datetime.now(UTC)
    await agent.save(update_fields=["last_login_at"])
    ctx.principal = await agent_principal(agent)
    return LoginResult(token=agent_token(agent), agent=agent)


def agent_token(agent: Agent) -> str:
    return issue_token(
        TokenKind.AGENT, workspace_id=agent.workspace_id, subject_id=agent.id, version=agent.token_version
    )


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
            raise UserFailure.of(
                "externalId", Code.INVALID, f"externalId may not start with {MESSENGER_PREFIX!r} (reserved)."
            )
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
            and await _session_current(claims)  # a revoked session resumes nothing
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
        version=channel.session_version,
        contact_version=contact.session_version,
    )
    # The rest of this response is read as the contact (its tags, attributes, …).
    ctx.principal = contact_principal(channel.workspace_id, contact.id, channel.id)
    return ContactSession(token=token, contact=contact, channel=channel)


# -- lifecycle: logout, passwords ----------------------------------------------------------

MIN_PASSWORD = 10


def _check_new_password(field: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserFailure.of(field, Code.INVALID, f"A password has at least {MIN_PASSWORD} characters.")
    if len(password) > 1024:
        raise UserFailure.of(field, Code.TOO_LONG, "A password has at most 1024 characters.")


async def revoke_agent_tokens(outbox: Outbox, agent_id: int, **changes: Any) -> None:
    """Every token of the agent stops working, in every process, with its open sockets
    (runtime/socket_guard.py): its token version goes up. Call it inside the transaction
    (`atomic(outbox)`); `changes` are written in the same UPDATE."""
    await Agent.filter(id=agent_id).update(token_version=F("token_version") + 1, **changes)
    auth_changed(outbox, agent_id=agent_id)


async def set_password(outbox: Outbox, agent_id: int, password: str) -> None:
    """Set an agent's password and end every token it holds (`changePassword`,
    `resetPassword`, and the `parley reset-password` command). UserFailure (field
    "newPassword") for a password that is too short or too long."""
    _check_new_password("newPassword", password)
    password_hash = await hash_password(password)  # before the transaction: it takes a while
    async with atomic(outbox):
        await revoke_agent_tokens(outbox, agent_id, password_hash=password_hash)


async def logout(ctx: Context) -> None:
    """Ends every session of the calling agent (all its tokens, on every device)."""
    principal = ctx.require_agent()
    assert principal.agent_id is not None
    async with atomic(ctx.outbox):
        await revoke_agent_tokens(ctx.outbox, principal.agent_id)


async def end_contact_session(ctx: Context) -> None:
    """endContactSession: every session of the calling contact ends, on every device, with
    its open sockets (the host app's user logged out: the widget's shutdown)."""
    principal = ctx.principal
    if principal is None or principal.kind is not PrincipalKind.CONTACT or principal.contact_id is None:
        raise forbidden("Only a contact session can end itself.")
    async with atomic(ctx.outbox):
        await Contact.filter(id=principal.contact_id).update(session_version=F("session_version") + 1)
        auth_changed(ctx.outbox, contact_id=principal.contact_id)


async def change_password(ctx: Context, current_password: str, new_password: str) -> LoginResult:
    """The calling agent's password, given the current one; every older token stops working
    and the answer holds a new one for this session."""
    principal = ctx.require_agent()
    agent = await ctx.scope.get(Agent, principal.agent_id)
    if agent is None:
        raise UserFailure.of(None, Code.NOT_FOUND, "This agent no longer exists.")
    # Guessing the current password through here is limited like logging in.
    await rate_limits.check_login(agent.email, ctx.client_ip)
    if not await verify_password(agent.password_hash, current_password):
        await rate_limits.login_failed(agent.email, ctx.client_ip)
        raise UserFailure.of("currentPassword", Code.INVALID_CREDENTIALS, "The current password is wrong.")
    await set_password(ctx.outbox, agent.id, new_password)
    await agent.refresh_from_db(fields=["token_version", "password_hash"])
    return LoginResult(token=agent_token(agent), agent=agent)


_mails: set[asyncio.Task[None]] = set()


async def request_password_reset(ctx: Context, email: str, workspace_slug: str | None) -> None:
    """E-mails a single-use reset token (valid PASSWORD_RESET_TTL_SECONDS) to the active
    agent(s) with this e-mail. The answer is the same whether or not anybody has it: the
    mail is sent after the response, in the background."""
    address = email.strip().lower()
    if ctx.client_ip:
        await rate_limits.hit(
            "password-reset-ip",
            settings.rate_limit_password_reset_per_ip,
            address_key(ctx.client_ip),
            what="Too many password resets from this address",
        )
    await rate_limits.hit(
        "password-reset-account",
        settings.rate_limit_password_reset_per_account,
        account_key(address),
        what="Too many password resets for this e-mail",
    )
    if len(address) > _max_length(Agent, "email") or len(workspace_slug or "") > _max_length(Workspace, "slug"):
        return
    candidates = Agent.filter(email=address, deactivated_at=None)
    if workspace_slug:
        candidates = candidates.filter(workspace__slug=workspace_slug)
    rows = await candidates.limit(10).values("id", "workspace_id", "token_version", "name", "workspace__name")
    for row in rows:
        token = issue_reset_token(
            workspace_id=row["workspace_id"],
            agent_id=row["id"],
            version=row["token_version"],
            ttl_seconds=settings.password_reset_ttl_seconds,
        )
        task = asyncio.get_running_loop().create_task(
            _send_reset_mail(address, row["name"], row["workspace__name"], token)
        )
        _mails.add(task)
        task.add_done_callback(_mails.discard)


async def _send_reset_mail(address: str, name: str, workspace: str, token: str) -> None:
    minutes = settings.password_reset_ttl_seconds // 60
    link = (
        f"{settings.password_reset_url}{'&' if '?' in settings.password_reset_url else '?'}token={token}\n\n"
        if settings.password_reset_url
        else ""
    )
    text = (
        f"Hello {name},\n\nSomebody (we hope you) asked to reset your password for the workspace {workspace}.\n\n"
        f"{link}Your reset token (resetPassword mutation, valid {minutes} minutes, once):\n\n{token}\n\n"
        "If you did not ask for it, ignore this e-mail: your password stays as it is.\n"
    )
    try:
        await send_mail(Mail(to=[address], subject="Reset your Parley password", text=text))
    except (MailError, MailNotConfigured, ValueError) as exc:
        log.warning("password reset mail to agent not sent: %s", exc)


USED_RESET_TOKEN = "This reset token is invalid, expired or already used."  # noqa: S105 - a message


async def reset_password(ctx: Context, token: str, new_password: str) -> LoginResult:
    """A new password with a reset token from the e-mail: once, before it expires, and only
    while the agent's token version is the one it was issued with (any logout, password
    change or other reset since voids it). Every older token of the agent stops working."""
    claims = decode_reset_token(token)
    agent = (
        None
        if claims is None
        else await Agent.get_or_none(
            id=claims.subject_id, workspace_id=claims.workspace_id, token_version=claims.version, deactivated_at=None
        )
    )
    if claims is None or agent is None:
        raise UserFailure.of("token", Code.INVALID, USED_RESET_TOKEN)
    _check_new_password("newPassword", new_password)
    password_hash = await hash_password(new_password)
    async with atomic(ctx.outbox):
        # Only if nothing used the token meanwhile: two concurrent resets, one wins.
        changed = await Agent.filter(id=agent.id, token_version=claims.version).update(
            token_version=F("token_version") + 1, password_hash=password_hash
        )
        if not changed:
            raise UserFailure.of("token", Code.INVALID, USED_RESET_TOKEN)
        auth_changed(ctx.outbox, agent_id=agent.id)
    await rate_limits.login_succeeded(agent.email)  # a reset ends the account's lockout too
    await agent.refresh_from_db(fields=["token_version", "password_hash"])
    ctx.principal = await agent_principal(agent)
    return LoginResult(token=agent_token(agent), agent=agent)
