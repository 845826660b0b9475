"""Conversations, messages and topics; the inbox; `messageAdded`, `conversationEvents`,
`unreadCount` for agents and `myMessages` for contacts."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from enum import StrEnum
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from core import keys
from core.context import Context
from core.errors import Code, PublicError
from core.permissions import Permission, PrincipalKind
from domain import schedule
from models import conversations as m
from models.channels import Channel as ChannelRow
from models.contacts import Contact as ContactRow
from models.workspaces import Agent as AgentRow
from models.workspaces import Team as TeamRow
from resolvers import conversations as r
from resolvers import inbox as r_inbox
from resolvers import short_links
from resolvers.attachments import attachments_of
from runtime.execution import plain
from runtime.fanout import direct, shared, shared_async
from runtime.guards import guard
from runtime.subscriptions import listen, still_allowed
from schema.attachments import Attachment, Upload
from schema.channels import Channel
from schema.common import Connection, UserError, build, gid, mutate, node_id, provided, selected_names, to_connection
from schema.contacts import Contact, columns_for
from schema.short_links import ShortLink
from schema.workspaces import Agent, Team

ConversationStatus = strawberry.enum(m.ConversationStatus, name="ConversationStatus")
SenderKind = strawberry.enum(m.SenderKind, name="SenderKind")
MessageDirection = strawberry.enum(m.Direction, name="MessageDirection")
DeliveryState = strawberry.enum(m.DeliveryState, name="DeliveryState")
ConversationEventKind = strawberry.enum(m.ActivityKind, name="ConversationEventKind")
SnoozePreset = strawberry.enum(schedule.SnoozePreset, name="SnoozePreset")


@strawberry.enum(description="Which part of the inbox: assigned to me, to nobody, to one of my teams, or everything.")
class InboxView(StrEnum):
    MINE = "mine"
    UNASSIGNED = "unassigned"
    TEAM = "team"
    ALL = "all"


def _is_contact(info: Info[Context, None]) -> bool:
    principal = info.context.principal
    return principal is None or principal.kind is PrincipalKind.CONTACT


@strawberry.type
class Topic(relay.Node):
    id: relay.NodeID[int]
    name: str
    created_at: datetime

    @classmethod
    def from_model(cls, t: m.Topic) -> Topic:
        return cls(id=t.id, name=t.name, created_at=t.created_at)


def _conversation_refusal(ctx: Context, contact_id: int | None) -> str | None:
    """Agents and keys need conversations:read; a contact session reads its own
    conversations (and, through them, their messages: every way a session reaches a
    message passes through its conversation, checked there or at the root field)."""
    viewing = ctx.viewing_contact_id
    if viewing is not None and (contact_id is None or viewing == contact_id):
        return None
    return ctx.lacks(Permission.CONVERSATIONS_READ)


@guard(lambda ctx, _: _conversation_refusal(ctx, None))
@strawberry.type
class Message(relay.Node):
    id: relay.NodeID[int]
    body: str = strawberry.field(description="Card numbers in it were masked before it was stored.")
    sender_kind: SenderKind  # type: ignore[valid-type]
    direction: MessageDirection  # type: ignore[valid-type]
    delivery_state: DeliveryState  # type: ignore[valid-type]
    created_at: datetime
    _conversation_id: strawberry.Private[int]
    _agent_id: strawberry.Private[int | None]
    # Known when built from an event: no read per subscriber.
    _sender_name: strawberry.Private[str | None] = None
    _attachments: strawberry.Private[list[dict[str, Any]] | None] = None

    @strawberry.field
    def conversation_id(self) -> relay.GlobalID:
        return node_id("Conversation", self._conversation_id)

    @strawberry.field(description="The agent who wrote it; null for contacts' sessions, bots and the system.")
    @plain
    def agent(self, info: Info[Context, None]) -> Agent | None:
        if _is_contact(info):
            return None
        return r.related(info.context, AgentRow, self._agent_id, Agent.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="What the widget shows as the sender: the agent's name, or null.")
    @plain
    def sender_name(self, info: Info[Context, None]) -> str | None:
        if self._sender_name is not None or self._agent_id is None:
            return self._sender_name
        return r.related(info.context, AgentRow, self._agent_id, lambda a: a.name)  # type: ignore[no-any-return]

    @strawberry.field(description="Files sent with it, with signed download links.")
    async def attachments(self, info: Info[Context, None]) -> list[Attachment]:
        if self._attachments is not None:
            workspace_id = info.context.require_principal().workspace_id
            return [Attachment.from_row(workspace_id, a) for a in self._attachments]
        return [Attachment.from_model(a) for a in await attachments_of(info.context, self.id)]

    @strawberry.field(
        description="Outbound SMS: its links as sent (short) and their clicks. Empty in a contact session."
    )
    async def short_links(self, info: Info[Context, None]) -> list[ShortLink]:
        if _is_contact(info):
            return []
        return [ShortLink.from_model(s) for s in await short_links.message_links(info.context, self.id)]

    @classmethod
    def from_model(cls, x: m.Message) -> Message:
        return cls(
            id=x.id,
            body=x.body,
            sender_kind=x.sender_kind,
            direction=x.direction,
            delivery_state=x.delivery_state,
            created_at=x.created_at,
            _conversation_id=x.conversation_id,
            _agent_id=x.agent_id,
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        """From an event's copy of the row: no database read per subscriber."""
        return cls(
            id=row["id"],
            body=row["body"],
            sender_kind=m.SenderKind(row["senderKind"]),
            direction=m.Direction(row["direction"]),
            delivery_state=m.DeliveryState(row["deliveryState"]),
            created_at=datetime.fromisoformat(row["createdAt"]),
            _conversation_id=row["conversationId"],
            _agent_id=row["agentId"],
            _sender_name=row.get("senderName"),
            _attachments=row.get("attachments", []),
        )


@guard(lambda ctx, _: ctx.lacks(Permission.CONVERSATIONS_READ))
@strawberry.type(description="An agent's private note in a conversation: never shown to the contact, never sent.")
class ConversationNote(relay.Node):
    id: relay.NodeID[int]
    body: str = strawberry.field(
        description="Card numbers in it were masked before it was stored. `@agent@example.com` mentions an agent."
    )
    created_at: datetime
    _conversation_id: strawberry.Private[int]
    _agent_id: strawberry.Private[int | None]
    _mentioned_agent_ids: strawberry.Private[list[int]]

    @strawberry.field
    def conversation_id(self) -> relay.GlobalID:
        return node_id("Conversation", self._conversation_id)

    @strawberry.field(description="The agent who wrote it; null once deleted.")
    @plain
    def agent(self, info: Info[Context, None]) -> Agent | None:
        return r.related(info.context, AgentRow, self._agent_id, Agent.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="The agents of the workspace it mentions.")
    async def mentions(self, info: Info[Context, None]) -> list[Agent]:
        rows = await r.by_id_loader(info.context, AgentRow).load_many(self._mentioned_agent_ids)
        return [Agent.from_model(a) for a in rows if a is not None]

    @classmethod
    def from_model(cls, x: m.ConversationNote) -> ConversationNote:
        return cls(
            id=x.id,
            body=x.body,
            created_at=x.created_at,
            _conversation_id=x.conversation_id,
            _agent_id=x.agent_id,
            _mentioned_agent_ids=list(x.mentioned_agent_ids),
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ConversationNote:
        """From an event's copy of the note: no database read per subscriber."""
        return cls(
            id=row["id"],
            body=row["body"],
            created_at=datetime.fromisoformat(row["createdAt"]),
            _conversation_id=row["conversationId"],
            _agent_id=row["agentId"],
            _mentioned_agent_ids=row["mentionedAgentIds"],
        )


@strawberry.type(description="Someone typing in a conversation: hide it at expiresAt unless a newer one renews it.")
class TypingIndicator:
    sender_kind: SenderKind  # type: ignore[valid-type]
    active: bool = strawberry.field(description="False: they stopped (sent their message).")
    sender_name: str | None = strawberry.field(description="The agent's name; null for the contact.")
    expires_at: datetime
    _conversation_id: strawberry.Private[int]
    _agent_id: strawberry.Private[int | None]

    @strawberry.field
    def conversation_id(self) -> relay.GlobalID:
        return node_id("Conversation", self._conversation_id)

    @strawberry.field(description="The agent typing; null for the contact, and in a contact's session.")
    @plain
    def agent(self, info: Info[Context, None]) -> Agent | None:
        if _is_contact(info):
            return None
        return r.related(info.context, AgentRow, self._agent_id, Agent.from_model)  # type: ignore[no-any-return]

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> TypingIndicator:
        notice = event["typing"]
        return cls(
            sender_kind=m.SenderKind(notice["senderKind"]),
            active=event["kind"] == m.FeedKind.TYPING.value,
            sender_name=notice["senderName"],
            expires_at=datetime.fromisoformat(notice["expiresAt"]),
            _conversation_id=event["conversationId"],
            _agent_id=notice["agentId"],
        )


@guard(lambda ctx, c: _conversation_refusal(ctx, c._contact_id))
@strawberry.type
class Conversation(relay.Node):
    id: relay.NodeID[int]
    status: ConversationStatus  # type: ignore[valid-type]
    snoozed_until: datetime | None
    subject: str | None
    vip: bool = strawberry.field(description="The contact is a VIP: the queue sorts these first.")
    unread_count: int = strawberry.field(description="Messages from the contact no agent has read.")
    contact_unread_count: int = strawberry.field(description="Replies the contact has not read.")
    rating: int | None
    rated_at: datetime | None
    website_url: str | None
    ip: str | None
    last_message_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None = strawberry.field(description="The latest resolution; null while not resolved.")
    first_response_seconds: int | None = strawberry.field(
        description="Seconds from the start to the first agent reply, in the channel's business hours if it has them."
    )
    resolution_seconds: int | None = strawberry.field(
        description="Seconds from the start to the latest resolution (while resolved), in the channel's business "
        "hours if it has them."
    )
    created_at: datetime
    updated_at: datetime
    _contact_id: strawberry.Private[int]
    _channel_id: strawberry.Private[int]
    _topic_id: strawberry.Private[int | None]
    _assignee_id: strawberry.Private[int | None]
    _team_id: strawberry.Private[int | None]
    _last_message_id: strawberry.Private[int | None]
    _attributed_source: strawberry.Private[str | None]
    # The contact's row as a list page read it: the columns its selection reads (None:
    # not read with the page, or not found; the loader answers then).
    _contact_row: strawberry.Private[dict[str, Any] | None] = None

    @strawberry.field
    @plain
    def contact(self, info: Info[Context, None]) -> Contact | None:
        if self._contact_row is not None:
            return Contact.from_row(self._contact_row)
        return r.related(info.context, ContactRow, self._contact_id, Contact.from_model)  # type: ignore[no-any-return]

    @strawberry.field
    @plain
    def channel(self, info: Info[Context, None]) -> Channel | None:
        return r.related(info.context, ChannelRow, self._channel_id, Channel.from_model)  # type: ignore[no-any-return]

    @strawberry.field
    @plain
    def topic(self, info: Info[Context, None]) -> Topic | None:
        return r.related(info.context, m.Topic, self._topic_id, Topic.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="Null in a contact's session.")
    @plain
    def assignee(self, info: Info[Context, None]) -> Agent | None:
        if _is_contact(info):
            return None
        return r.related(info.context, AgentRow, self._assignee_id, Agent.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="Null in a contact's session.")
    @plain
    def team(self, info: Info[Context, None]) -> Team | None:
        if _is_contact(info):
            return None
        return r.related(info.context, TeamRow, self._team_id, Team.from_model)  # type: ignore[no-any-return]

    @strawberry.field
    @plain
    def last_message(self, info: Info[Context, None]) -> Message | None:
        return r.related(info.context, m.Message, self._last_message_id, Message.from_model)  # type: ignore[no-any-return]

    @strawberry.field(description="The proactive message or campaign it is attributed to; null in a contact's session.")
    @plain
    def attributed_source(self, info: Info[Context, None]) -> str | None:
        return None if _is_contact(info) else self._attributed_source

    @strawberry.field(
        description="The conversation's own tags (e.g. from the proactive message that started it); "
        "empty in a contact's session."
    )
    async def tags(self, info: Info[Context, None]) -> list[str]:
        from resolvers.proactive import conversation_tags

        if _is_contact(info):
            return []
        return await conversation_tags(info.context, self.id)

    @strawberry.field(
        description="Private notes of the agents, oldest first (agents and keys with conversations:read; "
        "never a contact)."
    )
    async def notes(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[ConversationNote]:
        page = await r_inbox.list_notes(info.context, self.id, first=first, after=after)
        return to_connection(page, ConversationNote.from_model)

    @strawberry.field(
        description="By default the last 50, oldest first; page backwards with `last`/`before`, catch up with `after`."
    )
    async def messages(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Message]:
        page = await r.list_messages(info.context, self.id, first=first, after=after, last=last, before=before)
        return to_connection(page, Message.from_model)

    @classmethod
    def from_model(cls, c: m.Conversation) -> Conversation:
        return cls(**{_ARGUMENT.get(f, f): getattr(c, f) for f in r.CONVERSATION_COLUMNS})

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Conversation:
        """From a `.values(*CONVERSATION_COLUMNS)` row, which becomes the object's own
        attributes (the row is taken over): no model object per conversation."""
        for column, argument in _ARGUMENT.items():
            row[argument] = row.pop(column)
        row.setdefault("_contact_row", None)
        return build(cls, row)


# The foreign keys are private: the related fields load them; so is what a contact's
# session is not shown.
_ARGUMENT = {
    f: f"_{f}"
    for f in ("contact_id", "channel_id", "topic_id", "assignee_id", "team_id", "last_message_id", "attributed_source")
}

# -- events ------------------------------------------------------------------------------------


@strawberry.type
class MessageEvent:
    cursor: str | None = strawberry.field(
        description="The message's position: catch up with messages(after:) after a reconnect. Null for typing."
    )
    message: Message | None = strawberry.field(description="The new message; null for typing.")
    typing: TypingIndicator | None = strawberry.field(
        default=None, description="myMessages(typing: true): an agent typing in the contact's conversation."
    )

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> MessageEvent:
        if event["type"] == "typing":
            return cls(cursor=None, message=None, typing=TypingIndicator.from_event(event))
        return cls(cursor=event["cursor"], message=Message.from_row(event["message"]))


@strawberry.type
class ConversationEvent:
    cursor: str
    kind: ConversationEventKind  # type: ignore[valid-type]
    conversation_id: relay.GlobalID
    conversation: Conversation | None = strawberry.field(description="The conversation now; null once deleted.")

    @classmethod
    async def read(cls, ctx: Context, event: dict[str, Any]) -> ConversationEvent:
        """The event with the conversation as it is now."""
        current = await r.conversation_by_id(ctx, event["conversationId"])
        return cls(
            cursor=event["cursor"],
            kind=m.ActivityKind(event["kind"]),
            conversation_id=node_id("Conversation", event["conversationId"]),
            conversation=Conversation.from_model(current) if current else None,
        )


# -- inputs and payloads -----------------------------------------------------------------------


@strawberry.input
class ConversationFilter:
    status: ConversationStatus | None = None  # type: ignore[valid-type]
    unread: bool | None = None
    assignee_id: relay.GlobalID | None = None
    team_id: relay.GlobalID | None = None
    tags: list[str] | None = strawberry.field(default=None, description="The contact has any of these tags.")
    conversation_tags: list[str] | None = strawberry.field(
        default=None, description="The conversation has any of these tags."
    )
    rating: int | None = None
    channel_id: relay.GlobalID | None = None
    website_url: str | None = strawberry.field(default=None, description="The page it started on contains this.")
    ip: str | None = None
    attributed_source: str | None = None
    vip: bool | None = None
    contact_id: relay.GlobalID | None = None

    def to_domain(self) -> r.ConversationFilter:
        return r.ConversationFilter(
            status=self.status,
            unread=self.unread,
            assignee_gid=gid(self.assignee_id),
            team_gid=gid(self.team_id),
            tags=self.tags,
            conversation_tags=self.conversation_tags,
            rating=self.rating,
            channel_gid=gid(self.channel_id),
            website_url=self.website_url,
            ip=self.ip,
            attributed_source=self.attributed_source,
            vip=self.vip,
            contact_gid=gid(self.contact_id),
        )


@strawberry.input
class ConversationEventFilter:
    kinds: list[ConversationEventKind] | None = None  # type: ignore[valid-type]
    status: ConversationStatus | None = strawberry.field(default=None, description="The status after the event.")  # type: ignore[valid-type]
    assignee_id: relay.GlobalID | None = None
    team_id: relay.GlobalID | None = None
    channel_id: relay.GlobalID | None = None


@strawberry.input
class StartConversationInput:
    body: str
    contact_id: relay.GlobalID | None = strawberry.field(
        default=None, description="Agents: the contact to e-mail. Omit in a contact session."
    )
    channel_id: relay.GlobalID | None = strawberry.field(
        default=None, description="Agents: an e-mail channel. Omit in a contact session."
    )
    subject: str | None = None
    topic_id: relay.GlobalID | None = None
    website_url: str | None = strawberry.field(default=None, description="Widget: the page the contact is on.")
    attachments: list[Upload] | None = strawberry.field(default=None, description="Files in the request (multipart).")
    upload_ids: list[relay.GlobalID] | None = strawberry.field(
        default=None, description="Files uploaded beforehand to createUploadUrl's URL."
    )


@strawberry.input
class SendMessageInput:
    conversation_id: relay.GlobalID
    body: str = strawberry.field(default="", description="May be empty when files are sent.")
    attachments: list[Upload] | None = strawberry.field(
        default=None, description="Files in the request (multipart, as Apollo and urql clients send them)."
    )
    upload_ids: list[relay.GlobalID] | None = strawberry.field(
        default=None, description="Files uploaded beforehand to createUploadUrl's URL."
    )


@strawberry.input
class SetConversationStatusInput:
    id: relay.GlobalID
    status: ConversationStatus  # type: ignore[valid-type]
    snoozed_until: datetime | None = strawberry.field(default=None, description="SNOOZED: wake at this time…")
    snooze_preset: SnoozePreset | None = strawberry.field(
        default=None, description="…or at a preset, in the agent's time zone."
    )  # type: ignore[valid-type]


@strawberry.input
class AssignConversationInput:
    id: relay.GlobalID
    assignee_id: relay.GlobalID | None = strawberry.field(
        default=strawberry.UNSET, description="null unassigns; omitted stays."
    )
    team_id: relay.GlobalID | None = strawberry.field(
        default=strawberry.UNSET, description="null unassigns; omitted stays."
    )


@strawberry.input
class ConversationIdInput:
    id: relay.GlobalID


@strawberry.input
class RateConversationInput:
    id: relay.GlobalID
    rating: int = strawberry.field(description="1 to 5.")


@strawberry.input
class SetConversationTopicInput:
    id: relay.GlobalID
    topic_id: relay.GlobalID | None


@strawberry.input
class CreateTopicInput:
    name: str


@strawberry.input
class TopicIdInput:
    id: relay.GlobalID


@strawberry.type
class ConversationPayload:
    conversation: Conversation | None = None
    user_errors: list[UserError]


@strawberry.type
class StartConversationPayload:
    conversation: Conversation | None = None
    message: Message | None = None
    user_errors: list[UserError]


@strawberry.type
class SendMessagePayload:
    message: Message | None = None
    user_errors: list[UserError]


@strawberry.type
class TopicPayload:
    topic: Topic | None = None
    user_errors: list[UserError]


@strawberry.type
class DeleteTopicPayload:
    deleted_id: relay.GlobalID | None = None
    user_errors: list[UserError]


def _ids(values: list[relay.GlobalID] | None) -> list[str] | None:
    return None if values is None else [str(v) for v in values]


def _conversation(c: m.Conversation) -> dict[str, object]:
    return {"conversation": Conversation.from_model(c)}


# -- root fields -------------------------------------------------------------------------------


@strawberry.type
class ConversationQuery:
    @strawberry.field(description="The inbox: VIP contacts first, then the latest activity.")
    async def conversations(
        self,
        info: Info[Context, None],
        view: InboxView = InboxView.ALL,
        filter: ConversationFilter | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Conversation]:
        where = filter.to_domain() if filter else r.ConversationFilter()
        page = await r.list_conversations(
            info.context, view=view.value, where=where, first=first, after=after, last=last, before=before
        )
        selected = selected_names(info, "edges", "node")
        contact_columns = (
            columns_for(selected_names(info, "edges", "node", "contact")) if "contact" in selected else None
        )
        await r.prefetch(info.context, page.items, selected, contact_columns=contact_columns)
        return to_connection(page, Conversation.from_row)

    @strawberry.field
    async def conversation(self, info: Info[Context, None], id: relay.GlobalID) -> Conversation | None:
        found = await r.find_conversation(info.context, str(id))
        return Conversation.from_model(found) if found else None

    @strawberry.field(description="A contact's session: its own conversations, latest first.")
    async def my_conversations(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Conversation]:
        page = await r.list_my_conversations(info.context, first=first, after=after)
        return to_connection(page, Conversation.from_model)

    @strawberry.field(description="The workspace's unread indicator: contacts with unread messages.")
    async def unread_count(self, info: Info[Context, None]) -> int:
        info.context.require(Permission.CONVERSATIONS_READ)
        return await r.unread_contacts(info.context.scope.workspace_id)

    @strawberry.field(description="Topics; with notEngagedBy, those the contact has not had a conversation in.")
    async def topics(
        self,
        info: Info[Context, None],
        not_engaged_by: relay.GlobalID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Topic]:
        page = await r.list_topics(info.context, not_engaged_by=gid(not_engaged_by), first=first, after=after)
        return to_connection(page, Topic.from_model)


@strawberry.type
class ConversationMutation:
    @strawberry.mutation(
        description="Contacts from the widget or app; agents by e-mail only. Nobody opens an SMS conversation."
    )
    async def start_conversation(
        self, info: Info[Context, None], input: StartConversationInput
    ) -> StartConversationPayload:
        work = r.start_conversation(
            info.context,
            body=input.body,
            contact_gid=gid(input.contact_id),
            channel_gid=gid(input.channel_id),
            subject=input.subject,
            topic_gid=gid(input.topic_id),
            website_url=input.website_url,
            uploads=input.attachments,
            upload_ids=_ids(input.upload_ids),
        )
        return await mutate(
            StartConversationPayload,
            work,
            lambda s: {
                "conversation": Conversation.from_model(s.conversation),
                "message": Message.from_model(s.message),
            },
        )

    @strawberry.mutation(
        description="A reply from an agent, an API key (as a bot) or the contact. "
        "SMS replies need the contact's consent."
    )
    async def send_message(self, info: Info[Context, None], input: SendMessageInput) -> SendMessagePayload:
        work = r.send_message(
            info.context,
            str(input.conversation_id),
            input.body,
            uploads=input.attachments,
            upload_ids=_ids(input.upload_ids),
        )
        return await mutate(SendMessagePayload, work, lambda x: {"message": Message.from_model(x)})

    @strawberry.mutation(
        description="Open, snooze (until a time or a preset) or resolve; only the assignee or an owner/admin resolves."
    )
    async def set_conversation_status(
        self, info: Info[Context, None], input: SetConversationStatusInput
    ) -> ConversationPayload:
        work = r.set_status(
            info.context, str(input.id), input.status, until=input.snoozed_until, preset=input.snooze_preset
        )
        return await mutate(ConversationPayload, work, _conversation)

    @strawberry.mutation
    async def assign_conversation(
        self, info: Info[Context, None], input: AssignConversationInput
    ) -> ConversationPayload:
        changes = {k: gid(v) for k, v in provided(input, ("assignee_id", "team_id")).items()}
        work = r.assign(info.context, str(input.id), changes)
        return await mutate(ConversationPayload, work, _conversation)

    @strawberry.mutation(description="Agents clear the unread count; a contact marks the replies read.")
    async def mark_conversation_read(
        self, info: Info[Context, None], input: ConversationIdInput
    ) -> ConversationPayload:
        return await mutate(ConversationPayload, r.mark_read(info.context, str(input.id)), _conversation)

    @strawberry.mutation(description="The contact rates its conversation, 1 to 5.")
    async def rate_conversation(self, info: Info[Context, None], input: RateConversationInput) -> ConversationPayload:
        return await mutate(ConversationPayload, r.rate(info.context, str(input.id), input.rating), _conversation)

    @strawberry.mutation
    async def set_conversation_topic(
        self, info: Info[Context, None], input: SetConversationTopicInput
    ) -> ConversationPayload:
        return await mutate(
            ConversationPayload, r.set_topic(info.context, str(input.id), gid(input.topic_id)), _conversation
        )

    @strawberry.mutation(description="Owners and admins.")
    async def create_topic(self, info: Info[Context, None], input: CreateTopicInput) -> TopicPayload:
        return await mutate(
            TopicPayload, r.create_topic(info.context, input.name), lambda t: {"topic": Topic.from_model(t)}
        )

    @strawberry.mutation(description="Owners and admins; its conversations keep going without a topic.")
    async def delete_topic(self, info: Info[Context, None], input: TopicIdInput) -> DeleteTopicPayload:
        return await mutate(
            DeleteTopicPayload, r.delete_topic(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )


# -- subscriptions -----------------------------------------------------------------------------


def _can_read(principal: Any) -> bool:
    return principal.can(Permission.CONVERSATIONS_READ)  # type: ignore[no-any-return]


def _not_typing(event: dict[str, Any]) -> bool:
    return event["type"] != "typing"


def _message_event(event: dict[str, Any]) -> MessageEvent:
    return shared(event, MessageEvent, lambda: MessageEvent.from_event(event))


@strawberry.type
class ConversationSubscription:
    @strawberry.subscription(description="New messages in one conversation (agents).")
    async def message_added(
        self, info: Info[Context, None], conversation_id: relay.GlobalID
    ) -> AsyncGenerator[MessageEvent, None]:
        ctx = info.context
        ctx.require(Permission.CONVERSATIONS_READ)
        conversation = await r.find_conversation(ctx, str(conversation_id))
        if conversation is None:
            raise PublicError("No conversation with this id.", Code.NOT_FOUND)
        channel = keys.conversation_channel(conversation.workspace_id, conversation.id)
        async with listen(
            ctx, channel, present_as=("agent", ctx.principal.agent_id if ctx.principal else None)
        ) as events:
            async for event in direct(info, events, allowed=_can_read, payload=_message_event):
                await still_allowed(ctx, _can_read)
                ctx.reset_loaders()
                yield _message_event(event)

    @strawberry.subscription(
        description="Conversations created, changing status, assigned or rated, optionally filtered (agents)."
    )
    async def conversation_events(
        self, info: Info[Context, None], filter: ConversationEventFilter | None = None
    ) -> AsyncGenerator[ConversationEvent, None]:
        ctx = info.context
        principal = ctx.require(Permission.CONVERSATIONS_READ)
        wanted = _event_filter(filter)
        async with listen(
            ctx, keys.inbox_channel(principal.workspace_id), present_as=("agent", principal.agent_id)
        ) as events:
            async for event in events:
                if event.get("type") != "activity" or not wanted(event):
                    continue
                await still_allowed(ctx, lambda p: p.can(Permission.CONVERSATIONS_READ))
                ctx.reset_loaders()
                yield await shared_async(
                    event, ConversationEvent, lambda event=event: ConversationEvent.read(ctx, event)
                )

    @strawberry.subscription(
        description="The unread indicator (contacts with unread messages): now, then whenever it changes (agents)."
    )
    async def unread_count(self, info: Info[Context, None]) -> AsyncGenerator[int, None]:
        ctx = info.context
        principal = ctx.require(Permission.CONVERSATIONS_READ)
        async with listen(
            ctx, keys.inbox_channel(principal.workspace_id), present_as=("agent", principal.agent_id)
        ) as events:
            last = await r.unread_contacts(principal.workspace_id)
            yield last
            async for event in events:
                if event.get("type") != "unread" or event["count"] == last:
                    continue
                await still_allowed(ctx, lambda p: p.can(Permission.CONVERSATIONS_READ))
                last = event["count"]
                yield last

    @strawberry.subscription(
        description="A contact's session: every message of its conversations, as the widget or app shows them; "
        "with typing: true, agents typing in them too."
    )
    async def my_messages(self, info: Info[Context, None], typing: bool = False) -> AsyncGenerator[MessageEvent, None]:
        ctx = info.context
        principal = ctx.require_contact()
        assert principal.contact_id is not None
        channel = keys.contact_messages_channel(principal.workspace_id, principal.contact_id)
        wanted = None if typing else _not_typing
        async with listen(ctx, channel, present_as=("contact", principal.contact_id)) as events:
            is_this_contact = lambda p: p.contact_id == principal.contact_id  # noqa: E731
            async for event in direct(info, events, allowed=is_this_contact, payload=_message_event, wanted=wanted):
                if wanted is not None and not wanted(event):
                    continue
                await still_allowed(ctx, is_this_contact)
                yield _message_event(event)


def _event_filter(f: ConversationEventFilter | None) -> Any:
    if f is None:
        return lambda event: True
    kinds = {k.value for k in f.kinds} if f.kinds else None
    ids = {
        "assigneeId": _pk(f.assignee_id, "Agent"),
        "teamId": _pk(f.team_id, "Team"),
        "channelId": _pk(f.channel_id, "Channel"),
    }

    def wanted(event: dict[str, Any]) -> bool:
        if kinds is not None and event["kind"] not in kinds:
            return False
        if f.status is not None and event["status"] != f.status.value:
            return False
        return all(pk is None or event[name] == pk for name, pk in ids.items())

    return wanted


def _pk(value: relay.GlobalID | None, type_name: str) -> int | None:
    if value is None:
        return None
    if value.type_name != type_name:
        raise PublicError(f"Expected a {type_name} id.", Code.INVALID)
    try:
        return int(value.node_id)
    except ValueError:
        raise PublicError(f"Expected a {type_name} id.", Code.INVALID) from None
