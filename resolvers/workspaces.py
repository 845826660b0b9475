"""Workspaces and their people: bootstrap a workspace, agents, teams, API keys, settings
(channels: resolvers/channels.py)."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from core.auth import hash_password, new_api_key
from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.events import atomic
from core.permissions import API_KEY_SCOPES, Permission
from core.principal_cache import auth_changed
from domain import contact_fields as cf
from domain.attribution import MAX_WINDOW_HOURS
from models.channels import Channel, ChannelKind
from models.contacts import AttributeDefinition, AttributeSource
from models.workspaces import Agent, ApiKey, MatchingAttribute, Role, Team, Workspace
from resolvers import proactive
from resolvers.attributes import PLATFORM_ATTRIBUTES
from resolvers.auth import MIN_PASSWORD, revoke_agent_tokens
from resolvers.channels import create_channel
from resolvers.pagination import Order, Page, paginate
from resolvers.segments import create_predefined, resolve_ids

BY_ID = Order(("id",), descending=False)


@dataclass
class Bootstrap:
    workspace: Workspace
    owner: Agent
    api_key: str
    channel: Channel


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "workspace"


async def create_workspace(
    name: str, owner_email: str, owner_password: str, owner_name: str = "Owner", *, identity_verification: bool = True
) -> Bootstrap:
    """A new workspace with its owner, an API key, a web widget channel (verifying
    identities unless told otherwise) and the platform attribute definitions. Used by
    `parley create-workspace`, `parley seed --demo` and the tests."""
    password_hash = await hash_password(owner_password)  # before the transaction: it takes a while
    async with in_transaction():
        workspace = await Workspace.create(name=name, slug=f"{_slugify(name)}-{secrets.token_hex(3)}")
        owner = await Agent.create(
            workspace=workspace,
            email=cf.normalize_email(owner_email),
            name=owner_name,
            password_hash=password_hash,
            role=Role.OWNER,
        )
        key = new_api_key()
        await ApiKey.create(
            workspace=workspace, name="Default", prefix=key.prefix, key_hash=key.key_hash, scopes=sorted(API_KEY_SCOPES)
        )
        channel = await create_channel(
            workspace.id, ChannelKind.WEB_WIDGET, "Website", identity_verification=identity_verification
        )
        await AttributeDefinition.bulk_create(
            [
                AttributeDefinition(
                    workspace=workspace, key=k, label=label, type=t, source=AttributeSource.PLATFORM, position=i
                )
                for i, (k, label, t) in enumerate(PLATFORM_ATTRIBUTES)
            ]
        )
        await create_predefined(workspace.id)
        await proactive.create_templates(workspace.id, channel.id)
    return Bootstrap(workspace=workspace, owner=owner, api_key=key.plaintext, channel=channel)


async def get_workspace(ctx: Context) -> Workspace:
    return await ctx.scope.all(Workspace).get()


async def update_workspace(ctx: Context, values: dict[str, Any]) -> Workspace:
    ctx.require(Permission.WORKSPACE_MANAGE)
    workspace = await get_workspace(ctx)
    errors: list[UserError] = []
    if "name" in values:
        values["name"] = (values["name"] or "").strip()
        if not values["name"] or len(values["name"]) > 120:
            errors.append(UserError(["name"], Code.INVALID, "name has 1 to 120 characters."))
    if "time_zone" in values:
        try:
            values["time_zone"] = cf.normalize_time_zone(values["time_zone"] or "")
        except ValueError as exc:
            errors.append(UserError(["timeZone"], Code.INVALID, f"timeZone: {exc}."))
    if "attribution_window_hours" in values:
        hours = values["attribution_window_hours"]
        if hours is None or not 1 <= hours <= MAX_WINDOW_HOURS:
            errors.append(
                UserError(
                    ["attributionWindowHours"],
                    Code.INVALID,
                    f"attributionWindowHours is 1 to {MAX_WINDOW_HOURS} hours.",
                )
            )
    matching = values.get("matching_attribute", workspace.matching_attribute)
    key = values.get("matching_attribute_key", workspace.matching_attribute_key)
    if matching is MatchingAttribute.CUSTOM:
        if not key or not await AttributeDefinition.filter(workspace_id=workspace.id, key=key).exists():
            errors.append(
                UserError(
                    ["matchingAttributeKey"],
                    Code.NOT_FOUND,
                    "A custom matching attribute needs the key of a defined attribute.",
                )
            )
    else:
        values["matching_attribute_key"] = None
    if errors:
        raise UserFailure(*errors)
    for name, value in values.items():
        if value is not None or name == "matching_attribute_key":
            setattr(workspace, name, value)
    async with atomic(ctx.outbox):
        await workspace.save()
        auth_changed(
            ctx.outbox, workspace_id=workspace.id
        )  # agents_can_edit_crm_attributes is in every agent's permissions
    return workspace


# -- agents ----------------------------------------------------------------------------------


async def list_agents(ctx: Context, *, first: int | None, after: str | None) -> Page[Agent]:
    ctx.require_agent()
    return await paginate(ctx.scope.all(Agent), BY_ID, first=first, after=after)


async def create_agent(
    ctx: Context, *, email: str, name: str, password: str, role: Role, can_edit_contact_identity: bool
) -> Agent:
    principal = ctx.require(Permission.WORKSPACE_MANAGE)
    errors: list[UserError] = []
    try:
        email = cf.normalize_email(email)
    except ValueError as exc:
        errors.append(UserError(["email"], Code.INVALID, f"email: {exc}."))
    if not name.strip() or len(name) > 120:
        errors.append(UserError(["name"], Code.INVALID, "name has 1 to 120 characters."))
    if len(password) < MIN_PASSWORD:
        errors.append(UserError(["password"], Code.INVALID, f"A password has at least {MIN_PASSWORD} characters."))
    if role is Role.OWNER and principal.role is not Role.OWNER:
        errors.append(UserError(["role"], Code.FORBIDDEN, "Only an owner can make another owner."))
    if not errors and await ctx.scope.all(Agent).filter(email=email).exists():
        errors.append(UserError(["email"], Code.TAKEN, "An agent with this e-mail exists."))
    if errors:
        raise UserFailure(*errors)
    return await Agent.create(
        workspace_id=ctx.scope.workspace_id,
        email=email,
        name=name.strip(),
        password_hash=await hash_password(password),
        role=role,
        can_edit_contact_identity=can_edit_contact_identity,
    )


async def update_agent(ctx: Context, gid: str, values: dict[str, Any]) -> Agent:
    principal = ctx.require(Permission.WORKSPACE_MANAGE)
    agent = await ctx.scope.by_global_id(gid, "Agent", Agent)
    if agent is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No agent with this id.")
    if (values.get("role") is Role.OWNER or agent.role is Role.OWNER) and principal.role is not Role.OWNER:
        raise UserFailure.of("role", Code.FORBIDDEN, "Only an owner can change an owner or make one.")
    demoting_owner = (
        agent.role is Role.OWNER and agent.deactivated_at is None and values.get("role") not in (None, Role.OWNER)
    )
    if demoting_owner and not await _another_active_owner(ctx, agent.id):
        raise UserFailure.of("role", Code.CONFLICT, "A workspace keeps at least one active owner.")
    for name, value in values.items():
        if value is not None:
            setattr(agent, name, value)
    async with atomic(ctx.outbox):
        await agent.save()
        auth_changed(ctx.outbox, agent_id=agent.id)  # role and grants are in the agent's permissions
    return agent


async def _another_active_owner(ctx: Context, agent_id: int) -> bool:
    return await ctx.scope.all(Agent).filter(role=Role.OWNER, deactivated_at=None).exclude(id=agent_id).exists()


async def set_agent_active(ctx: Context, gid: str, *, active: bool) -> Agent:
    """Owners and admins deactivate an agent (it cannot log in; every token it holds stops
    working at once, open sockets included) or reactivate it (it logs in again; its old
    tokens stay void). An admin cannot deactivate an owner; the last active owner stays.
    The agent's conversations stay assigned to it (their history names it): reassign them;
    nothing new can be assigned to it while it is deactivated."""
    principal = ctx.require(Permission.WORKSPACE_MANAGE)
    agent = await ctx.scope.by_global_id(gid, "Agent", Agent)
    if agent is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No agent with this id.")
    if (agent.deactivated_at is None) is active:
        return agent
    if agent.role is Role.OWNER and principal.role is not Role.OWNER:
        raise UserFailure.of("id", Code.FORBIDDEN, "Only an owner can deactivate or reactivate an owner.")
    agent.deactivated_at = None if active else datetime.now(UTC)
    async with atomic(ctx.outbox):
        if not active and agent.role is Role.OWNER:
            # The active owners locked (PostgreSQL; SQLite's transactions take the write
            # lock at once): two owners deactivating each other cannot leave none.
            owners = await ctx.scope.all(Agent).filter(role=Role.OWNER, deactivated_at=None).select_for_update()
            if not {owner.id for owner in owners} - {agent.id}:
                raise UserFailure.of("id", Code.CONFLICT, "A workspace keeps at least one active owner.")
        await revoke_agent_tokens(ctx.outbox, agent.id, deactivated_at=agent.deactivated_at)
    await agent.refresh_from_db(fields=["token_version"])
    return agent


# -- teams -----------------------------------------------------------------------------------


async def list_teams(ctx: Context, *, first: int | None, after: str | None) -> Page[Team]:
    ctx.require_agent()
    return await paginate(ctx.scope.all(Team), BY_ID, first=first, after=after)


async def team_member_ids(ctx: Context, team_id: int) -> list[int]:
    async def batch(ids: list[int]) -> list[list[int]]:
        rows = await Team.filter(id__in=ids).values_list("id", "members__id")
        by_team: dict[int, list[int]] = {i: [] for i in ids}
        for tid, aid in rows:
            if aid is not None:
                by_team[tid].append(aid)
        return [sorted(by_team[i]) for i in ids]

    return await ctx.loader("team.members", batch).load(team_id)  # type: ignore[no-any-return]


async def team_members(ctx: Context, team_id: int) -> list[Agent]:
    from resolvers.contacts import load_agent

    ids = await team_member_ids(ctx, team_id)
    agents = await asyncio.gather(*(load_agent(ctx, i) for i in ids))
    return [a for a in agents if a is not None]


async def create_team(ctx: Context, name: str) -> Team:
    ctx.require(Permission.WORKSPACE_MANAGE)
    clean = name.strip()
    if not clean or len(clean) > 120:
        raise UserFailure.of("name", Code.INVALID, "name has 1 to 120 characters.")
    if await ctx.scope.all(Team).filter(name=clean).exists():
        raise UserFailure.of("name", Code.TAKEN, "A team with this name exists.")
    return await Team.create(workspace_id=ctx.scope.workspace_id, name=clean)


async def set_team_members(ctx: Context, team_gid: str, agent_gids: list[str], *, add: bool) -> Team:
    ctx.require(Permission.WORKSPACE_MANAGE)
    team = await ctx.scope.by_global_id(team_gid, "Team", Team)
    if team is None:
        raise UserFailure.of("teamId", Code.NOT_FOUND, "No team with this id.")
    errors: list[UserError] = []
    ids = await resolve_ids(ctx, agent_gids, "Agent", Agent, "agentIds", errors)
    if errors:
        raise UserFailure(*errors)
    agents = list(await ctx.scope.all(Agent).filter(id__in=ids))
    if add:
        await team.members.add(*agents)
    else:
        await team.members.remove(*agents)
    return team


# -- API keys --------------------------------------------------------------------------------


async def list_api_keys(ctx: Context, *, first: int | None, after: str | None) -> Page[ApiKey]:
    ctx.require(Permission.WORKSPACE_MANAGE)
    return await paginate(ctx.scope.all(ApiKey), BY_ID, first=first, after=after)


async def create_api_key(ctx: Context, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    ctx.require(Permission.WORKSPACE_MANAGE)
    errors: list[UserError] = []
    if not name.strip() or len(name) > 120:
        errors.append(UserError(["name"], Code.INVALID, "name has 1 to 120 characters."))
    for i, scope in enumerate(scopes):
        if scope not in API_KEY_SCOPES:
            errors.append(
                UserError(
                    ["scopes", str(i)],
                    Code.INVALID,
                    f"Unknown scope {scope!r}; one of {', '.join(sorted(API_KEY_SCOPES))}.",
                )
            )
    if errors:
        raise UserFailure(*errors)
    key = new_api_key()
    row = await ApiKey.create(
        workspace_id=ctx.scope.workspace_id,
        name=name.strip(),
        prefix=key.prefix,
        key_hash=key.key_hash,
        scopes=sorted(set(scopes)),
    )
    return row, key.plaintext


async def revoke_api_key(ctx: Context, gid: str) -> ApiKey:
    ctx.require(Permission.WORKSPACE_MANAGE)
    key = await ctx.scope.by_global_id(gid, "ApiKey", ApiKey)
    if key is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No API key with this id.")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        async with atomic(ctx.outbox):
            await key.save(update_fields=["revoked_at"])
            auth_changed(ctx.outbox, api_key_id=key.id)  # a revoked key stops working in every process
    return key
