"""The live inbox: which `inboxEvents` events a subscriber gets (its view, channel and
kinds, decided on the event alone) and its catch-up from a cursor; typing notices; private
notes with @mentions (`addConversationNote`, `Conversation.notes`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.config import settings
from core.context import Context
from core.errors import Code, PublicError, UserFailure
from core.events import atomic
from core.permissions import Permission, PrincipalKind
from core.queue import queue_job
from core.ratelimit import rate_limits
from models.contacts import Contact
from models.conversations import ConversationNote, FeedKind
from models.workspaces import Agent, Team
from resolvers.conversations import _conversation_for_write, _pk, clean_body
from resolvers.pagination import Order, Page, paginate
from services import inbox

NOTE_ORDER = Order(("id",), descending=False)
# `@ada@example.com` mentions the workspace's agent with that e-mail.
MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
MAX_MENTIONS = 20

Wanted = Callable[[dict[str, Any]], bool]


# -- the feed -------------------------------------------------------------------------------


async def feed_filter(ctx: Context, *, view: str, channel_gid: str | None, kinds: list[FeedKind] | None) -> Wanted:
    """Whether an event is for this subscriber: its view (as the `conversations` query reads
    them: mine, unassigned, the caller's teams, all), its channel, its kinds. A note that
    mentions the caller passes any view and channel. The caller's teams are read once, here."""
    principal = ctx.require(Permission.CONVERSATIONS_READ)
    me = principal.agent_id
    channel_id = _pk(channel_gid, "Channel", "channelId") if channel_gid is not None else None
    wanted_kinds = {k.value for k in kinds} if kinds else None
    team_ids: set[int] = set()
    if view == "team" and me is not None:
        team_ids = set(
            await Team.filter(workspace_id=principal.workspace_id, members__id=me).values_list("id", flat=True)
        )

    def in_view(assignee_id: int | None, team_id: int | None) -> bool:
        if view == "mine":
            return me is not None and assignee_id == me
        if view == "unassigned":
            return assignee_id is None
        if view == "team":
            return team_id in team_ids
        return True

    def wanted(event: dict[str, Any]) -> bool:
        if wanted_kinds is not None and event["kind"] not in wanted_kinds:
            return False
        if event["kind"] == FeedKind.NOTE.value and me is not None and me in event["note"]["mentionedAgentIds"]:
            return True
        if channel_id is not None and event["channelId"] != channel_id:
            return False
        if in_view(event["assigneeId"], event["teamId"]):
            return True
        # A conversation leaving the view: the agent's list drops it.
        previous = (event.get("activity") or {}).get("previous")
        return isinstance(previous, dict) and in_view(previous.get("assigneeId"), previous.get("teamId"))

    return wanted


def parse_cursor(after: str) -> int:
    if not after.isdigit() or len(after) > 19:
        raise PublicError("`after` is not a cursor of inboxEvents.", Code.INVALID)
    return int(after)


async def catch_up(ctx: Context, after: int) -> list[dict[str, Any]]:
    events = await inbox.catch_up(ctx.require_principal().workspace_id, after)
    if events is None:
        raise PublicError(
            f"More than {inbox.CATCH_UP_MAX} events since this cursor: reload the inbox with the conversations "
            "query, then subscribe without `after`.",
            Code.CONFLICT,
        )
    return events


# -- typing ---------------------------------------------------------------------------------


async def set_typing(ctx: Context, conversation_gid: str) -> datetime | None:
    """An agent (conversations:write) or the conversation's contact is typing. Contacts are
    rate limited (their key is public); everyone is throttled to one notice per
    TYPING_THROTTLE_SECONDS."""
    principal = ctx.require_principal()
    if principal.kind is PrincipalKind.API_KEY:
        raise PublicError("Only agents and contacts type.", Code.FORBIDDEN)
    if principal.kind is PrincipalKind.CONTACT:
        await rate_limits.hit(
            "typing",
            settings.rate_limit_typing_per_contact,
            f"contact:{principal.contact_id}",
            what="Too many typing notices",
        )
    conversation = await _conversation_for_write(ctx, conversation_gid)
    if ctx.hub is None:
        raise PublicError("Typing notices are unavailable.", Code.INVALID)
    if principal.kind is PrincipalKind.CONTACT and await Contact.filter(id=principal.contact_id, blocked=True).exists():
        return None  # a blocked contact's messages reach no one: nor does its typing
    name = None
    if principal.agent_id is not None:
        name = await Agent.filter(id=principal.agent_id).first().values_list("name", flat=True)
    return await inbox.typing(ctx.hub, conversation, agent_id=principal.agent_id, sender_name=name)


# -- notes ----------------------------------------------------------------------------------


def mentioned_emails(body: str) -> list[str]:
    """The distinct e-mails a note @mentions, in order, lower-cased.

    >>> mentioned_emails("@Ada@Example.com and @bo@x.io, not me@x.io or @ada@example.com")
    ['ada@example.com', 'bo@x.io']
    """
    found: dict[str, None] = {}
    for match in MENTION.finditer(body):
        found.setdefault(match.group(1).lower().rstrip("."), None)
    return list(found)


async def add_note(ctx: Context, conversation_gid: str, body: str) -> ConversationNote:
    """A private note, for agents only (conversations:write). Mentions of agents of the
    workspace notify them: a live event, and an e-mail to those offline (jobs/inbox.py)."""
    principal = ctx.require_agent()
    conversation = await _conversation_for_write(ctx, conversation_gid)
    text = clean_body(body, what="A note")
    emails = mentioned_emails(text)
    if len(emails) > MAX_MENTIONS:
        raise UserFailure.of("body", Code.TOO_LONG, f"A note may mention at most {MAX_MENTIONS} agents.")
    mentioned: list[int] = []
    if emails:
        found = await Agent.filter(
            workspace_id=conversation.workspace_id, email__in=emails, deactivated_at__isnull=True
        ).values_list("id", "email")
        by_email = {email: pk for pk, email in found}
        mentioned = [by_email[e] for e in emails if e in by_email]
    author = await Agent.filter(id=principal.agent_id).first().values_list("name", flat=True)
    async with atomic(ctx.outbox):
        note = await ConversationNote.create(
            workspace_id=conversation.workspace_id,
            conversation_id=conversation.id,
            agent_id=principal.agent_id,
            body=text,
            mentioned_agent_ids=mentioned,
        )
        await inbox.feed(ctx.outbox, conversation, FeedKind.NOTE, note=inbox.note_row(note, author))
        if any(pk != principal.agent_id for pk in mentioned):
            queue_job(ctx.outbox, "notify_mentions", note.id)
    return note


async def list_notes(
    ctx: Context, conversation_id: int, *, first: int | None, after: str | None
) -> Page[ConversationNote]:
    """A conversation's notes, oldest first: agents and keys with conversations:read only."""
    ctx.require(Permission.CONVERSATIONS_READ)
    query = ctx.scope.all(ConversationNote).filter(conversation_id=conversation_id)
    return await paginate(query, NOTE_ORDER, first=first, after=after, default_size=50)
