"""The live inbox: `inboxEvents` (everything an agent's inbox shows, in one subscription,
with catch-up by cursor), `setTyping`, and private notes (`addConversationNote`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from core import keys
from core.context import Context
from core.errors import Code, PublicError
from core.permissions import Permission
from models import conversations as m
from resolvers import conversations as r
from resolvers import inbox as r_inbox
from runtime.execution import plain
from runtime.fanout import direct, shared
from runtime.subscriptions import listen, still_allowed
from schema.common import UserError, mutate
from schema.conversations import (
    Conversation,
    ConversationNote,
    ConversationStatus,
    InboxView,
    Message,
    TypingIndicator,
)

InboxEventKind = strawberry.enum(m.FeedKind, name="InboxEventKind")
MAX_KINDS = len(m.FeedKind)


@strawberry.type(description="One thing that happened in the inbox.")
class InboxEvent:
    cursor: str | None = strawberry.field(
        description="Its place in the feed: subscribe again with after: this to catch up. Null for typing, "
        "which is never replayed."
    )
    kind: InboxEventKind  # type: ignore[valid-type]
    conversation_id: relay.GlobalID
    status: ConversationStatus = strawberry.field(description="The conversation's status at the event.")  # type: ignore[valid-type]
    unread_count: int = strawberry.field(description="The conversation's unread count at the event.")
    message: Message | None = strawberry.field(
        description="MESSAGE: the new message; DELIVERY: the message with its new delivery state."
    )
    note: ConversationNote | None = strawberry.field(description="NOTE: the private note.")
    typing: TypingIndicator | None = strawberry.field(description="TYPING and TYPING_STOPPED.")
    _conversation_pk: strawberry.Private[int]

    @strawberry.field(description="The conversation as it is now; null once deleted.")
    @plain
    def conversation(self, info: Info[Context, None]) -> Conversation | None:
        return r.related(info.context, m.Conversation, self._conversation_pk, Conversation.from_model)  # type: ignore[no-any-return]

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> InboxEvent:
        kind = m.FeedKind(event["kind"])
        return cls(
            cursor=event["cursor"],
            kind=kind,
            conversation_id=relay.GlobalID("Conversation", str(event["conversationId"])),
            status=m.ConversationStatus(event["status"]),
            unread_count=event["unreadCount"],
            message=Message.from_row(event["message"]) if "message" in event else None,
            note=ConversationNote.from_row(event["note"]) if "note" in event else None,
            typing=TypingIndicator.from_event(event) if "typing" in event else None,
            _conversation_pk=event["conversationId"],
        )


@strawberry.input
class InboxEventFilter:
    view: InboxView = strawberry.field(
        default=InboxView.ALL, description="As the conversations query: mine, unassigned, my teams', all."
    )
    channel_id: relay.GlobalID | None = None
    kinds: list[InboxEventKind] | None = None  # type: ignore[valid-type]


@strawberry.input
class SetTypingInput:
    conversation_id: relay.GlobalID


@strawberry.type
class SetTypingPayload:
    expires_at: datetime | None = strawberry.field(
        default=None, description="When the notice expires; null when throttled (the last notice stands)."
    )
    user_errors: list[UserError]


@strawberry.input
class AddConversationNoteInput:
    conversation_id: relay.GlobalID
    body: str = strawberry.field(description="At most 20,000 characters; `@agent@example.com` mentions an agent.")


@strawberry.type
class AddConversationNotePayload:
    note: ConversationNote | None = None
    user_errors: list[UserError]


@strawberry.type
class InboxMutation:
    @strawberry.mutation(
        description="Tell the others you are typing: agents (conversations:write) and the conversation's contact. "
        "Call it while typing; one notice goes out per 3 s, each lasting 6 s; sending a message stops it."
    )
    async def set_typing(self, info: Info[Context, None], input: SetTypingInput) -> SetTypingPayload:
        work = r_inbox.set_typing(info.context, str(input.conversation_id))
        return await mutate(SetTypingPayload, work, lambda expires: {"expires_at": expires})

    @strawberry.mutation(
        description="A private note in a conversation (agents with conversations:write): never shown to the "
        "contact, never sent. `@agent@example.com` notifies that agent: live, and by e-mail when offline."
    )
    async def add_conversation_note(
        self, info: Info[Context, None], input: AddConversationNoteInput
    ) -> AddConversationNotePayload:
        work = r_inbox.add_note(info.context, str(input.conversation_id), input.body)
        return await mutate(AddConversationNotePayload, work, lambda n: {"note": ConversationNote.from_model(n)})


def _can_read(principal: Any) -> bool:
    return principal.can(Permission.CONVERSATIONS_READ)  # type: ignore[no-any-return]


def _inbox_event(event: dict[str, Any]) -> InboxEvent:
    return shared(event, InboxEvent, lambda: InboxEvent.from_event(event))


@strawberry.type
class InboxSubscription:
    @strawberry.subscription(
        description="Everything the inbox shows, in one subscription (conversations:read): new messages, status, "
        "assignment, unread and read changes, delivery states, notes, typing. Each stored event has a cursor: "
        "after a reconnect, subscribe with after: the last one to get what was missed (at most 500 events, "
        "kept 3 days)."
    )
    async def inbox_events(
        self, info: Info[Context, None], filter: InboxEventFilter | None = None, after: str | None = None
    ) -> AsyncGenerator[InboxEvent, None]:
        ctx = info.context
        principal = ctx.require(Permission.CONVERSATIONS_READ)
        f = filter or InboxEventFilter()
        if f.kinds is not None and len(f.kinds) > MAX_KINDS:
            raise PublicError(f"filter.kinds takes at most {MAX_KINDS} kinds.", Code.INVALID)
        wanted = await r_inbox.feed_filter(
            ctx,
            view=f.view.value,
            channel_gid=str(f.channel_id) if f.channel_id is not None else None,
            kinds=f.kinds,
        )
        start = r_inbox.parse_cursor(after) if after is not None else None
        # Live events at or before the last one replayed were replayed already.
        floor = [start or 0]

        def fresh(event: dict[str, Any]) -> bool:
            return wanted(event) and (event["cursor"] is None or int(event["cursor"]) > floor[0])

        channel = keys.inbox_feed_channel(principal.workspace_id)
        async with listen(ctx, channel, present_as=("agent", principal.agent_id)) as events:
            if start is not None:
                for event in await r_inbox.catch_up(ctx, start):
                    floor[0] = int(event["cursor"])
                    if wanted(event):
                        yield _inbox_event(event)
            async for event in direct(info, events, allowed=_can_read, payload=_inbox_event, wanted=fresh):
                if not fresh(event):
                    continue
                await still_allowed(ctx, _can_read)
                ctx.reset_loaders()
                yield _inbox_event(event)
