"""Routing rules (owners and admins): which team a new conversation goes to, and whether
its online agents then take turns; each agent's capacity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from models import routing as m
from resolvers import routing as r
from schema.common import JSON, Connection, DeletePayload, UserError, mutate, node_id, provided, to_connection
from schema.segments import SegmentRulesInput, rules_to_data
from schema.workspaces import Agent, AgentPayload


@strawberry.type(
    description="""A routing rule. A new conversation a contact starts goes to the team of the
first enabled rule (by position, then age) whose conditions all hold: its channel is one of
channelIds (any when empty), the contact matches the segment's rules now, and the contact
matches `rules` (segment rules, e.g. vip EQUALS true). With autoAssign, the team's online
agents then take turns, each up to their routingCapacity of open conversations."""
)
class RoutingRule(relay.Node):
    id: relay.NodeID[int]
    name: str
    position: int
    enabled: bool
    auto_assign: bool
    channel_ids: list[relay.GlobalID]
    segment_id: relay.GlobalID | None
    rules: JSON | None = strawberry.field(description="The contact conditions as saved: {match, conditions, groups}.")
    team_id: relay.GlobalID
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, rule: m.RoutingRule) -> RoutingRule:
        return cls(
            id=rule.id,
            name=rule.name,
            position=rule.position,
            enabled=rule.enabled,
            auto_assign=rule.auto_assign,
            channel_ids=[node_id("Channel", c) for c in rule.channel_ids],
            segment_id=node_id("Segment", rule.segment_id) if rule.segment_id else None,
            rules=rule.rules,
            team_id=node_id("Team", rule.team_id),
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


@strawberry.input
class CreateRoutingRuleInput:
    name: str
    team_id: relay.GlobalID
    position: int = 0
    enabled: bool = True
    auto_assign: bool = True
    channel_ids: list[relay.GlobalID] | None = strawberry.field(default=None, description="At most 20; none: any.")
    segment_id: relay.GlobalID | None = None
    rules: SegmentRulesInput | None = None


@strawberry.input
class UpdateRoutingRuleInput:
    id: relay.GlobalID
    name: str | None = strawberry.UNSET
    team_id: relay.GlobalID | None = strawberry.UNSET
    position: int | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET
    auto_assign: bool | None = strawberry.UNSET
    channel_ids: list[relay.GlobalID] | None = strawberry.UNSET
    segment_id: relay.GlobalID | None = strawberry.UNSET
    rules: SegmentRulesInput | None = strawberry.UNSET


@strawberry.input
class DeleteRoutingRuleInput:
    id: relay.GlobalID


@strawberry.input
class SetAgentCapacityInput:
    agent_id: relay.GlobalID
    capacity: int = strawberry.field(description="0 to 100; 0 takes the agent out of routing.")


@strawberry.type
class RoutingRulePayload:
    routing_rule: RoutingRule | None = None
    user_errors: list[UserError]


RULE_FIELDS = ("name", "team_id", "position", "enabled", "auto_assign", "channel_ids", "segment_id", "rules")


def _values(input: Any) -> dict[str, Any]:
    values = provided(input, RULE_FIELDS)
    for key in ("team_id", "segment_id"):
        if values.get(key) is not None:
            values[key] = str(values[key])
    if "channel_ids" in values:
        values["channel_ids"] = [str(g) for g in values["channel_ids"] or []]
    if values.get("rules") is not None:
        values["rules"] = rules_to_data(values["rules"])
    return values


def _rule(rule: m.RoutingRule) -> dict[str, object]:
    return {"routing_rule": RoutingRule.from_model(rule)}


@strawberry.type
class RoutingQuery:
    @strawberry.field(description="The workspace's routing rules in the order they are tried (owners and admins).")
    async def routing_rules(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[RoutingRule]:
        return to_connection(await r.list_rules(info.context, first=first, after=after), RoutingRule.from_model)


@strawberry.type
class RoutingMutation:
    @strawberry.mutation(description="Owners and admins; at most 50 rules a workspace.")
    async def create_routing_rule(self, info: Info[Context, None], input: CreateRoutingRuleInput) -> RoutingRulePayload:
        return await mutate(RoutingRulePayload, r.create_rule(info.context, _values(input)), _rule)

    @strawberry.mutation
    async def update_routing_rule(self, info: Info[Context, None], input: UpdateRoutingRuleInput) -> RoutingRulePayload:
        return await mutate(RoutingRulePayload, r.update_rule(info.context, str(input.id), _values(input)), _rule)

    @strawberry.mutation
    async def delete_routing_rule(self, info: Info[Context, None], input: DeleteRoutingRuleInput) -> DeletePayload:
        return await mutate(
            DeletePayload, r.delete_rule(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )

    @strawberry.mutation(description="Owners and admins: how many open conversations routing may give an agent.")
    async def set_agent_capacity(self, info: Info[Context, None], input: SetAgentCapacityInput) -> AgentPayload:
        return await mutate(
            AgentPayload,
            r.set_agent_capacity(info.context, str(input.agent_id), input.capacity),
            lambda agent: {"agent": Agent.from_model(agent)},
        )
