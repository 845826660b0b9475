"""Routing rules and agents' capacities, for owners and admins (workspace:manage):
list, create, update, delete; `setAgentCapacity`. What the rules do is services/routing.py.

Every id an input names is looked up in the caller's workspace: another workspace's team,
channel, segment or agent is NOT_FOUND, like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.permissions import Permission
from models.channels import Channel
from models.routing import RoutingRule
from models.segments import Segment
from models.workspaces import Agent, Team
from resolvers.pagination import Order, Page, paginate
from resolvers.segments import parse_rules
from services.routing import MAX_RULES

RULE_ORDER = Order(("position", "id"), descending=False)
MAX_NAME = 120
MAX_CHANNELS = 20
MAX_POSITION = 10_000
MAX_CAPACITY = 100


async def list_rules(ctx: Context, *, first: int | None, after: str | None) -> Page[RoutingRule]:
    """In the order they are tried."""
    ctx.require(Permission.WORKSPACE_MANAGE)
    return await paginate(ctx.scope.all(RoutingRule), RULE_ORDER, first=first, after=after, default_size=MAX_RULES)


async def _rule_for_write(ctx: Context, gid: str) -> RoutingRule:
    ctx.require(Permission.WORKSPACE_MANAGE)
    rule = await ctx.scope.by_global_id(gid, "RoutingRule", RoutingRule)
    if rule is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No routing rule with this id.")
    return rule


async def _apply(ctx: Context, rule: RoutingRule, values: dict[str, Any]) -> None:
    """Check `values` (the input's fields the client sent) and set them on `rule`; every
    bad field is reported at once."""
    errors: list[UserError] = []
    if "name" in values:
        name = " ".join((values["name"] or "").split())
        if not name or len(name) > MAX_NAME:
            errors.append(UserError(["name"], Code.INVALID, f"name has 1 to {MAX_NAME} characters."))
        rule.name = name
    if "position" in values:
        position = values["position"]
        if position is None or not 0 <= position <= MAX_POSITION:
            errors.append(UserError(["position"], Code.INVALID, f"position is 0 to {MAX_POSITION}."))
        else:
            rule.position = position
    if "enabled" in values:
        rule.enabled = bool(values["enabled"])
    if "auto_assign" in values:
        rule.auto_assign = bool(values["auto_assign"])
    if "team_id" in values:
        team = await ctx.scope.by_global_id(values["team_id"], "Team", Team) if values["team_id"] else None
        if team is None:
            errors.append(UserError(["teamId"], Code.NOT_FOUND, "No team with this id."))
        else:
            rule.team_id = team.id
    if "segment_id" in values:
        segment = None
        if values["segment_id"]:
            segment = await ctx.scope.by_global_id(values["segment_id"], "Segment", Segment)
            if segment is None:
                errors.append(UserError(["segmentId"], Code.NOT_FOUND, "No segment with this id."))
        rule.segment_id = segment.id if segment else None
    if "channel_ids" in values:
        gids = values["channel_ids"] or []
        if len(gids) > MAX_CHANNELS:
            errors.append(UserError(["channelIds"], Code.INVALID, f"A rule names at most {MAX_CHANNELS} channels."))
            gids = []
        ids: list[int] = []
        for i, gid in enumerate(gids):
            channel = await ctx.scope.by_global_id(gid, "Channel", Channel)
            if channel is None:
                errors.append(UserError(["channelIds", str(i)], Code.NOT_FOUND, "No channel with this id."))
            elif channel.id not in ids:
                ids.append(channel.id)
        rule.channel_ids = ids
    if "rules" in values:
        if values["rules"] is not None:
            try:
                await parse_rules(ctx.scope.workspace_id, values["rules"])
            except UserFailure as failure:
                errors.extend(failure.errors)
        rule.rules = values["rules"]
    if errors:
        raise UserFailure(*errors)


async def create_rule(ctx: Context, values: dict[str, Any]) -> RoutingRule:
    ctx.require(Permission.WORKSPACE_MANAGE)
    if await ctx.scope.all(RoutingRule).count() >= MAX_RULES:
        raise UserFailure.of(None, Code.NOT_ALLOWED, f"A workspace has at most {MAX_RULES} routing rules.")
    rule = RoutingRule(workspace_id=ctx.scope.workspace_id, channel_ids=[])
    await _apply(ctx, rule, values)
    await rule.save()
    return rule


async def update_rule(ctx: Context, gid: str, values: dict[str, Any]) -> RoutingRule:
    rule = await _rule_for_write(ctx, gid)
    await _apply(ctx, rule, values)
    await rule.save()
    return rule


async def delete_rule(ctx: Context, gid: str) -> None:
    rule = await _rule_for_write(ctx, gid)
    await rule.delete()


async def set_agent_capacity(ctx: Context, gid: str, capacity: int) -> Agent:
    """How many open conversations routing may assign the agent (0: none)."""
    ctx.require(Permission.WORKSPACE_MANAGE)
    agent = await ctx.scope.by_global_id(gid, "Agent", Agent)
    if agent is None:
        raise UserFailure.of("agentId", Code.NOT_FOUND, "No agent with this id.")
    if not 0 <= capacity <= MAX_CAPACITY:
        raise UserFailure.of("capacity", Code.INVALID, f"capacity is 0 to {MAX_CAPACITY}.")
    agent.routing_capacity = capacity
    await agent.save(update_fields=["routing_capacity"])
    return agent
