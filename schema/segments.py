"""Segments: typed rule trees, visibility, preview, members; `segmentMembershipChanged`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from core import keys
from core.context import Context
from core.errors import Code, PublicError
from domain.operators import SEGMENT_OPERATORS, Operator
from models import segments as m
from resolvers import segments as r
from resolvers.contacts import load_agent
from runtime.subscriptions import listen, still_allowed
from schema.common import JSON, Connection, UserError, mutate, node_id, provided, to_connection
from schema.contacts import Contact
from schema.conversations import ConversationStatus
from schema.workspaces import Agent

SegmentVisibility = strawberry.enum(m.SegmentVisibility, name="SegmentVisibility")


@strawberry.enum
class RuleMatch(Enum):
    ALL = "all"
    ANY = "any"


def operator_enum(name: str, operators: frozenset[Operator]) -> Any:
    """A GraphQL enum of the rule operators a kind of rule takes, in Operator's order."""
    return strawberry.enum(Enum(name, [(o.name, o.value) for o in Operator if o in operators]))


RuleOperator = operator_enum("RuleOperator", SEGMENT_OPERATORS)


EVENT_COUNT_OPERATORS = {"at_least", "at_most", "exactly"}
COUNTED_FIELDS = ("event.", "conversation_count")  # fields compared with AT_LEAST / AT_MOST / EXACTLY


@strawberry.input(one_of=True, description="One typed value: text (also dates as YYYY-MM-DD), number or boolean.")
class RuleValueInput:
    text: str | None = strawberry.UNSET
    number: float | None = strawberry.UNSET
    boolean: bool | None = strawberry.UNSET


def _value(v: RuleValueInput | None) -> Any:
    if v is None:
        return None
    for name in ("text", "number", "boolean"):
        got = getattr(v, name)
        if got is not strawberry.UNSET:
            if name == "number" and isinstance(got, float) and got.is_integer():
                return int(got)
            return got
    return None


@strawberry.input
class EventPropertyRuleInput:
    name: str
    operator: RuleOperator
    value: RuleValueInput


@strawberry.input(
    description="""One condition. `field` is a contact field (email, country, last_seen_at, …),
`tag`, `attribute.<key>`, `last_conversation_at` (when the newest conversation started), or a
count with AT_LEAST / AT_MOST / EXACTLY and a number: `event.<name>` or `conversation_count`."""
)
class RuleConditionInput:
    field: str
    operator: RuleOperator
    value: RuleValueInput | None = None
    values: list[RuleValueInput] | None = strawberry.field(default=None, description="For IN, NOT_IN and BETWEEN.")
    days: int | None = strawberry.field(
        default=None,
        description="For WITHIN_LAST_DAYS, MORE_THAN_DAYS_AGO, events and conversation_count "
        "(created in the last days).",
    )
    property: EventPropertyRuleInput | None = strawberry.field(
        default=None, description="Events only: a condition on the event's properties."
    )
    status: ConversationStatus | None = strawberry.field(
        default=None, description="conversation_count only: count the conversations with this status."
    )  # type: ignore[valid-type]


@strawberry.input(description="`match` ALL or ANY over the conditions and nested groups.")
class SegmentRulesInput:
    match: RuleMatch
    conditions: list[RuleConditionInput] = strawberry.field(default_factory=list)
    groups: list[SegmentRulesInput] = strawberry.field(default_factory=list)


def rules_to_data(rules: SegmentRulesInput) -> dict[str, Any]:
    """The typed input as the plain rule data the compiler and the database keep."""
    conditions = []
    for c in rules.conditions:
        op = c.operator.value
        item: dict[str, Any] = {"field": c.field}
        if c.field.startswith(COUNTED_FIELDS) and op in EVENT_COUNT_OPERATORS:
            item.update(event_count_op=op, count=_value(c.value))
        else:
            item["operator"] = op
            if c.value is not None:
                item["value"] = _value(c.value)
        if c.values is not None:
            item["values"] = [_value(v) for v in c.values]
        if c.days is not None:
            item["days"] = c.days
        if c.property is not None:
            item.update(
                property=c.property.name,
                property_operator=c.property.operator.value,
                property_value=_value(c.property.value),
            )
        if c.status is not None:
            item["status"] = c.status.value
        conditions.append(item)
    return {"match": rules.match.value, "conditions": conditions, "groups": [rules_to_data(g) for g in rules.groups]}


@strawberry.type
class Segment(relay.Node):
    id: relay.NodeID[int]
    name: str
    description: str
    visibility: SegmentVisibility  # type: ignore[valid-type]
    rules: JSON = strawberry.field(description="The rule tree as saved: {match, conditions, groups}.")
    predefined_key: str | None = strawberry.field(
        description="all_users, new_users, recently_active, lapsed or inactive."
    )
    member_count: int = strawberry.field(description="Members as of refreshedAt.")
    refreshed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    _owner_id: strawberry.Private[int | None]

    @strawberry.field
    async def owner(self, info: Info[Context, None]) -> Agent | None:
        agent = await load_agent(info.context, self._owner_id)
        return Agent.from_model(agent) if agent else None

    @strawberry.field(description="Teams and agents a SHARED segment is shared with (their ids).")
    async def shared_with(self, info: Info[Context, None]) -> list[relay.GlobalID]:
        team_ids, agent_ids = await r.shares(self.id)
        return [node_id("Team", t) for t in team_ids] + [node_id("Agent", a) for a in agent_ids]

    @strawberry.field(
        description="Members as of the last refresh, most recently seen first: by lastSeenAt as that refresh found it. "
        "A contact seen again moves up at the next refresh, which its change queues (debounced, about a second)."
    )
    async def contacts(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Contact]:
        segment = await r.segment_by_id(info.context, self.id)
        assert segment is not None
        return to_connection(await r.list_members(info.context, segment, first=first, after=after), Contact.from_model)

    @strawberry.field(description="Contacts matching the rules right now (a live COUNT in the database).")
    async def count(self, info: Info[Context, None]) -> int:
        segment = await r.segment_by_id(info.context, self.id)
        assert segment is not None
        return await r.count_matching(info.context, segment.rules)

    @classmethod
    def from_model(cls, s: m.Segment) -> Segment:
        return cls(
            id=s.id,
            name=s.name,
            description=s.description,
            visibility=s.visibility,
            rules=s.rules,
            predefined_key=s.predefined_key,
            member_count=s.member_count,
            refreshed_at=s.refreshed_at,
            created_at=s.created_at,
            updated_at=s.updated_at,
            _owner_id=s.owner_id,
        )


@strawberry.type
class SegmentPreview:
    count: int
    contacts: list[Contact]


@strawberry.type
class SegmentMembershipChange:
    cursor: str = strawberry.field(description="The refresh that made the change; refreshes are numbered upwards.")
    segment_id: relay.GlobalID
    joined_contact_ids: list[relay.GlobalID]
    left_contact_ids: list[relay.GlobalID]


@strawberry.input
class CreateSegmentInput:
    name: str
    description: str | None = None
    rules: SegmentRulesInput
    visibility: SegmentVisibility = m.SegmentVisibility.PERSONAL  # type: ignore[valid-type]
    team_ids: list[relay.GlobalID] | None = None
    agent_ids: list[relay.GlobalID] | None = None


@strawberry.input
class UpdateSegmentInput:
    id: relay.GlobalID
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    rules: SegmentRulesInput | None = strawberry.UNSET
    visibility: SegmentVisibility | None = strawberry.UNSET  # type: ignore[valid-type]
    team_ids: list[relay.GlobalID] | None = strawberry.UNSET
    agent_ids: list[relay.GlobalID] | None = strawberry.UNSET


@strawberry.input
class DeleteSegmentInput:
    id: relay.GlobalID


@strawberry.type
class SegmentPayload:
    segment: Segment | None = None
    user_errors: list[UserError]


@strawberry.type
class DeleteSegmentPayload:
    deleted_id: relay.GlobalID | None = None
    user_errors: list[UserError]


def _segment_values(input: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    values = provided(input, fields)
    if values.get("rules") is not None:
        values["rules"] = rules_to_data(values["rules"])
    for key in ("team_ids", "agent_ids"):
        if key in values:
            values[key] = [str(g) for g in values[key] or []]
    return values


def _segment(s: m.Segment) -> dict[str, object]:
    return {"segment": Segment.from_model(s)}


@strawberry.type
class SegmentQuery:
    @strawberry.field(description="Segments you may see, by name; search matches the name.")
    async def segments(
        self, info: Info[Context, None], search: str | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[Segment]:
        return to_connection(
            await r.list_segments(info.context, search=search, first=first, after=after), Segment.from_model
        )

    @strawberry.field
    async def segment(self, info: Info[Context, None], id: relay.GlobalID) -> Segment | None:
        found = await r.find_segment(info.context, str(id))
        return Segment.from_model(found) if found else None

    @strawberry.field(description="How many contacts rules match now, and the first of them, before saving.")
    async def preview_segment(
        self, info: Info[Context, None], rules: SegmentRulesInput, first: int = 10
    ) -> SegmentPreview:
        from core.errors import UserFailure

        try:
            count, contacts = await r.preview(info.context, rules_to_data(rules), first)
        except UserFailure as failure:
            error = failure.errors[0]
            raise PublicError(f"{'.'.join(error.field or [])}: {error.message}", error.code) from None
        return SegmentPreview(count=count, contacts=[Contact.from_model(c) for c in contacts])


@strawberry.type
class SegmentMutation:
    @strawberry.mutation(description="Agents save personal segments; owners and admins may share them.")
    async def create_segment(self, info: Info[Context, None], input: CreateSegmentInput) -> SegmentPayload:
        values = _segment_values(input, ("name", "description", "rules", "visibility", "team_ids", "agent_ids"))
        return await mutate(SegmentPayload, r.create_segment(info.context, values), _segment)

    @strawberry.mutation
    async def update_segment(self, info: Info[Context, None], input: UpdateSegmentInput) -> SegmentPayload:
        values = _segment_values(input, ("name", "description", "rules", "visibility", "team_ids", "agent_ids"))
        return await mutate(SegmentPayload, r.update_segment(info.context, str(input.id), values), _segment)

    @strawberry.mutation
    async def delete_segment(self, info: Info[Context, None], input: DeleteSegmentInput) -> DeleteSegmentPayload:
        return await mutate(
            DeleteSegmentPayload, r.delete_segment(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )


@strawberry.type
class SegmentSubscription:
    @strawberry.subscription(description="Contacts joining and leaving a segment, as refreshes find them.")
    async def segment_membership_changed(
        self, info: Info[Context, None], segment_id: relay.GlobalID
    ) -> AsyncGenerator[SegmentMembershipChange, None]:
        ctx = info.context
        segment = await r.find_segment(ctx, str(segment_id))
        if segment is None:
            raise PublicError("No segment with this id.", Code.NOT_FOUND)
        channel = keys.segment_channel(segment.workspace_id, segment.id)
        too_slow = "This subscription fell too far behind and was closed; resubscribe and catch up."
        async with listen(ctx, channel, too_slow=too_slow) as events:
            async for event in events:
                ctx.reset_loaders()
                await still_allowed(
                    ctx, lambda _: _still_visible(ctx, segment_id), "You can no longer see this segment."
                )
                yield SegmentMembershipChange(
                    cursor=event["cursor"],
                    segment_id=segment_id,
                    joined_contact_ids=[node_id("Contact", i) for i in event.get("joined", [])],
                    left_contact_ids=[node_id("Contact", i) for i in event.get("left", [])],
                )


async def _still_visible(ctx: Context, segment_id: relay.GlobalID) -> bool:
    return await r.find_segment(ctx, str(segment_id)) is not None
