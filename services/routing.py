"""Routing, as the API and the jobs both do it: the workspace's first matching rule gives a
new conversation its team (`route`, inside the creating transaction), then the team's
online agents take turns (`assign_next`, after the commit), each up to their capacity of
open conversations; the sweep (`reassign_offline`, an arq cron in jobs/routing.py) moves
the open conversations of agents who have been offline longer than OFFLINE_TIMEOUT and
hands waiting ones to agents who have room.

Rules are segment rule trees (domain/segments.py), compiled to SQL and tried all at once
over the one contact: `SELECT CASE WHEN <rule 1> THEN 0 WHEN <rule 2> THEN 1 ... END`.

Fair under concurrency: a team's pick runs under a Redis lock held until the assignment
commits, so two conversations arriving together see each other's assignment; the
capacity is counted in the database (open conversations assigned to the agent).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any

from redis.exceptions import LockError
from tortoise import connections
from tortoise.functions import Count

from core import keys
from core.clock import now
from core.db import dialect
from core.events import Outbox, atomic
from core.presence import online_ids
from domain import segments as rules_lang
from models.conversations import ActivityKind, Conversation, ConversationStatus
from models.routing import RoutingRule
from models.segments import Segment
from models.workspaces import Agent
from services.conversations import record_activity
from services.segments import attribute_types

log = logging.getLogger("parley.routing")

MAX_RULES = 50
OFFLINE_TIMEOUT = timedelta(minutes=5)
LOCK_TIMEOUT = 10.0  # s: a pick and its commit; the lock frees itself should its holder die
LOCK_WAIT = 5.0
SWEEP_BATCH = 200


# -- rules -----------------------------------------------------------------------------------


async def matching_rule(conversation: Conversation) -> RoutingRule | None:
    """The first enabled rule, in order, that this new conversation meets."""
    rules = [
        rule
        for rule in await RoutingRule.filter(workspace_id=conversation.workspace_id, enabled=True)
        .order_by("position", "id")
        .limit(MAX_RULES)
        if not rule.channel_ids or conversation.channel_id in rule.channel_ids
    ]
    if not rules:
        return None
    segment_ids = [r.segment_id for r in rules if r.segment_id is not None]
    segments = {s.id: s.rules for s in await Segment.filter(id__in=segment_ids)} if segment_ids else {}
    types = await attribute_types(conversation.workspace_id)
    postgres = dialect() == "postgres"
    cases, params = [], []
    for index, rule in enumerate(rules):
        parts = []
        for tree in (rule.rules, segments.get(rule.segment_id) if rule.segment_id else None):
            if not tree:
                continue
            try:
                group = rules_lang.parse(tree, types)
            except rules_lang.RuleError:
                # An attribute definition changed under a saved rule: it matches nobody.
                log.warning("routing rule %s no longer compiles", rule.id)
                parts.append("1 = 0")
                continue
            where, more = rules_lang.compile_where(group, dialect(), now=now(), param_start=len(params) + 1)
            parts.append(f"({where})")
            params += more
        cases.append(f"WHEN {' AND '.join(parts) or '1 = 1'} THEN {index}")
        if not parts:
            break  # matches everyone: the rules after it are never reached
    params.append(conversation.contact_id)
    contact = f"${len(params)}" if postgres else "?"
    sql = f"SELECT CASE {' '.join(cases)} ELSE -1 END AS hit FROM contacts c WHERE c.id = {contact}"  # noqa: S608
    rows = await connections.get("default").execute_query_dict(sql, params)
    hit = int(rows[0]["hit"]) if rows else -1
    return rules[hit] if hit >= 0 else None


async def route(outbox: Outbox, conversation: Conversation) -> RoutingRule | None:
    """Give a new conversation the team of the first matching rule; once the creating
    transaction commits, assign it round-robin if the rule says so."""
    rule = await matching_rule(conversation)
    if rule is None:
        return None
    conversation.team_id = rule.team_id
    await Conversation.filter(id=conversation.id).update(team_id=rule.team_id)
    hub = outbox.hub
    if rule.auto_assign and hub is not None:

        async def assign() -> None:
            agent_id = await assign_next(Outbox(hub, outbox.jobs), hub.redis, conversation.id)
            if agent_id is not None:
                conversation.assignee_id = agent_id

        outbox.after_commit(assign)
    return rule


# -- round-robin -----------------------------------------------------------------------------


async def assign_next(
    outbox: Outbox, redis: Any, conversation_id: int, *, exclude: frozenset[int] = frozenset()
) -> int | None:
    """Assign an open conversation to the next online agent of its team with room, taking
    turns; the agent's id, or None when nobody has room (it waits in the team's queue)."""
    conversation = await Conversation.get_or_none(id=conversation_id, status=ConversationStatus.OPEN)
    if conversation is None or conversation.team_id is None:
        return None
    workspace_id, team_id = conversation.workspace_id, conversation.team_id
    try:
        async with redis.lock(
            keys.routing_lock(workspace_id, team_id), timeout=LOCK_TIMEOUT, blocking_timeout=LOCK_WAIT
        ):
            agent_id = await _next_agent(redis, workspace_id, team_id, exclude)
            if agent_id is None:
                return None
            async with atomic(outbox):
                current = await Conversation.get_or_none(id=conversation_id, status=ConversationStatus.OPEN)
                if current is None or current.team_id != team_id or current.assignee_id == agent_id:
                    return None
                previous = {"assigneeId": current.assignee_id, "teamId": current.team_id}
                current.assignee_id = agent_id
                await current.save(update_fields=["assignee_id", "updated_at"])
                await record_activity(outbox, current, ActivityKind.ASSIGNED, previous=previous, reason="routing")
            await redis.set(keys.routing_turn(workspace_id, team_id), agent_id)
            return agent_id
    except LockError:
        log.warning("routing: team %s busy; conversation %s waits for the sweep", team_id, conversation_id)
        return None


async def _next_agent(redis: Any, workspace_id: int, team_id: int, exclude: frozenset[int]) -> int | None:
    """The first agent after the last one served, in id order, who is online, active, not
    excluded and below their capacity."""
    online = await online_ids(redis, workspace_id, "agent")
    members = await (
        Agent.filter(workspace_id=workspace_id, teams__id=team_id, deactivated_at__isnull=True, routing_capacity__gt=0)
        .order_by("id")
        .values_list("id", "routing_capacity")
    )
    ready = [(agent_id, capacity) for agent_id, capacity in members if agent_id in online and agent_id not in exclude]
    if not ready:
        return None
    loads = dict(
        await Conversation.filter(assignee_id__in=[a for a, _ in ready], status=ConversationStatus.OPEN)
        .annotate(n=Count("id"))
        .group_by("assignee_id")
        .values_list("assignee_id", "n")
    )
    last = await redis.get(keys.routing_turn(workspace_id, team_id))
    start = next((i for i, (a, _) in enumerate(ready) if last is not None and a > int(last)), 0)
    for agent_id, capacity in ready[start:] + ready[:start]:
        if loads.get(agent_id, 0) < capacity:
            return agent_id
    return None


# -- the sweep -------------------------------------------------------------------------------


async def reassign_offline(outbox: Outbox, redis: Any, *, offline_after: timedelta = OFFLINE_TIMEOUT) -> int:
    """In each team that rules assign to: move the open conversations of agents offline for
    longer than `offline_after` (counted from the first sweep that found them offline) to agents
    online, or back to the team's queue when nobody has room; then hand waiting
    conversations to agents with room. Idempotent; returns how many conversations moved."""
    routed: dict[int, set[int]] = defaultdict(set)
    for workspace_id, team_id in await RoutingRule.filter(enabled=True, auto_assign=True).values_list(
        "workspace_id", "team_id"
    ):
        routed[workspace_id].add(team_id)
    moved = 0
    for workspace_id, teams in routed.items():
        moved += await _sweep_workspace(outbox, redis, workspace_id, sorted(teams), offline_after)
    return moved


async def _sweep_workspace(
    outbox: Outbox, redis: Any, workspace_id: int, teams: list[int], offline_after: timedelta
) -> int:
    online = await online_ids(redis, workspace_id, "agent")
    open_in_teams = Conversation.filter(workspace_id=workspace_id, team_id__in=teams, status=ConversationStatus.OPEN)
    holders = set(
        await open_in_teams.filter(assignee_id__isnull=False).distinct().values_list("assignee_id", flat=True)
    )
    offline_key = keys.routing_offline(workspace_id)
    stamp = now().timestamp()
    seen = {int(k): float(v) for k, v in (await redis.hgetall(offline_key)).items()}
    back = [a for a in seen if a in online or a not in holders]
    if back:
        await redis.hdel(offline_key, *back)
    gone = [a for a in holders if a not in online]
    for agent_id in gone:
        if agent_id not in seen:
            await redis.hsetnx(offline_key, agent_id, stamp)
    due = frozenset(a for a in gone if a in seen and stamp - seen[a] >= offline_after.total_seconds())
    moved = 0
    if due:
        stranded = await open_in_teams.filter(assignee_id__in=due).order_by("id").limit(SWEEP_BATCH)
        for conversation in stranded:
            if await assign_next(outbox, redis, conversation.id, exclude=due) is None:
                await _unassign(outbox, conversation)
            moved += 1
    waiting = await open_in_teams.filter(assignee_id__isnull=True).order_by("id").limit(SWEEP_BATCH)
    for conversation in waiting:
        if await assign_next(outbox, redis, conversation.id, exclude=due) is None:
            break  # nobody has room
        moved += 1
    return moved


async def _unassign(outbox: Outbox, conversation: Conversation) -> None:
    async with atomic(outbox):
        previous = {"assigneeId": conversation.assignee_id, "teamId": conversation.team_id}
        changed = await Conversation.filter(
            id=conversation.id, assignee_id=conversation.assignee_id, status=ConversationStatus.OPEN
        ).update(assignee_id=None, updated_at=now())
        if changed:
            conversation.assignee_id = None
            await record_activity(
                outbox, conversation, ActivityKind.ASSIGNED, previous=previous, reason="agent_offline"
            )
