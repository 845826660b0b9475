"""Conversations and messages: start, send, status and snooze, assignment, unread, rating,
topics; the inbox query with its views and filters. Inbound SMS and e-mail from the channel
webhook land here too (`receive_inbound`).

Events leave through the outbox after commit: each message to its conversation's channel
(`messageAdded`) and to the contact's (`myMessages`), each status change, assignment,
creation and rating to the workspace inbox (`conversationEvents`), and the unread
indicator to the inbox whenever it may have changed (`unreadCount`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import UploadFile
from tortoise import connections
from tortoise.expressions import F, Subquery
from tortoise.queryset import QuerySet

from core import keys
from core.clock import now
from core.context import Context
from core.db import SqlBuilder
from core.errors import Code, PublicError, UserError, UserFailure
from core.events import Outbox, atomic
from core.permissions import Permission, Principal, PrincipalKind
from core.queue import queue_job
from core.scoping import decode_global_id
from domain import schedule
from domain.identity import MESSENGER_PREFIX
from domain.masking import mask_card_numbers
from models.attachments import Attachment
from models.channels import Channel, ChannelKind
from models.contacts import Contact, ContactTag, SmsConsent
from models.conversations import (
    ActivityKind,
    Conversation,
    ConversationStatus,
    ConversationTag,
    DeliveryState,
    Direction,
    FeedKind,
    Message,
    SenderKind,
    Topic,
)
from models.workspaces import Agent, Team, Workspace
from resolvers.attachments import Incoming, incoming, kept_if_written
from resolvers.pagination import Order, Page, encode_cursor, paginate
from services import inbox, routing
from services.attachments import attach
from services.attribution import attribute_reply
from services.conversations import RESOLUTION_FIELDS, business_seconds, record_activity, set_resolution
from services.push import schedule_push
from services.segments import mark_for_segments

CONVERSATION_ORDER = Order(("vip", "last_message_at", "id"), descending=True)
MESSAGE_ORDER = Order(("id",), descending=False)
TOPIC_ORDER = Order(("name", "id"), descending=False)
MAX_BODY = 20_000
MAX_SUBJECT = 255
DEFAULT_MESSAGES = 50


# -- who may see and do what ---------------------------------------------------------------


def can_see_conversation(principal: Principal, conversation: Conversation) -> bool:
    if principal.kind is PrincipalKind.CONTACT:
        return principal.contact_id == conversation.contact_id
    return principal.can(Permission.CONVERSATIONS_READ)


async def conversation_by_id(ctx: Context, pk: int | None) -> Conversation | None:
    """The conversation with this id in the caller's workspace (as it is now), else None."""
    return await ctx.scope.get(Conversation, pk)


async def find_conversation(ctx: Context, gid: str) -> Conversation | None:
    principal = ctx.require_principal()
    conversation = await ctx.scope.by_global_id(gid, "Conversation", Conversation)
    if conversation is None or not can_see_conversation(principal, conversation):
        return None
    return conversation


async def _conversation_for_write(ctx: Context, gid: str, field: str = "conversationId") -> Conversation:
    conversation = await find_conversation(ctx, gid)
    if conversation is None:
        raise UserFailure.of(field, Code.NOT_FOUND, "No conversation with this id.")
    principal = ctx.require_principal()
    if principal.kind is not PrincipalKind.CONTACT and not principal.can(Permission.CONVERSATIONS_WRITE):
        raise PublicError("This needs the conversations:write permission.", Code.FORBIDDEN)
    return conversation


def clean_body(body: str, field: str = "body", *, required: bool = True, what: str = "A message") -> str:
    """The text, masked; a message with files may have none (`required=False`). `what`
    names the text in errors ("A note")."""
    text = mask_card_numbers(body.strip())
    if not text and required:
        needs = "some text or a file" if what == "A message" else "some text"
        raise UserFailure.of(field, Code.REQUIRED, f"{what} needs {needs}.")
    if len(text) > MAX_BODY:
        raise UserFailure.of(field, Code.TOO_LONG, f"{what} may be at most {MAX_BODY} characters.")
    return text


# -- events ---------------------------------------------------------------------------------


async def _publish_message(
    outbox: Outbox, conversation: Conversation, message: Message, attachments: list[Attachment]
) -> None:
    sender = None
    if message.agent_id is not None:
        sender = await Agent.filter(id=message.agent_id).first().values_list("name", flat=True)
    row = inbox.message_row(message, sender, attachments)
    # The cursor of the message in `Conversation.messages`: a client that reconnects passes
    # the last one it saw as `after:` and gets what it missed.
    event = {"type": "message", "cursor": encode_cursor([message.id]), "message": row}
    outbox.add(keys.conversation_channel(conversation.workspace_id, conversation.id), event)
    outbox.add(keys.contact_messages_channel(conversation.workspace_id, conversation.contact_id), event)
    await inbox.feed(outbox, conversation, FeedKind.MESSAGE, message=row)
    if message.sender_kind in (SenderKind.AGENT, SenderKind.CONTACT):
        inbox.stop_typing(outbox, conversation, agent_id=message.agent_id)


async def unread_contacts(workspace_id: int) -> int:
    """The workspace's unread indicator: contacts with unread messages, not messages."""
    q = SqlBuilder()
    sql = (
        "SELECT COUNT(DISTINCT contact_id) AS n FROM conversations "  # noqa: S608
        f"WHERE workspace_id = {q.param(workspace_id)} AND unread_count > 0"
    )
    rows = await connections.get("default").execute_query_dict(sql, q.params)
    return int(rows[0]["n"])


def _publish_unread(outbox: Outbox, workspace_id: int) -> None:
    """After commit, count and publish the indicator (subscribers drop repeats)."""

    async def publish() -> None:
        if outbox.hub is not None:
            count = await unread_contacts(workspace_id)
            await outbox.hub.publish([(keys.inbox_channel(workspace_id), {"type": "unread", "count": count})])

    outbox.after_commit(publish)


# -- messages -------------------------------------------------------------------------------


async def add_message(
    outbox: Outbox,
    conversation: Conversation,
    *,
    sender_kind: SenderKind,
    body: str,
    agent_id: int | None = None,
    delivery_state: DeliveryState = DeliveryState.RECEIVED,
    external_message_id: str | None = None,
    notify: bool = True,
    files: Incoming | None = None,
) -> Message:
    """Store a message (body already masked) with its files, and move the conversation's
    counters. Messages of blocked contacts pass notify=False: kept, counted nowhere,
    published to no one."""
    direction = Direction.INBOUND if sender_kind is SenderKind.CONTACT else Direction.OUTBOUND
    message = await Message.create(
        workspace_id=conversation.workspace_id,
        conversation_id=conversation.id,
        sender_kind=sender_kind,
        agent_id=agent_id,
        direction=direction,
        body=body,
        delivery_state=delivery_state,
        external_message_id=external_message_id,
    )
    attachments = []
    if files:
        attachments = await attach(message, files.files, files.uploads, conversation.contact_id)
    changes: dict[str, Any] = {
        "last_message_id": message.id,
        "last_message_at": message.created_at,
        "updated_at": message.created_at,
    }
    if notify and direction is Direction.INBOUND:
        changes["unread_count"] = F("unread_count") + 1
        conversation.unread_count += 1
    elif notify and sender_kind in (SenderKind.AGENT, SenderKind.BOT):
        changes["contact_unread_count"] = F("contact_unread_count") + 1
        conversation.contact_unread_count += 1
    if sender_kind is SenderKind.AGENT and conversation.first_response_at is None:
        changes["first_response_at"] = conversation.first_response_at = message.created_at
        seconds = await business_seconds(conversation, message.created_at)
        changes["first_response_seconds"] = conversation.first_response_seconds = seconds
    await Conversation.filter(id=conversation.id).update(**changes)
    conversation.last_message_id, conversation.last_message_at = message.id, message.created_at
    if notify:
        await _publish_message(outbox, conversation, message, attachments)
        if direction is Direction.INBOUND:
            _publish_unread(outbox, conversation.workspace_id)
    return message


async def receive_inbound(
    outbox: Outbox,
    conversation: Conversation,
    contact: Contact,
    body: str,
    *,
    external_message_id: str | None = None,
    files: Incoming | None = None,
) -> Message:
    """A message from the contact, from any channel: it reopens a snoozed or resolved
    conversation and tells the agents, unless the contact is blocked."""
    live = not contact.blocked
    message = await add_message(
        outbox,
        conversation,
        sender_kind=SenderKind.CONTACT,
        body=body,
        external_message_id=external_message_id,
        notify=live,
        files=files,
    )
    stamp = message.created_at
    await Contact.filter(id=contact.id).update(last_seen_at=stamp)
    if live and conversation.status is not ConversationStatus.OPEN:
        previous = conversation.status
        conversation.status, conversation.snoozed_until = ConversationStatus.OPEN, None
        await set_resolution(conversation)
        await Conversation.filter(id=conversation.id).update(
            status=ConversationStatus.OPEN, snoozed_until=None, resolved_at=None, resolution_seconds=None
        )
        await record_activity(
            outbox, conversation, ActivityKind.STATUS_CHANGED, previous=previous.value, reason="inbound_message"
        )
    if live:
        await attribute_reply(conversation, contact.id, stamp)
        queue_job(outbox, "notify_new_message", message.id)
    mark_for_segments(outbox, contact.workspace_id, contact.id)
    return message


async def _outbound_state(conversation: Conversation, channel: Channel, contact: Contact) -> DeliveryState:
    """Check that this channel can reach the contact now; what the message's state starts as."""
    if channel.kind is ChannelKind.SMS:
        if contact.sms_consent is not SmsConsent.SUBSCRIBED:
            raise UserFailure.of(
                "conversationId",
                Code.CONSENT_REQUIRED,
                "This contact has not subscribed to SMS: replies by SMS need their consent.",
            )
        if not contact.phone:
            raise UserFailure.of("conversationId", Code.REQUIRED, "This contact has no phone number.")
        return DeliveryState.PENDING
    if channel.kind is ChannelKind.EMAIL:
        if not contact.email:
            raise UserFailure.of("conversationId", Code.REQUIRED, "This contact has no e-mail address.")
        return DeliveryState.PENDING
    if channel.kind is ChannelKind.MESSENGER:
        return DeliveryState.PENDING
    # Widget and SDK: delivered live; the worker e-mails a copy if the contact has left.
    return DeliveryState.RECEIVED


async def send_message(
    ctx: Context,
    conversation_gid: str,
    body: str,
    *,
    uploads: list[UploadFile] | None = None,
    upload_ids: list[str] | None = None,
) -> Message:
    principal = ctx.require_principal()
    conversation = await _conversation_for_write(ctx, conversation_gid)
    text = clean_body(body, required=not uploads and not upload_ids)
    contact = await Contact.get(id=conversation.contact_id)
    channel = await Channel.get(id=conversation.channel_id)
    state = DeliveryState.RECEIVED
    if principal.kind is not PrincipalKind.CONTACT:
        state = await _outbound_state(conversation, channel, contact)
    files = await incoming(ctx, uploads, upload_ids)
    async with kept_if_written(files), atomic(ctx.outbox):
        if principal.kind is PrincipalKind.CONTACT:
            return await receive_inbound(ctx.outbox, conversation, contact, text, files=files)
        return await _send_outbound(ctx.outbox, principal, conversation, channel, contact, text, state, files)


async def _send_outbound(
    outbox: Outbox,
    principal: Principal,
    conversation: Conversation,
    channel: Channel,
    contact: Contact,
    text: str,
    state: DeliveryState,
    files: Incoming,
) -> Message:
    """An agent's (or an API key's bot) message, handed to `deliver_message` and pushed to
    the contact's devices."""
    kind = SenderKind.AGENT if principal.kind is PrincipalKind.AGENT else SenderKind.BOT
    message = await add_message(
        outbox,
        conversation,
        sender_kind=kind,
        body=text,
        agent_id=principal.agent_id,
        delivery_state=state,
        files=files,
    )
    queue_job(outbox, "deliver_message", message.id, job_id=keys.deliver_job(message.id))
    if not contact.blocked:
        await schedule_push(outbox, conversation, channel)
    return message


async def open_conversation(
    outbox: Outbox,
    contact: Contact,
    channel: Channel,
    *,
    subject: str | None = None,
    topic_id: int | None = None,
    website_url: str | None = None,
    ip: str | None = None,
    actor_agent_id: int | None = None,
) -> Conversation:
    """A new conversation, announced to the inbox, and the channel's CRM asked about its
    contact (jobs/crm.py). A blocked contact's is kept, closed, and shown to no one. One
    the contact started is routed (services/routing.py); one an agent started is left to
    that agent."""
    conversation = await Conversation.create(
        workspace_id=contact.workspace_id,
        contact_id=contact.id,
        channel_id=channel.id,
        topic_id=topic_id,
        subject=subject and mask_card_numbers(subject),
        vip=contact.vip,
        status=ConversationStatus.RESOLVED if contact.blocked else ConversationStatus.OPEN,
        website_url=(website_url or None) and mask_card_numbers(website_url)[:2048],
        ip=ip,
        last_message_at=now(),
    )
    if not contact.blocked:
        if actor_agent_id is None:
            await routing.route(outbox, conversation)
        await record_activity(outbox, conversation, ActivityKind.CREATED, actor_agent_id)
        if channel.crm_lookup_url:
            # After the commit, in a job: the conversation never waits for the CRM.
            queue_job(outbox, "crm_lookup", conversation.id, job_id=keys.crm_lookup_job(conversation.id))
    return conversation


@dataclass
class Started:
    conversation: Conversation
    message: Message


async def start_conversation(
    ctx: Context,
    *,
    body: str,
    contact_gid: str | None,
    channel_gid: str | None,
    subject: str | None,
    topic_gid: str | None,
    website_url: str | None,
    uploads: list[UploadFile] | None = None,
    upload_ids: list[str] | None = None,
) -> Started:
    """Contacts start conversations from the widget or SDK. Agents start them with any
    contact on an e-mail, widget, SDK or messenger channel, as a reply would reach it
    (`_outbound_state`): live over `myMessages` on the widget and SDK, with an e-mail copy
    when the contact is offline and has an address; nobody opens an SMS conversation (the
    contact texts first)."""
    principal = ctx.require_principal()
    text = clean_body(body, required=not uploads and not upload_ids)
    topic = await _topic(ctx, topic_gid) if topic_gid else None
    if subject is not None and len(subject) > MAX_SUBJECT:
        raise UserFailure.of("subject", Code.TOO_LONG, f"A subject may be at most {MAX_SUBJECT} characters.")
    if principal.kind is PrincipalKind.CONTACT:
        contact = await Contact.get(id=principal.contact_id)
        channel = await Channel.get(id=principal.channel_id)
    else:
        ctx.require(Permission.CONVERSATIONS_WRITE)
        contact, channel = await _agent_start_target(ctx, contact_gid, channel_gid)
    files = await incoming(ctx, uploads, upload_ids)
    async with kept_if_written(files), atomic(ctx.outbox):
        conversation = await open_conversation(
            ctx.outbox,
            contact,
            channel,
            subject=subject,
            topic_id=topic.id if topic else None,
            website_url=website_url,
            ip=ctx.client_ip if principal.kind is PrincipalKind.CONTACT else None,
            actor_agent_id=principal.agent_id,
        )
        if principal.kind is PrincipalKind.CONTACT:
            message = await receive_inbound(ctx.outbox, conversation, contact, text, files=files)
        else:
            state = await _outbound_state(conversation, channel, contact)
            message = await _send_outbound(ctx.outbox, principal, conversation, channel, contact, text, state, files)
            mark_for_segments(ctx.outbox, contact.workspace_id, contact.id, conversations_only=True)
    return Started(conversation, message)


async def _agent_start_target(
    ctx: Context, contact_gid: str | None, channel_gid: str | None
) -> tuple[Contact, Channel]:
    """The contact and channel an agent starts a conversation with, checked."""
    if contact_gid is None or channel_gid is None:
        raise UserFailure.of(
            "contactId" if contact_gid is None else "channelId",
            Code.REQUIRED,
            "Agents start a conversation with a contact on a channel.",
        )
    contact = await ctx.scope.by_global_id(contact_gid, "Contact", Contact)
    if contact is None:
        raise UserFailure.of("contactId", Code.NOT_FOUND, "No contact with this id.")
    channel = await ctx.scope.by_global_id(channel_gid, "Channel", Channel)
    if channel is None:
        raise UserFailure.of("channelId", Code.NOT_FOUND, "No channel with this id.")
    if channel.kind is ChannelKind.SMS:
        raise UserFailure.of(
            "channelId", Code.NOT_ALLOWED, "A business cannot open an SMS conversation: the contact must text first."
        )
    if contact.blocked:
        raise UserFailure.of("contactId", Code.NOT_ALLOWED, "This contact is blocked.")
    if channel.kind is ChannelKind.MESSENGER and not (contact.external_id or "").startswith(MESSENGER_PREFIX):
        raise UserFailure.of("contactId", Code.REQUIRED, "This contact has never written on a messenger channel.")
    if channel.kind is ChannelKind.EMAIL and not contact.email:
        raise UserFailure.of("contactId", Code.REQUIRED, "This contact has no e-mail address.")
    return contact, channel


# -- status, assignment, read, rating --------------------------------------------------------


async def set_status(
    ctx: Context, gid: str, status: ConversationStatus, *, until: datetime | None, preset: schedule.SnoozePreset | None
) -> Conversation:
    principal = ctx.require_principal()
    if principal.kind is PrincipalKind.CONTACT:
        raise PublicError("Only agents change a conversation's status.", Code.FORBIDDEN)
    conversation = await _conversation_for_write(ctx, gid, "id")
    resolving = status is ConversationStatus.RESOLVED and principal.kind is PrincipalKind.AGENT
    if resolving and not principal.is_admin and conversation.assignee_id != principal.agent_id:
        raise UserFailure.of(
            "status", Code.NOT_ALLOWED, "Only the assignee or an owner or admin may resolve this conversation."
        )
    snoozed_until = None
    if status is ConversationStatus.SNOOZED:
        snoozed_until = await _snooze_time(ctx, principal, until, preset)
    elif until is not None or preset is not None:
        raise UserFailure.of("snoozedUntil", Code.INVALID, "Only a snoozed conversation has a wake-up time.")
    if conversation.status is status and conversation.snoozed_until == snoozed_until:
        return conversation
    previous = conversation.status
    async with atomic(ctx.outbox):
        conversation.status, conversation.snoozed_until = status, snoozed_until
        await set_resolution(conversation)
        await conversation.save(update_fields=["status", "snoozed_until", *RESOLUTION_FIELDS, "updated_at"])
        await record_activity(
            ctx.outbox,
            conversation,
            ActivityKind.STATUS_CHANGED,
            principal.agent_id,
            previous=previous.value,
            snoozedUntil=snoozed_until.isoformat() if snoozed_until else None,
        )
        if snoozed_until is not None:
            queue_job(
                ctx.outbox,
                "wake_conversation",
                conversation.id,
                job_id=keys.wake_job(conversation.id, int(snoozed_until.timestamp())),
                defer=max(snoozed_until - now(), timedelta(0)),
            )
    return conversation


async def _snooze_time(
    ctx: Context, principal: Principal, until: datetime | None, preset: schedule.SnoozePreset | None
) -> datetime:
    if (until is None) == (preset is None):
        raise UserFailure.of("snoozedUntil", Code.REQUIRED, "Snoozing needs either snoozedUntil or a preset.")
    if preset is not None:
        agent = await ctx.scope.get(Agent, principal.agent_id)
        workspace = await ctx.scope.get(Workspace, ctx.scope.workspace_id)
        zone = agent.time_zone if agent else workspace.time_zone if workspace else "UTC"
        return schedule.snooze_until(preset, now(), zone)
    assert until is not None
    if until.tzinfo is None:
        raise UserFailure.of(
            "snoozedUntil", Code.INVALID, "Give the time with its offset, e.g. 2026-11-23T09:00:00+01:00."
        )
    if until <= now():
        raise UserFailure.of("snoozedUntil", Code.INVALID, "The wake-up time must be in the future.")
    if until > now() + timedelta(days=366):
        raise UserFailure.of("snoozedUntil", Code.INVALID, "A conversation can be snoozed for a year at most.")
    return until.astimezone(UTC)


async def assign(ctx: Context, gid: str, changes: dict[str, str | None]) -> Conversation:
    """Assign to an agent and/or a team: `changes` holds "assignee_id" and/or "team_id"
    (global ids); None unassigns, an absent key stays."""
    principal = ctx.require_principal()
    if principal.kind is PrincipalKind.CONTACT:
        raise PublicError("Only agents assign conversations.", Code.FORBIDDEN)
    conversation = await _conversation_for_write(ctx, gid, "id")
    errors: list[UserError] = []
    chosen = {"assignee_id": conversation.assignee_id, "team_id": conversation.team_id}
    for key, model, type_name, field in (
        ("assignee_id", Agent, "Agent", "assigneeId"),
        ("team_id", Team, "Team", "teamId"),
    ):
        if key in changes:
            row = await ctx.scope.by_global_id(changes[key], type_name, model) if changes[key] else None
            if changes[key] and row is None:
                errors.append(UserError([field], Code.NOT_FOUND, f"No {type_name.lower()} with this id."))
            elif isinstance(row, Agent) and row.deactivated_at is not None:
                errors.append(UserError([field], Code.CONFLICT, "This agent is deactivated."))
            chosen[key] = row.id if row else None
    assignee_id, team_id = chosen["assignee_id"], chosen["team_id"]
    if errors:
        raise UserFailure(*errors)
    if (assignee_id, team_id) == (conversation.assignee_id, conversation.team_id):
        return conversation
    async with atomic(ctx.outbox):
        previous = {"assigneeId": conversation.assignee_id, "teamId": conversation.team_id}
        conversation.assignee_id, conversation.team_id = assignee_id, team_id
        await conversation.save(update_fields=["assignee_id", "team_id", "updated_at"])
        await record_activity(ctx.outbox, conversation, ActivityKind.ASSIGNED, principal.agent_id, previous=previous)
    return conversation


async def mark_read(ctx: Context, gid: str) -> Conversation:
    """Agents read the contact's messages; a contact reads the agents' replies."""
    principal = ctx.require_principal()
    conversation = await _conversation_for_write(ctx, gid, "id")
    async with atomic(ctx.outbox):
        if principal.kind is PrincipalKind.CONTACT:
            if conversation.contact_unread_count:
                await Conversation.filter(id=conversation.id).update(contact_unread_count=0)
                await Message.filter(
                    conversation_id=conversation.id,
                    direction=Direction.OUTBOUND,
                    delivery_state__in=[DeliveryState.RECEIVED, DeliveryState.SENT],
                ).update(delivery_state=DeliveryState.READ)
                conversation.contact_unread_count = 0
                await inbox.feed(ctx.outbox, conversation, FeedKind.CONTACT_READ)
        else:
            if conversation.unread_count:
                await Conversation.filter(id=conversation.id).update(unread_count=0)
                _publish_unread(ctx.outbox, conversation.workspace_id)
                conversation.unread_count = 0
                await inbox.feed(ctx.outbox, conversation, FeedKind.READ, agentId=principal.agent_id)
    return conversation


async def rate(ctx: Context, gid: str, rating: int) -> Conversation:
    principal = ctx.require_contact()
    conversation = await _conversation_for_write(ctx, gid, "id")
    if principal.contact_id != conversation.contact_id:
        raise UserFailure.of("id", Code.NOT_FOUND, "No conversation with this id.")
    if not 1 <= rating <= 5:
        raise UserFailure.of("rating", Code.INVALID, "A rating is a whole number from 1 to 5.")
    async with atomic(ctx.outbox):
        conversation.rating, conversation.rated_at = rating, now()
        await conversation.save(update_fields=["rating", "rated_at", "updated_at"])
        await record_activity(ctx.outbox, conversation, ActivityKind.RATED, rating=rating)
    return conversation


async def set_topic(ctx: Context, gid: str, topic_gid: str | None) -> Conversation:
    conversation = await _conversation_for_write(ctx, gid, "id")
    topic = await _topic(ctx, topic_gid) if topic_gid else None
    conversation.topic_id = topic.id if topic else None
    await conversation.save(update_fields=["topic_id", "updated_at"])
    return conversation


# -- topics ---------------------------------------------------------------------------------


async def _topic(ctx: Context, gid: str, field: str = "topicId") -> Topic:
    topic = await ctx.scope.by_global_id(gid, "Topic", Topic)
    if topic is None:
        raise UserFailure.of(field, Code.NOT_FOUND, "No topic with this id.")
    return topic


async def create_topic(ctx: Context, name: str) -> Topic:
    ctx.require(Permission.WORKSPACE_MANAGE)
    clean = " ".join(name.split())
    if not clean:
        raise UserFailure.of("name", Code.REQUIRED, "A topic needs a name.")
    if len(clean) > 120:
        raise UserFailure.of("name", Code.TOO_LONG, "A topic name may be at most 120 characters.")
    if await ctx.scope.all(Topic).filter(name=clean).exists():
        raise UserFailure.of("name", Code.TAKEN, "A topic with this name exists.")
    return await Topic.create(workspace_id=ctx.scope.workspace_id, name=clean)


async def delete_topic(ctx: Context, gid: str) -> None:
    ctx.require(Permission.WORKSPACE_MANAGE)
    topic = await _topic(ctx, gid, "id")
    await topic.delete()


async def list_topics(ctx: Context, *, not_engaged_by: str | None, first: int | None, after: str | None) -> Page[Topic]:
    """Topics of the workspace; with notEngagedBy, those the contact has no conversation in."""
    principal = ctx.require_principal()
    query = ctx.scope.all(Topic)
    if not_engaged_by is not None:
        contact = await ctx.scope.by_global_id(not_engaged_by, "Contact", Contact)
        if contact is None or (principal.kind is PrincipalKind.CONTACT and principal.contact_id != contact.id):
            raise PublicError("No contact with this id.", Code.NOT_FOUND)
        engaged = Conversation.filter(contact_id=contact.id, topic_id__isnull=False).values("topic_id")
        query = query.exclude(id__in=Subquery(engaged))
    return await paginate(query, TOPIC_ORDER, first=first, after=after, default_size=100)


# -- the inbox ------------------------------------------------------------------------------


@dataclass
class ConversationFilter:
    status: ConversationStatus | None = None
    unread: bool | None = None
    assignee_gid: str | None = None
    team_gid: str | None = None
    tags: list[str] | None = None  # the contact's tags
    conversation_tags: list[str] | None = None
    rating: int | None = None
    channel_gid: str | None = None
    website_url: str | None = None
    ip: str | None = None
    attributed_source: str | None = None
    vip: bool | None = None
    contact_gid: str | None = None


def _pk(gid: str, type_name: str, field: str) -> int:
    decoded = decode_global_id(gid)
    if decoded is None or decoded[0] != type_name:
        raise PublicError(f"filter.{field} is not a {type_name} id.", Code.INVALID)
    return decoded[1]


async def list_conversations(
    ctx: Context,
    *,
    view: str,
    where: ConversationFilter,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Page[dict[str, Any]]:
    """The queue: VIP contacts first, then the most recent activity. Views: mine,
    unassigned, team (the caller's teams), all."""
    return await paginate(
        await inbox_query(ctx, view, where),
        CONVERSATION_ORDER,
        first=first,
        after=after,
        last=last,
        before=before,
        default_size=25,
        values=CONVERSATION_COLUMNS,
    )


async def inbox_query(ctx: Context, view: str, where: ConversationFilter) -> QuerySet[Conversation]:
    """The conversations the caller sees in a view of the inbox, filtered: what
    `conversations` lists and `searchConversations` searches."""
    principal = ctx.require(Permission.CONVERSATIONS_READ)
    query = ctx.scope.all(Conversation)
    if view == "mine":
        query = query.filter(assignee_id=principal.agent_id) if principal.agent_id else query.filter(id=-1)
    elif view == "unassigned":
        query = query.filter(assignee_id__isnull=True)
    elif view == "team":
        team_ids = await Team.filter(
            workspace_id=principal.workspace_id, members__id=principal.agent_id or -1
        ).values_list("id", flat=True)
        query = query.filter(team_id__in=list(team_ids) or [-1])
    if where.status is not None:
        query = query.filter(status=where.status)
    if where.unread is not None:
        query = query.filter(unread_count__gt=0) if where.unread else query.filter(unread_count=0)
    if where.assignee_gid is not None:
        query = query.filter(assignee_id=_pk(where.assignee_gid, "Agent", "assigneeId"))
    if where.team_gid is not None:
        query = query.filter(team_id=_pk(where.team_gid, "Team", "teamId"))
    if where.channel_gid is not None:
        query = query.filter(channel_id=_pk(where.channel_gid, "Channel", "channelId"))
    if where.contact_gid is not None:
        query = query.filter(contact_id=_pk(where.contact_gid, "Contact", "contactId"))
    if where.tags:
        tagged = ContactTag.filter(
            workspace_id=principal.workspace_id, name__in=[t.strip().lower() for t in where.tags]
        ).values("contact_id")
        query = query.filter(contact_id__in=Subquery(tagged))
    if where.conversation_tags:
        names = [t.strip().lower() for t in where.conversation_tags[:50]]
        tagged = ConversationTag.filter(workspace_id=principal.workspace_id, name__in=names).values("conversation_id")
        query = query.filter(id__in=Subquery(tagged))
    if where.rating is not None:
        query = query.filter(rating=where.rating)
    if where.website_url:
        query = query.filter(website_url__icontains=where.website_url[:2048])
    if where.ip:
        query = query.filter(ip=where.ip)
    if where.attributed_source:
        query = query.filter(attributed_source=where.attributed_source)
    if where.vip is not None:
        query = query.filter(vip=where.vip)
    return query


async def list_my_conversations(ctx: Context, *, first: int | None, after: str | None) -> Page[Conversation]:
    principal = ctx.require_contact()
    query = ctx.scope.all(Conversation).filter(contact_id=principal.contact_id)
    return await paginate(
        query, Order(("last_message_at", "id"), descending=True), first=first, after=after, default_size=25
    )


async def list_messages(
    ctx: Context, conversation_id: int, *, first: int | None, after: str | None, last: int | None, before: str | None
) -> Page[Message]:
    """Oldest first within a page; by default the last 50, paging backwards with `before`.
    A client that reconnects catches up with `after:` the last cursor it saw."""
    if first is None and last is None and after is None:
        last = DEFAULT_MESSAGES
    query = Message.filter(conversation_id=conversation_id)
    return await paginate(
        query, MESSAGE_ORDER, first=first, after=after, last=last, before=before, default_size=DEFAULT_MESSAGES
    )


# -- batched loads ----------------------------------------------------------------------------


def by_id_loader(ctx: Context, model: type[Any]) -> Any:
    """The request's DataLoader of `model` rows by primary key, within the workspace: plain
    rows (`Scope.rows_by_id`), which the schema's `from_model` read like models."""

    async def batch(ids: list[int]) -> list[Any]:
        found = await ctx.scope.rows_by_id(model, ids)
        return [found.get(i) for i in ids]

    return ctx.loader(f"by_id.{model.__name__}", batch)


def related(ctx: Context, model: type[Any], pk: int | None, convert: Any) -> Any:
    """A related row for a field: the value itself when already loaded (primed by the list
    that fetched the page), else an awaitable batched with its siblings. Keeping the common
    case synchronous spares the event loop a task per field per row."""
    if pk is None:
        return None
    loader = by_id_loader(ctx, model)
    future = loader.cache_map.get(pk)
    if future is not None and future.done() and not future.exception():
        found = future.result()
        return convert(found) if found is not None else None

    async def later() -> Any:
        found = await loader.load(pk)
        return convert(found) if found is not None else None

    return later()


# What the Conversation type reads: a page is read as plain rows of these columns.
CONVERSATION_COLUMNS = (
    "id",
    "status",
    "snoozed_until",
    "subject",
    "vip",
    "unread_count",
    "contact_unread_count",
    "rating",
    "rated_at",
    "website_url",
    "ip",
    "attributed_source",
    "last_message_at",
    "first_response_at",
    "resolved_at",
    "first_response_seconds",
    "resolution_seconds",
    "created_at",
    "updated_at",
    "contact_id",
    "channel_id",
    "topic_id",
    "assignee_id",
    "team_id",
    "last_message_id",
)

PREFETCHABLE = {
    "contact": (Contact, "contact_id"),
    "channel": (Channel, "channel_id"),
    "assignee": (Agent, "assignee_id"),
    "team": (Team, "team_id"),
    "topic": (Topic, "topic_id"),
    "lastMessage": (Message, "last_message_id"),
}


async def prefetch(
    ctx: Context,
    conversations: list[dict[str, Any]],
    fields: set[str],
    *,
    contact_columns: tuple[str, ...] | None = None,
) -> None:
    """Load the related rows a page's selection asks for, one query per table, and prime
    the request's loaders with them. With `contact_columns` (what the selection reads of
    the contact), each conversation row gets its contact's row of those columns instead
    (`_contact_row`): a contact row is the widest of them, and the rest of its columns
    would be converted for nothing."""
    for name in fields & PREFETCHABLE.keys():
        model, column = PREFETCHABLE[name]
        ids = sorted({c[column] for c in conversations} - {None})
        if not ids:
            continue
        if name == "contact" and contact_columns is not None:
            rows = await ctx.scope.columns_by_id(model, ids, contact_columns)
            for c in conversations:
                c["_contact_row"] = rows.get(c[column])
        else:
            found = await ctx.scope.rows_by_id(model, ids)
            by_id_loader(ctx, model).prime_many({i: found.get(i) for i in ids})


async def sync_vip(contact_id: int, vip: bool) -> None:
    """Keep the queue's VIP copy in step with the contact."""
    await Conversation.filter(contact_id=contact_id).exclude(vip=vip).update(vip=vip)
