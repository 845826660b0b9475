"""Proactive messages, bots and bot answers; `reportPageView`, open / dismiss / answer
for contacts; the contact's `proactiveMessages` subscription."""

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
from domain.operators import PROACTIVE_OPERATORS
from models import proactive as m
from models.channels import Channel as ChannelRow
from models.workspaces import Team as TeamRow
from resolvers import conversations as rc
from resolvers import proactive as r
from runtime.execution import plain
from runtime.subscriptions import listen, still_allowed
from schema.channels import Channel
from schema.common import JSON, Connection, UserError, gid, mutate, node_id, provided, to_connection
from schema.conversations import Conversation
from schema.segments import RuleMatch, RuleValueInput, _value, operator_enum
from schema.workspaces import Team

ProactiveStatus = strawberry.enum(m.ProactiveStatus, name="ProactiveStatus")
ProactiveResponseType = strawberry.enum(m.ResponseType, name="ProactiveResponseType")
ProactiveSendWindow = strawberry.enum(
    m.SendWindow,
    name="ProactiveSendWindow",
    description="BUSINESS_HOURS: the channel's; a channel without business hours is always open.",
)
ProactiveFrequency = strawberry.enum(
    m.Frequency, name="ProactiveFrequency", description="EVERY_TIME: at most once per page view."
)


@strawberry.enum
class ProactiveMessageOrderField(Enum):
    NAME = "name"
    STATUS = "status"
    CHANNEL = "channel"
    FREQUENCY = "frequency"
    SENT = "sent"
    OPENED = "opened"
    REPLIED = "replied"
    UPDATED_AT = "updated_at"
    CREATED_AT = "created_at"


@strawberry.enum
class ProactiveOrderDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.enum
class ProactiveRuleField(Enum):
    PAGE_URL = "page_url"
    PAGE_TITLE = "page_title"
    REFERRER = "referrer"
    TIME_ON_PAGE = "time_on_page"
    VISIT_COUNT = "visit_count"
    VISITOR = "visitor"
    LANGUAGE = "language"
    COUNTRY = "country"
    DEVICE = "device"
    EVENT = "event"
    SEGMENT = "segment"
    ATTRIBUTE = "attribute"


ProactiveRuleOperator = operator_enum("ProactiveRuleOperator", PROACTIVE_OPERATORS)


@strawberry.enum
class VisitorDevice(Enum):
    DESKTOP = "desktop"
    MOBILE = "mobile"
    TABLET = "tablet"


@strawberry.input(
    description="""One condition on the visitor. PAGE_URL, PAGE_TITLE, REFERRER: text operators and MATCHES
(a wildcard over the whole text, `*` any characters, at most 10 of them). TIME_ON_PAGE (seconds), VISIT_COUNT:
numbers. VISITOR: EQUALS "new" or "returning". LANGUAGE, COUNTRY, DEVICE: EQUALS, NOT_EQUALS, IN, NOT_IN.
EVENT: the custom event reported with the page view. SEGMENT: MEMBER_OF / NOT_MEMBER_OF with segmentId.
ATTRIBUTE: the contact's custom attribute `key`."""
)
class ProactiveRuleConditionInput:
    field: ProactiveRuleField
    operator: ProactiveRuleOperator
    value: RuleValueInput | None = None
    values: list[RuleValueInput] | None = strawberry.field(default=None, description="For IN and NOT_IN.")
    key: str | None = strawberry.field(default=None, description="ATTRIBUTE: the attribute's key.")
    segment_id: relay.GlobalID | None = strawberry.field(default=None, description="SEGMENT: the segment.")


@strawberry.input(
    description="`match` ALL or ANY over the conditions and groups; groups only with more than two conditions in all."
)
class ProactiveRulesInput:
    match: RuleMatch = RuleMatch.ALL
    conditions: list[ProactiveRuleConditionInput] = strawberry.field(default_factory=list)
    groups: list[ProactiveRulesInput] = strawberry.field(default_factory=list)


def rules_to_data(rules: ProactiveRulesInput) -> dict[str, Any]:
    """The typed input as plain rule data. Another workspace's (or a malformed) segment id
    becomes -1: found in no workspace, it fails validation with the condition's path."""
    conditions = []
    for c in rules.conditions:
        item: dict[str, Any] = {"field": c.field.value, "operator": c.operator.value}
        if c.field is ProactiveRuleField.ATTRIBUTE:
            item["field"] = f"attribute.{c.key or ''}"
        if c.field is ProactiveRuleField.SEGMENT:
            item["value"] = _segment_pk(c.segment_id)
        elif c.value is not None:
            item["value"] = _value(c.value)
        if c.values is not None:
            item["values"] = [_value(v) for v in c.values]
        conditions.append(item)
    return {"match": rules.match.value, "conditions": conditions, "groups": [rules_to_data(g) for g in rules.groups]}


def _segment_pk(value: relay.GlobalID | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.node_id) if value.type_name == "Segment" else -1
    except ValueError:
        return -1


@strawberry.type
class BotAnswer(relay.Node):
    id: relay.NodeID[int]
    name: str
    body: str = strawberry.field(description="What the bot posts when it takes over the conversation.")
    published: bool
    created_at: datetime
    updated_at: datetime
    _bot_id: strawberry.Private[int]
    _channel_id: strawberry.Private[int | None]

    @strawberry.field
    def bot_id(self) -> relay.GlobalID:
        return node_id("Bot", self._bot_id)

    @strawberry.field
    @plain
    def channel(self, info: Info[Context, None]) -> Channel | None:
        return rc.related(info.context, ChannelRow, self._channel_id, Channel.from_model)  # type: ignore[no-any-return]

    @classmethod
    def from_model(cls, a: m.BotAnswer) -> BotAnswer:
        return cls(
            id=a.id,
            name=a.name,
            body=a.body,
            published=a.published,
            created_at=a.created_at,
            updated_at=a.updated_at,
            _bot_id=a.bot_id,
            _channel_id=a.channel_id,
        )


@strawberry.type
class Bot(relay.Node):
    id: relay.NodeID[int]
    name: str
    created_at: datetime

    @strawberry.field
    async def answers(self, info: Info[Context, None]) -> list[BotAnswer]:
        return [BotAnswer.from_model(a) for a in await r.bot_answers(info.context, self.id)]

    @classmethod
    def from_model(cls, b: m.Bot) -> Bot:
        return cls(id=b.id, name=b.name, created_at=b.created_at)


@strawberry.type
class ProactiveMessage(relay.Node):
    id: relay.NodeID[int]
    name: str
    status: ProactiveStatus  # type: ignore[valid-type]
    error: str | None = strawberry.field(description="HAS_ERRORS: what went wrong (its channel or bot answer).")
    response_type: ProactiveResponseType  # type: ignore[valid-type]
    text: str = strawberry.field(description="What the launcher shows; agent responses are plain text without emoji.")
    ask_name: bool
    ask_email: bool
    follow_up_text: str | None
    rules: JSON = strawberry.field(description="The rule tree as saved: {match, conditions, groups}.")
    tags: list[str] = strawberry.field(description="Tags of the conversations it starts.")
    send_window: ProactiveSendWindow  # type: ignore[valid-type]
    frequency: ProactiveFrequency  # type: ignore[valid-type]
    template_key: str | None = strawberry.field(
        description="welcome, checkout_help or pricing_returning for the predefined drafts."
    )
    sent: int
    opened: int
    replied: int = strawberry.field(
        description="Replies attributed to it (the first reply within the attribution window)."
    )
    created_at: datetime
    updated_at: datetime
    _channel_id: strawberry.Private[int | None]
    _route_team_id: strawberry.Private[int | None]
    _bot_answer_id: strawberry.Private[int | None]

    @strawberry.field
    @plain
    def channel(self, info: Info[Context, None]) -> Channel | None:
        return rc.related(info.context, ChannelRow, self._channel_id, Channel.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="Agent responses go to this team; null is the unassigned queue.")
    @plain
    def route_team(self, info: Info[Context, None]) -> Team | None:
        return rc.related(info.context, TeamRow, self._route_team_id, Team.from_model)  # type: ignore[no-any-return]

    @strawberry.field
    @plain
    def bot_answer(self, info: Info[Context, None]) -> BotAnswer | None:
        return rc.related(info.context, m.BotAnswer, self._bot_answer_id, BotAnswer.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="Who it was pushed to, newest first.")
    async def deliveries(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[ProactiveDelivery]:
        page = await r.list_deliveries(info.context, self.id, first=first, after=after)
        message = await r.message_by_id(info.context, self.id)
        return to_connection(page, lambda d: ProactiveDelivery.from_model(d, message))

    @classmethod
    def from_model(cls, x: m.ProactiveMessage) -> ProactiveMessage:
        return cls(
            id=x.id,
            name=x.name,
            status=x.status,
            error=x.error,
            response_type=x.response_type,
            text=x.text,
            ask_name=x.ask_name,
            ask_email=x.ask_email,
            follow_up_text=x.follow_up_text,
            rules=x.rules,
            tags=x.tags,
            send_window=x.send_window,
            frequency=x.frequency,
            template_key=x.template_key,
            sent=x.sent,
            opened=x.opened,
            replied=x.replied,
            created_at=x.created_at,
            updated_at=x.updated_at,
            _channel_id=x.channel_id,
            _route_team_id=x.route_team_id,
            _bot_answer_id=x.bot_answer_id,
        )


@strawberry.type(description="A proactive message as pushed to one contact, and what the contact did with it.")
class ProactiveDelivery(relay.Node):
    id: relay.NodeID[int]
    text: str
    response_type: ProactiveResponseType  # type: ignore[valid-type]
    ask_name: bool
    ask_email: bool
    opened_at: datetime | None
    dismissed_at: datetime | None
    replied_at: datetime | None
    created_at: datetime
    _message_id: strawberry.Private[int]
    _conversation_id: strawberry.Private[int | None]

    @strawberry.field
    def message_id(self) -> relay.GlobalID:
        return node_id("ProactiveMessage", self._message_id)

    @strawberry.field(description="The conversation the answer started.")
    def conversation_id(self) -> relay.GlobalID | None:
        return node_id("Conversation", self._conversation_id) if self._conversation_id else None

    @classmethod
    def from_model(cls, d: m.ProactiveDelivery, message: m.ProactiveMessage | None = None) -> ProactiveDelivery:
        if message is None:  # node(id:) fetched it (resolvers/nodes.py)
            fetched = d.__dict__.get("_message")
            message = fetched if isinstance(fetched, m.ProactiveMessage) else None
        return cls(
            id=d.id,
            text=message.text if message else "",
            response_type=message.response_type if message else m.ResponseType.AGENT,
            ask_name=bool(message and message.ask_name),
            ask_email=bool(message and message.ask_email),
            opened_at=d.opened_at,
            dismissed_at=d.dismissed_at,
            replied_at=d.replied_at,
            created_at=d.created_at,
            _message_id=d.message_id,
            _conversation_id=d.conversation_id,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ProactiveDelivery:
        return cls(
            id=row["id"],
            text=row["text"],
            response_type=m.ResponseType(row["responseType"]),
            ask_name=row["askName"],
            ask_email=row["askEmail"],
            opened_at=None,
            dismissed_at=None,
            replied_at=None,
            created_at=datetime.fromisoformat(row["createdAt"]),
            _message_id=row["messageId"],
            _conversation_id=None,
        )


async def delivery_node(ctx: Context, d: m.ProactiveDelivery) -> ProactiveDelivery:
    return ProactiveDelivery.from_model(d, await r.message_by_id(ctx, d.message_id))


@strawberry.type
class ProactiveMessageEvent:
    cursor: str
    delivery: ProactiveDelivery


# -- inputs and payloads -----------------------------------------------------------------------


@strawberry.input
class ProactiveMessageOrder:
    field: ProactiveMessageOrderField
    direction: ProactiveOrderDirection = ProactiveOrderDirection.DESC


@strawberry.input
class ProactiveMessageFields:
    response_type: ProactiveResponseType | None = strawberry.UNSET  # type: ignore[valid-type]
    channel_id: relay.GlobalID | None = strawberry.UNSET
    text: str | None = strawberry.UNSET
    ask_name: bool | None = strawberry.UNSET
    ask_email: bool | None = strawberry.UNSET
    follow_up_text: str | None = strawberry.UNSET
    route_team_id: relay.GlobalID | None = strawberry.field(
        default=strawberry.UNSET, description="null: the unassigned queue."
    )
    bot_answer_id: relay.GlobalID | None = strawberry.UNSET
    rules: ProactiveRulesInput | None = strawberry.UNSET
    tags: list[str] | None = strawberry.UNSET
    send_window: ProactiveSendWindow | None = strawberry.UNSET  # type: ignore[valid-type]
    frequency: ProactiveFrequency | None = strawberry.UNSET  # type: ignore[valid-type]


@strawberry.input
class CreateProactiveMessageInput(ProactiveMessageFields):
    name: str


@strawberry.input
class UpdateProactiveMessageInput(ProactiveMessageFields):
    id: relay.GlobalID
    name: str | None = strawberry.UNSET


@strawberry.input
class ProactiveMessageIdInput:
    id: relay.GlobalID


@strawberry.input
class CreateBotInput:
    name: str


@strawberry.input
class CreateBotAnswerInput:
    bot_id: relay.GlobalID
    channel_id: relay.GlobalID
    name: str
    body: str


@strawberry.input
class UpdateBotAnswerInput:
    id: relay.GlobalID
    channel_id: relay.GlobalID | None = strawberry.UNSET
    name: str | None = strawberry.UNSET
    body: str | None = strawberry.UNSET


@strawberry.input
class BotAnswerIdInput:
    id: relay.GlobalID


@strawberry.input(
    description="Report when a page opens (timeOnPageSeconds 0), again as time passes on it, and with a custom event."
)
class ReportPageViewInput:
    url: str
    title: str | None = None
    referrer: str | None = None
    device: VisitorDevice | None = None
    language: str | None = strawberry.field(default=None, description="The browser's language, e.g. fr-CA.")
    time_on_page_seconds: int = 0
    event: str | None = strawberry.field(default=None, description="A custom event that just happened on the page.")


@strawberry.input
class ProactiveDeliveryIdInput:
    delivery_id: relay.GlobalID


@strawberry.input
class AnswerProactiveMessageInput:
    delivery_id: relay.GlobalID
    body: str | None = strawberry.field(
        default=None, description="The contact's reply; optional when it shares the requested details."
    )
    name: str | None = None
    email: str | None = None
    website_url: str | None = None


@strawberry.type
class ProactiveMessagePayload:
    proactive_message: ProactiveMessage | None = None
    user_errors: list[UserError]


@strawberry.type
class ProactiveDeletePayload:
    deleted_id: relay.GlobalID | None = None
    user_errors: list[UserError]


@strawberry.type
class BotPayload:
    bot: Bot | None = None
    user_errors: list[UserError]


@strawberry.type
class BotAnswerPayload:
    bot_answer: BotAnswer | None = None
    user_errors: list[UserError]


@strawberry.type
class ReportPageViewPayload:
    delivery: ProactiveDelivery | None = strawberry.field(
        default=None, description="The proactive message pushed, if any (also sent over proactiveMessages)."
    )
    visit_number: int | None = strawberry.field(default=None, description="The contact's how-manyth visit this is.")
    user_errors: list[UserError]


@strawberry.type
class ProactiveDeliveryPayload:
    delivery: ProactiveDelivery | None = None
    user_errors: list[UserError]


@strawberry.type
class AnswerProactiveMessagePayload:
    delivery: ProactiveDelivery | None = None
    conversation: Conversation | None = None
    user_errors: list[UserError]


def _message(x: m.ProactiveMessage) -> dict[str, object]:
    return {"proactive_message": ProactiveMessage.from_model(x)}


def _answer(a: m.BotAnswer) -> dict[str, object]:
    return {"bot_answer": BotAnswer.from_model(a)}


FIELDS = (
    "response_type",
    "channel_id",
    "text",
    "ask_name",
    "ask_email",
    "follow_up_text",
    "route_team_id",
    "bot_answer_id",
    "rules",
    "tags",
    "send_window",
    "frequency",
)


def _values(input: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    values = provided(input, fields)
    for key in ("channel_id", "route_team_id", "bot_answer_id"):
        if key in values:
            values[key] = gid(values[key])
    if "rules" in values and values["rules"] is not None:
        values["rules"] = rules_to_data(values["rules"])
    return values


async def _with_delivery(ctx: Context, work: Any) -> Any:
    d = await work
    return await delivery_node(ctx, d)


# -- root fields -------------------------------------------------------------------------------


@strawberry.type
class ProactiveQuery:
    @strawberry.field(
        description="Proactive messages, sorted by any column (ties broken by id); "
        "agents read, owners and admins manage."
    )
    async def proactive_messages(
        self,
        info: Info[Context, None],
        order_by: ProactiveMessageOrder | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[ProactiveMessage]:
        order = order_by or ProactiveMessageOrder(field=ProactiveMessageOrderField.UPDATED_AT)
        page = await r.list_messages(
            info.context,
            column=order.field.value,
            descending=order.direction is ProactiveOrderDirection.DESC,
            first=first,
            after=after,
        )
        return to_connection(page, ProactiveMessage.from_model)

    @strawberry.field
    async def proactive_message(self, info: Info[Context, None], id: relay.GlobalID) -> ProactiveMessage | None:
        found = await r.find_message(info.context, str(id))
        return ProactiveMessage.from_model(found) if found else None

    @strawberry.field
    async def bots(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Bot]:
        return to_connection(await r.list_bots(info.context, first=first, after=after), Bot.from_model)


@strawberry.type
class ProactiveMutation:
    @strawberry.mutation(description="Owners and admins: a new draft.")
    async def create_proactive_message(
        self, info: Info[Context, None], input: CreateProactiveMessageInput
    ) -> ProactiveMessagePayload:
        return await mutate(
            ProactiveMessagePayload, r.create_message(info.context, _values(input, ("name", *FIELDS))), _message
        )

    @strawberry.mutation(description="Edit in any status; a live message must stay publishable.")
    async def update_proactive_message(
        self, info: Info[Context, None], input: UpdateProactiveMessageInput
    ) -> ProactiveMessagePayload:
        work = r.update_message(info.context, str(input.id), _values(input, ("name", *FIELDS)))
        return await mutate(ProactiveMessagePayload, work, _message)

    @strawberry.mutation(description="A draft copy of a draft, live or paused message.")
    async def clone_proactive_message(
        self, info: Info[Context, None], input: ProactiveMessageIdInput
    ) -> ProactiveMessagePayload:
        return await mutate(ProactiveMessagePayload, r.clone_message(info.context, str(input.id)), _message)

    @strawberry.mutation(
        description="Draft (or a fixed message with errors) → live, "
        "once its channel, text or bot answer, and rules check out."
    )
    async def publish_proactive_message(
        self, info: Info[Context, None], input: ProactiveMessageIdInput
    ) -> ProactiveMessagePayload:
        return await mutate(ProactiveMessagePayload, r.transition(info.context, str(input.id), "publish"), _message)

    @strawberry.mutation(description="Live → paused.")
    async def pause_proactive_message(
        self, info: Info[Context, None], input: ProactiveMessageIdInput
    ) -> ProactiveMessagePayload:
        return await mutate(ProactiveMessagePayload, r.transition(info.context, str(input.id), "pause"), _message)

    @strawberry.mutation(description="Paused → live (validated again).")
    async def resume_proactive_message(
        self, info: Info[Context, None], input: ProactiveMessageIdInput
    ) -> ProactiveMessagePayload:
        return await mutate(ProactiveMessagePayload, r.transition(info.context, str(input.id), "resume"), _message)

    @strawberry.mutation(description="In any status.")
    async def delete_proactive_message(
        self, info: Info[Context, None], input: ProactiveMessageIdInput
    ) -> ProactiveDeletePayload:
        return await mutate(
            ProactiveDeletePayload, r.delete_message(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )

    @strawberry.mutation(description="Owners and admins.")
    async def create_bot(self, info: Info[Context, None], input: CreateBotInput) -> BotPayload:
        return await mutate(BotPayload, r.create_bot(info.context, input.name), lambda b: {"bot": Bot.from_model(b)})

    @strawberry.mutation(description="An unpublished answer of a bot on a widget or SDK channel.")
    async def create_bot_answer(self, info: Info[Context, None], input: CreateBotAnswerInput) -> BotAnswerPayload:
        values = {"channel_id": str(input.channel_id), "name": input.name, "body": input.body}
        return await mutate(BotAnswerPayload, r.create_bot_answer(info.context, str(input.bot_id), values), _answer)

    @strawberry.mutation(description="Moving it to another channel leaves live messages using it with errors.")
    async def update_bot_answer(self, info: Info[Context, None], input: UpdateBotAnswerInput) -> BotAnswerPayload:
        values = provided(input, ("channel_id", "name", "body"))
        if "channel_id" in values:
            values["channel_id"] = gid(values["channel_id"])
        return await mutate(BotAnswerPayload, r.update_bot_answer(info.context, str(input.id), values), _answer)

    @strawberry.mutation
    async def publish_bot_answer(self, info: Info[Context, None], input: BotAnswerIdInput) -> BotAnswerPayload:
        return await mutate(BotAnswerPayload, r.set_bot_answer_published(info.context, str(input.id), True), _answer)

    @strawberry.mutation(description="Live messages using it get errors and stop sending.")
    async def unpublish_bot_answer(self, info: Info[Context, None], input: BotAnswerIdInput) -> BotAnswerPayload:
        return await mutate(BotAnswerPayload, r.set_bot_answer_published(info.context, str(input.id), False), _answer)

    @strawberry.mutation(description="Live messages using it get errors and stop sending.")
    async def delete_bot_answer(self, info: Info[Context, None], input: BotAnswerIdInput) -> ProactiveDeletePayload:
        return await mutate(
            ProactiveDeletePayload, r.delete_bot_answer(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )

    @strawberry.mutation(
        description="A contact's session: where the visitor is. May push a proactive message (see proactiveMessages)."
    )
    async def report_page_view(self, info: Info[Context, None], input: ReportPageViewInput) -> ReportPageViewPayload:
        view = r.PageView(
            url=input.url,
            title=input.title,
            referrer=input.referrer,
            device=input.device.value if input.device else None,
            language=input.language,
            time_on_page=input.time_on_page_seconds,
            event=input.event,
        )

        async def work() -> dict[str, Any]:
            report = await r.report_page_view(info.context, view)
            return {
                "delivery": await delivery_node(info.context, report.delivery) if report.delivery else None,
                "visit_number": report.visit.number,
            }

        return await mutate(ReportPageViewPayload, work(), lambda x: x)

    @strawberry.mutation(description="A contact's session: the visitor clicked the message.")
    async def open_proactive_message(
        self, info: Info[Context, None], input: ProactiveDeliveryIdInput
    ) -> ProactiveDeliveryPayload:
        work = _with_delivery(info.context, r.open_delivery(info.context, str(input.delivery_id)))
        return await mutate(ProactiveDeliveryPayload, work, lambda d: {"delivery": d})

    @strawberry.mutation(description="A contact's session: closed it; it may come back as its frequency allows.")
    async def dismiss_proactive_message(
        self, info: Info[Context, None], input: ProactiveDeliveryIdInput
    ) -> ProactiveDeliveryPayload:
        work = _with_delivery(info.context, r.dismiss_delivery(info.context, str(input.delivery_id)))
        return await mutate(ProactiveDeliveryPayload, work, lambda d: {"delivery": d})

    @strawberry.mutation(
        description="A contact's session: answer it, starting a conversation (tagged, routed to agents or the bot)."
    )
    async def answer_proactive_message(
        self, info: Info[Context, None], input: AnswerProactiveMessageInput
    ) -> AnswerProactiveMessagePayload:
        async def work() -> dict[str, Any]:
            done = await r.answer_delivery(
                info.context,
                str(input.delivery_id),
                body=input.body,
                name=input.name,
                email=input.email,
                website_url=input.website_url,
            )
            return {
                "delivery": await delivery_node(info.context, done.delivery),
                "conversation": Conversation.from_model(done.conversation),
            }

        return await mutate(AnswerProactiveMessagePayload, work(), lambda x: x)


@strawberry.type
class ProactiveSubscription:
    @strawberry.subscription(description="A contact's session: the proactive messages pushed to it.")
    async def proactive_messages(self, info: Info[Context, None]) -> AsyncGenerator[ProactiveMessageEvent, None]:
        ctx = info.context
        principal = ctx.require_contact()
        assert principal.contact_id is not None
        channel = keys.contact_proactive_channel(principal.workspace_id, principal.contact_id)
        async with listen(ctx, channel) as events:
            async for event in events:
                await still_allowed(ctx, lambda p: p.contact_id == principal.contact_id)
                yield ProactiveMessageEvent(
                    cursor=event["cursor"], delivery=ProactiveDelivery.from_row(event["delivery"])
                )
