"""Proactive messages: the admin's list and lifecycle, bots and bot answers, the three
templates of a new workspace, and delivery — the widget reports a page view, the
channel's live messages (compiled once per process, dropped through pub/sub when any of
them changes) are evaluated, one is pushed over `proactiveMessages`; the contact opens,
dismisses or answers it (a conversation starts, tagged and routed).

    page = await list_messages(ctx, order=ORDERS["sent"], descending=True, first=20, after=None)
    report = await report_page_view(ctx, PageView(url="https://shop.example/checkout"))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from core import keys
from core.clock import now
from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.events import Outbox, atomic
from core.hub import Hub
from core.permissions import Permission, PrincipalKind
from core.ratelimit import rate_limits
from domain import contact_fields as cf
from domain import proactive as rules_domain
from domain.masking import mask_card_numbers
from domain.schedule import BusinessHours, ScheduleError
from models.channels import SESSION_KINDS, Channel
from models.contacts import ChangeKind, Contact, ContactEvent, EventKind
from models.conversations import ActivityKind, ConversationTag, SenderKind
from models.proactive import (
    Bot,
    BotAnswer,
    Frequency,
    ProactiveDelivery,
    ProactiveMessage,
    ProactiveStatus,
    ResponseType,
    SendWindow,
    Visit,
)
from models.segments import Segment, SegmentMembership
from models.workspaces import Team
from resolvers.contacts import EVENT_NAME, clean_tags, fill_from_session, record_change
from resolvers.conversations import add_message, clean_body, open_conversation, receive_inbound
from resolvers.pagination import Order, Page, paginate
from services import attribution
from services.conversations import record_activity
from services.segments import mark_for_segments

log = logging.getLogger("parley.proactive")

MAX_NAME = 120
MAX_TEXT = 250  # "a short text"
MAX_FOLLOW_UP = 500
MAX_TAGS = 20
MAX_BOT_ANSWER = 5_000
MAX_URL = 2048

# Sortable columns: the connection's orderBy field -> model column. The id breaks ties.
ORDER_COLUMNS = {
    "name": "name",
    "status": "status",
    "sent": "sent",
    "opened": "opened",
    "replied": "replied",
    "updated_at": "updated_at",
    "created_at": "created_at",
    "channel": "channel_id",
    "frequency": "frequency",
}


# -- reading --------------------------------------------------------------------------------


async def list_messages(
    ctx: Context, *, column: str, descending: bool, first: int | None, after: str | None
) -> Page[ProactiveMessage]:
    ctx.require(Permission.CONVERSATIONS_READ)
    order = Order((ORDER_COLUMNS[column], "id"), descending=descending)
    return await paginate(ctx.scope.all(ProactiveMessage), order, first=first, after=after, default_size=25)


async def message_by_id(ctx: Context, pk: int | None) -> ProactiveMessage | None:
    """The proactive message with this id in the caller's workspace, else None: for a
    delivery already authorised, or a field of a message already shown."""
    return await ctx.scope.get(ProactiveMessage, pk)


async def find_message(ctx: Context, gid: str) -> ProactiveMessage | None:
    ctx.require(Permission.CONVERSATIONS_READ)
    return await ctx.scope.by_global_id(gid, "ProactiveMessage", ProactiveMessage)


async def list_bots(ctx: Context, *, first: int | None, after: str | None) -> Page[Bot]:
    ctx.require(Permission.CONVERSATIONS_READ)
    return await paginate(ctx.scope.all(Bot), Order(("id",), descending=False), first=first, after=after)


async def bot_answers(ctx: Context, bot_id: int) -> list[BotAnswer]:
    return list(await ctx.scope.all(BotAnswer).filter(bot_id=bot_id).order_by("id"))


async def list_deliveries(
    ctx: Context, message_id: int, *, first: int | None, after: str | None
) -> Page[ProactiveDelivery]:
    """A message's deliveries, newest first."""
    ctx.require(Permission.CONVERSATIONS_READ)
    query = ctx.scope.all(ProactiveDelivery).filter(message_id=message_id)
    return await paginate(query, Order(("id",), descending=True), first=first, after=after, default_size=25)


def can_see_delivery(principal: Any, delivery: ProactiveDelivery) -> bool:
    if principal.kind is PrincipalKind.CONTACT:
        return bool(principal.contact_id == delivery.contact_id)
    return bool(principal.can(Permission.CONVERSATIONS_READ))


# -- validation -----------------------------------------------------------------------------


def _manage(ctx: Context) -> None:
    ctx.require(Permission.WORKSPACE_MANAGE)


async def _by_gid(
    ctx: Context, gid: str | None, type_name: str, model: type[Any], field: str, errors: list[UserError]
) -> Any:
    if gid is None:
        return None
    row = await ctx.scope.by_global_id(gid, type_name, model)
    if row is None:
        errors.append(UserError([field], Code.NOT_FOUND, f"No {type_name[0].lower() + type_name[1:]} with this id."))
    return row


def _short_text(value: str | None, field: str, limit: int, errors: list[UserError], *, emoji: bool) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if len(text) > limit:
        errors.append(UserError([field], Code.TOO_LONG, f"{field} has at most {limit} characters."))
    elif not emoji and (found := rules_domain.find_emoji(text)) is not None:
        errors.append(
            UserError(
                [field],
                Code.INVALID,
                f"{field} cannot contain emoji (found {found!r}): agent responses are plain text.",
            )
        )
    return mask_card_numbers(text)


async def _clean_rules(ctx: Context, rules: Any, errors: list[UserError]) -> dict[str, Any] | None:
    try:
        clean = rules_domain.validate_rules(rules)
    except rules_domain.RuleError as exc:
        errors.append(UserError(["rules", *exc.path], Code(exc.code), exc.message))
        return None
    wanted = rules_domain.segment_ids(clean)
    if wanted:
        found = set(await ctx.scope.all(Segment).filter(id__in=list(wanted)).values_list("id", flat=True))
        for path, segment_id in _segment_paths(clean, ["rules"]):
            if segment_id not in found:
                errors.append(UserError([*path, "value"], Code.NOT_FOUND, "No segment with this id."))
    return clean


def _segment_paths(rules: dict[str, Any], path: list[str]) -> list[tuple[list[str], int]]:
    found = [
        ([*path, "conditions", str(i)], c["value"])
        for i, c in enumerate(rules["conditions"])
        if c["field"] == "segment"
    ]
    for i, g in enumerate(rules["groups"]):
        found += _segment_paths(g, [*path, "groups", str(i)])
    return found


async def _clean_values(ctx: Context, values: dict[str, Any], response_type: ResponseType) -> dict[str, Any]:
    """Check the fields an admin sets; every problem names its field. Global ids arrive as
    strings under channel_id, route_team_id and bot_answer_id."""
    errors: list[UserError] = []
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key == "name":
            name = " ".join((value or "").split())
            if not name:
                errors.append(UserError(["name"], Code.REQUIRED, "A proactive message needs a name."))
            elif len(name) > MAX_NAME:
                errors.append(UserError(["name"], Code.TOO_LONG, f"name has at most {MAX_NAME} characters."))
            clean[key] = name
        elif key == "channel_id":
            channel = await _by_gid(ctx, value, "Channel", Channel, "channelId", errors)
            if channel is not None and channel.kind not in SESSION_KINDS:
                errors.append(
                    UserError(
                        ["channelId"],
                        Code.NOT_ALLOWED,
                        "Proactive messages go out on web widget and mobile SDK channels only.",
                    )
                )
            clean[key] = channel.id if channel else None
        elif key == "route_team_id":
            team = await _by_gid(ctx, value, "Team", Team, "routeTeamId", errors)
            clean[key] = team.id if team else None
        elif key == "bot_answer_id":
            answer = await _by_gid(ctx, value, "BotAnswer", BotAnswer, "botAnswerId", errors)
            clean[key] = answer.id if answer else None
        elif key == "text":
            clean[key] = (
                _short_text(value or "", "text", MAX_TEXT, errors, emoji=response_type is ResponseType.BOT) or ""
            )
        elif key == "follow_up_text":
            clean[key] = (
                _short_text(value, "followUpText", MAX_FOLLOW_UP, errors, emoji=response_type is ResponseType.BOT)
                or None
            )
        elif key == "tags":
            clean[key] = clean_tags(value or [], errors, limit=MAX_TAGS)
        elif key == "rules":
            clean[key] = await _clean_rules(ctx, value if value is not None else {"match": "all"}, errors)
        elif value is None and key in ("response_type", "send_window", "frequency", "ask_name", "ask_email"):
            errors.append(UserError([_camel(key)], Code.REQUIRED, f"{_camel(key)} cannot be null."))
        else:
            clean[key] = value
    if errors:
        raise UserFailure(*errors)
    return clean


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


async def problems(message: ProactiveMessage) -> list[UserError]:
    """What keeps the message from going live, each naming its field (empty: it may)."""
    errors: list[UserError] = []
    channel = await Channel.get_or_none(id=message.channel_id) if message.channel_id else None
    if channel is None:
        errors.append(
            UserError(["channelId"], Code.REQUIRED, "Choose the web widget or mobile SDK channel it goes out on.")
        )
    elif channel.kind not in SESSION_KINDS:
        errors.append(
            UserError(
                ["channelId"], Code.NOT_ALLOWED, f"A {channel.kind.value} channel cannot show proactive messages."
            )
        )
    if message.response_type is ResponseType.AGENT:
        if not message.text:
            errors.append(UserError(["text"], Code.REQUIRED, "An agent response needs its text."))
        elif (found := rules_domain.find_emoji(message.text)) is not None:
            errors.append(UserError(["text"], Code.INVALID, f"text cannot contain emoji (found {found!r})."))
    else:
        answer = await BotAnswer.get_or_none(id=message.bot_answer_id) if message.bot_answer_id else None
        if answer is None:
            errors.append(UserError(["botAnswerId"], Code.REQUIRED, "A bot response needs a published bot answer."))
        elif not answer.published:
            errors.append(UserError(["botAnswerId"], Code.NOT_ALLOWED, "This bot answer is not published."))
        elif channel is not None and answer.channel_id != channel.id:
            errors.append(UserError(["botAnswerId"], Code.NOT_ALLOWED, "This bot answer belongs to another channel."))
    try:
        rules_domain.validate_rules(message.rules or {"match": "all"})
    except rules_domain.RuleError as exc:
        errors.append(UserError(["rules", *exc.path], Code(exc.code), exc.message))
    return errors


# -- the cache of live messages, per channel --------------------------------------------------


@dataclass
class _Entry:
    messages: list[rules_domain.LiveMessage]
    business_hours: BusinessHours | None
    reconnects: int


class LiveCache:
    """Each channel's live messages, compiled. An entry is kept only while this process
    listens to `proactive_changes` (and Redis has not dropped it since the entry was
    filled): a change anywhere then reaches every process before its next page view."""

    def __init__(self) -> None:
        self.entries: dict[int, _Entry] = {}
        self.generation: dict[int, int] = {}
        self.listening: Hub | None = None
        self._task: asyncio.Task[None] | None = None
        self.compilations = 0

    def invalidate(self, channel_ids: list[int]) -> None:
        for cid in channel_ids:
            self.entries.pop(cid, None)
            self.generation[cid] = self.generation.get(cid, 0) + 1

    def _start(self, hub: Hub) -> None:
        if self._task is None or self._task.done() or self._task.get_loop() is not asyncio.get_running_loop():
            self.entries.clear()
            self.listening = None
            self._task = asyncio.get_running_loop().create_task(self._listen(hub), name="proactive-cache")

    async def _listen(self, hub: Hub) -> None:
        try:
            async with hub.subscribe(keys.proactive_changes()) as events:
                self.listening = hub
                async for event in events:
                    self.invalidate([int(c) for c in event.get("channelIds", [])])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "proactive cache: stopped listening for changes; compiling per page view until it restarts",
                exc_info=True,
            )
        finally:
            self.listening = None
            self.entries.clear()

    async def get(self, hub: Hub | None, channel_id: int) -> _Entry:
        if hub is not None:
            self._start(hub)
        trusted = hub is not None and self.listening is hub and hub.connected.is_set()
        found = self.entries.get(channel_id)
        if found is not None and trusted and hub is not None and found.reconnects == hub.reconnects:
            return found
        generation = self.generation.get(channel_id, 0)
        entry = await load_live(channel_id, hub.reconnects if hub else 0)
        self.compilations += 1
        if trusted and self.generation.get(channel_id, 0) == generation:
            self.entries[channel_id] = entry
        return entry


live_cache = LiveCache()


def _push_row(m: ProactiveMessage, bot_answer_body: str | None) -> dict[str, Any]:
    return {
        "messageId": m.id,
        "text": m.text,
        "responseType": m.response_type.value,
        "askName": m.ask_name,
        "askEmail": m.ask_email,
        "botAnswer": bot_answer_body,
    }


async def load_live(channel_id: int, reconnects: int = 0) -> _Entry:
    channel = await Channel.get_or_none(id=channel_id)
    rows = await ProactiveMessage.filter(channel_id=channel_id, status=ProactiveStatus.LIVE).order_by("id")
    answers = {a.id: a for a in await BotAnswer.filter(id__in=[m.bot_answer_id for m in rows if m.bot_answer_id])}
    compiled = []
    for m in rows:
        answer = answers.get(m.bot_answer_id) if m.bot_answer_id else None
        try:
            compiled.append(
                rules_domain.compile_message(
                    m.id,
                    m.rules or {},
                    m.frequency.value,
                    m.send_window.value,
                    _push_row(m, answer.body if answer else None),
                )
            )
        except rules_domain.RuleError:
            log.warning("proactive message %s has invalid rules; not evaluated", m.id)
    hours = None
    if channel is not None and channel.business_hours:
        with contextlib.suppress(ScheduleError):
            hours = BusinessHours.parse(channel.business_hours)
    return _Entry(compiled, hours, reconnects)


def changed(outbox: Outbox, channel_ids: list[int | None]) -> None:
    """After commit: every process drops its compiled messages of these channels."""
    ids = sorted({c for c in channel_ids if c is not None})
    if not ids:
        return
    outbox.add(keys.proactive_changes(), {"type": "proactive.changed", "channelIds": ids})

    async def drop_here() -> None:
        live_cache.invalidate(ids)

    outbox.after_commit(drop_here)


# -- admin: create, edit, lifecycle ---------------------------------------------------------

EDITABLE = (
    "name",
    "channel_id",
    "response_type",
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


async def _to_manage(ctx: Context, gid: str) -> ProactiveMessage:
    _manage(ctx)
    message = await ctx.scope.by_global_id(gid, "ProactiveMessage", ProactiveMessage)
    if message is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No proactive message with this id.")
    return message


async def create_message(ctx: Context, values: dict[str, Any]) -> ProactiveMessage:
    _manage(ctx)
    values.setdefault("name", "")
    clean = await _clean_values(ctx, values, values.get("response_type") or ResponseType.AGENT)
    async with atomic(ctx.outbox):
        return await ProactiveMessage.create(workspace_id=ctx.scope.workspace_id, status=ProactiveStatus.DRAFT, **clean)


async def update_message(ctx: Context, gid: str, values: dict[str, Any]) -> ProactiveMessage:
    """Any status. A live message stays live only if it still could be published."""
    message = await _to_manage(ctx, gid)
    clean = await _clean_values(ctx, values, values.get("response_type") or message.response_type)
    before_channel = message.channel_id
    for key, value in clean.items():
        setattr(message, key, value)
    if message.status is ProactiveStatus.LIVE:
        errors = await problems(message)
        if errors:
            raise UserFailure(*errors)
    if message.status is ProactiveStatus.HAS_ERRORS and not await problems(message):
        message.error = None
    async with atomic(ctx.outbox):
        await message.save()
        changed(ctx.outbox, [before_channel, message.channel_id])
    return message


TRANSITIONS = {
    # action: (statuses it is offered in, status after)
    "publish": ({ProactiveStatus.DRAFT, ProactiveStatus.HAS_ERRORS}, ProactiveStatus.LIVE),
    "pause": ({ProactiveStatus.LIVE}, ProactiveStatus.PAUSED),
    "resume": ({ProactiveStatus.PAUSED}, ProactiveStatus.LIVE),
}


async def transition(ctx: Context, gid: str, action: str) -> ProactiveMessage:
    """publish (draft, or a fixed has-errors message → live, validated), pause (live →
    paused), resume (paused → live, validated again: its channel may have changed)."""
    message = await _to_manage(ctx, gid)
    offered, target = TRANSITIONS[action]
    if message.status not in offered:
        allowed = " or ".join(sorted(s.value for s in offered))
        raise UserFailure.of(
            "id",
            Code.INVALID_TRANSITION,
            f"Only a {allowed} message can be {action}d; this one is {message.status.value}.",
        )
    if target is ProactiveStatus.LIVE:
        errors = await problems(message)
        if errors:
            raise UserFailure(*errors)
    async with atomic(ctx.outbox):
        # Conditional: of two admins acting at once, one wins; the other sees the new status.
        moved = await ProactiveMessage.filter(id=message.id, status=message.status).update(
            status=target, error=None, updated_at=now()
        )
        if not moved:
            raise UserFailure.of("id", Code.CONFLICT, "The message changed meanwhile; reload it.")
        changed(ctx.outbox, [message.channel_id])
    await message.refresh_from_db()
    return message


async def clone_message(ctx: Context, gid: str) -> ProactiveMessage:
    message = await _to_manage(ctx, gid)
    if message.status is ProactiveStatus.HAS_ERRORS:
        raise UserFailure.of("id", Code.INVALID_TRANSITION, "A message with errors cannot be cloned; fix it first.")
    name = f"Copy of {message.name}"[:MAX_NAME]
    copied = {f: getattr(message, f) for f in EDITABLE if f != "name"}
    return await ProactiveMessage.create(
        workspace_id=message.workspace_id, name=name, status=ProactiveStatus.DRAFT, **copied
    )


async def delete_message(ctx: Context, gid: str) -> None:
    message = await _to_manage(ctx, gid)
    async with atomic(ctx.outbox):
        await message.delete()
        changed(ctx.outbox, [message.channel_id])


async def mark_broken(outbox: Outbox, messages: list[ProactiveMessage]) -> None:
    """Live messages that can no longer be published turn HAS_ERRORS and stop sending."""
    broken = []
    for message in messages:
        errors = await problems(message)
        if errors:
            message.status, message.error = ProactiveStatus.HAS_ERRORS, "; ".join(e.message for e in errors)[:500]
            await message.save(update_fields=["status", "error", "updated_at"])
            broken.append(message.channel_id)
    changed(outbox, broken)


async def channel_changed(outbox: Outbox, channel_id: int) -> None:
    """Called by the channel's update (kind, business hours): check its live messages."""
    await mark_broken(outbox, list(await ProactiveMessage.filter(channel_id=channel_id, status=ProactiveStatus.LIVE)))
    changed(outbox, [channel_id])


async def channel_deleted(outbox: Outbox, channel_id: int) -> None:
    """Called by the channel's deletion, before it: its messages stay, without a channel
    (SET NULL), and the live ones have errors from now on."""
    await ProactiveMessage.filter(channel_id=channel_id, status=ProactiveStatus.LIVE).update(
        status=ProactiveStatus.HAS_ERRORS, error="Its channel was deleted.", updated_at=now()
    )
    changed(outbox, [channel_id])


# -- templates ------------------------------------------------------------------------------

TEMPLATES: list[dict[str, Any]] = [
    {
        "template_key": "welcome",
        "name": "Welcome new visitors",
        "text": "Hi there! Have a look around, and ask us anything.",
        "rules": {
            "match": "all",
            "conditions": [
                {"field": "visitor", "operator": "equals", "value": "new"},
                {"field": "time_on_page", "operator": "greater_or_equal", "value": 15},
            ],
        },
        "frequency": Frequency.ONCE_PER_CONTACT,
        "send_window": SendWindow.ANY_TIME,
        "tags": ["welcome"],
    },
    {
        "template_key": "checkout_help",
        "name": "Help at checkout",
        "text": "Need a hand with your order? We are here to help.",
        "ask_email": True,
        "follow_up_text": "Thanks! An agent will be with you shortly.",
        "rules": {
            "match": "all",
            "conditions": [
                {"field": "page_url", "operator": "matches", "value": "*/checkout*"},
                {"field": "time_on_page", "operator": "greater_or_equal", "value": 30},
            ],
        },
        "frequency": Frequency.ONCE_PER_VISIT,
        "send_window": SendWindow.BUSINESS_HOURS,
        "tags": ["checkout"],
    },
    {
        "template_key": "pricing_returning",
        "name": "Returning visitors on pricing",
        "text": "Welcome back! Questions about our plans? Let us talk.",
        "ask_name": True,
        "ask_email": True,
        "follow_up_text": "Thank you. Our sales team will reply here.",
        "rules": {
            "match": "all",
            "conditions": [
                {"field": "visitor", "operator": "equals", "value": "returning"},
                {"field": "page_url", "operator": "contains", "value": "/pricing"},
            ],
        },
        "frequency": Frequency.ONCE_PER_VISIT,
        "send_window": SendWindow.BUSINESS_HOURS,
        "tags": ["sales"],
    },
]


async def create_templates(workspace_id: int, channel_id: int | None) -> None:
    """The three drafts every new workspace starts with, ready to clone."""
    await ProactiveMessage.bulk_create(
        [
            ProactiveMessage(workspace_id=workspace_id, channel_id=channel_id, status=ProactiveStatus.DRAFT, **t)
            for t in TEMPLATES
        ]
    )


# -- bots and bot answers -------------------------------------------------------------------


async def create_bot(ctx: Context, name: str) -> Bot:
    _manage(ctx)
    clean = " ".join(name.split())
    if not clean or len(clean) > MAX_NAME:
        raise UserFailure.of("name", Code.INVALID, f"A bot's name has 1 to {MAX_NAME} characters.")
    return await Bot.create(workspace_id=ctx.scope.workspace_id, name=clean)


async def _answer_values(ctx: Context, values: dict[str, Any], errors: list[UserError]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    if "name" in values:
        name = " ".join((values["name"] or "").split())
        if not name or len(name) > MAX_NAME:
            errors.append(UserError(["name"], Code.INVALID, f"A bot answer's name has 1 to {MAX_NAME} characters."))
        clean["name"] = name
    if "body" in values:
        body = (values["body"] or "").strip()
        if not body:
            errors.append(UserError(["body"], Code.REQUIRED, "A bot answer needs its text."))
        elif len(body) > MAX_BOT_ANSWER:
            errors.append(UserError(["body"], Code.TOO_LONG, f"body has at most {MAX_BOT_ANSWER} characters."))
        clean["body"] = mask_card_numbers(body)
    if "channel_id" in values:
        channel = await _by_gid(ctx, values["channel_id"], "Channel", Channel, "channelId", errors)
        if channel is not None and channel.kind not in SESSION_KINDS:
            errors.append(
                UserError(["channelId"], Code.NOT_ALLOWED, "Bots answer on web widget and mobile SDK channels only.")
            )
        clean["channel_id"] = channel.id if channel else None
    return clean


async def create_bot_answer(ctx: Context, bot_gid: str, values: dict[str, Any]) -> BotAnswer:
    _manage(ctx)
    errors: list[UserError] = []
    bot = await _by_gid(ctx, bot_gid, "Bot", Bot, "botId", errors)
    clean = await _answer_values(ctx, {"name": "", "body": "", **values}, errors)
    if errors:
        raise UserFailure(*errors)
    return await BotAnswer.create(workspace_id=ctx.scope.workspace_id, bot_id=bot.id, **clean)


async def _answer_to_manage(ctx: Context, gid: str) -> BotAnswer:
    _manage(ctx)
    answer = await ctx.scope.by_global_id(gid, "BotAnswer", BotAnswer)
    if answer is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No bot answer with this id.")
    return answer


async def _answer_changed(outbox: Outbox, answer_id: int) -> None:
    users = list(await ProactiveMessage.filter(bot_answer_id=answer_id, status=ProactiveStatus.LIVE))
    await mark_broken(outbox, users)
    changed(outbox, [m.channel_id for m in users])


async def update_bot_answer(ctx: Context, gid: str, values: dict[str, Any]) -> BotAnswer:
    answer = await _answer_to_manage(ctx, gid)
    errors: list[UserError] = []
    clean = await _answer_values(ctx, values, errors)
    if errors:
        raise UserFailure(*errors)
    async with atomic(ctx.outbox):
        for key, value in clean.items():
            setattr(answer, key, value)
        await answer.save()
        await _answer_changed(ctx.outbox, answer.id)
    return answer


async def set_bot_answer_published(ctx: Context, gid: str, published: bool) -> BotAnswer:
    answer = await _answer_to_manage(ctx, gid)
    if published and answer.channel_id is None:
        raise UserFailure.of("id", Code.REQUIRED, "Give the bot answer a channel before publishing it.")
    async with atomic(ctx.outbox):
        answer.published = published
        await answer.save(update_fields=["published", "updated_at"])
        await _answer_changed(ctx.outbox, answer.id)
    return answer


async def delete_bot_answer(ctx: Context, gid: str) -> None:
    answer = await _answer_to_manage(ctx, gid)
    async with atomic(ctx.outbox):
        users = list(await ProactiveMessage.filter(bot_answer_id=answer.id, status=ProactiveStatus.LIVE))
        await answer.delete()
        for m in users:
            m.bot_answer_id = None
        await mark_broken(ctx.outbox, users)
        changed(ctx.outbox, [m.channel_id for m in users])


# -- delivery -------------------------------------------------------------------------------


@dataclass
class PageView:
    url: str
    title: str | None = None
    referrer: str | None = None
    device: str | None = None
    language: str | None = None
    time_on_page: int = 0
    event: str | None = None


@dataclass
class Report:
    visit: Visit
    delivery: ProactiveDelivery | None
    evaluated: int


def _check_page_view(view: PageView) -> None:
    errors: list[UserError] = []
    if not view.url.startswith(("http://", "https://")) or len(view.url) > MAX_URL:
        errors.append(UserError(["url"], Code.INVALID, f"url is an http(s) URL of at most {MAX_URL} characters."))
    if view.title is not None and len(view.title) > 500:
        errors.append(UserError(["title"], Code.TOO_LONG, "title has at most 500 characters."))
    if view.referrer is not None and len(view.referrer) > MAX_URL:
        errors.append(UserError(["referrer"], Code.TOO_LONG, f"referrer has at most {MAX_URL} characters."))
    # What the visitor's browser reports is free text too: stored and matched masked.
    view.url = mask_card_numbers(view.url)
    view.title = view.title and mask_card_numbers(view.title)
    view.referrer = view.referrer and mask_card_numbers(view.referrer)
    if view.language is not None:
        try:
            view.language = cf.normalize_locale(view.language)
        except ValueError as exc:
            errors.append(UserError(["language"], Code.INVALID, f"language: {exc}."))
    if not 0 <= view.time_on_page <= 7 * 86_400:
        errors.append(UserError(["timeOnPageSeconds"], Code.INVALID, "timeOnPageSeconds is between 0 and a week."))
    if view.event is not None and not EVENT_NAME.match(view.event):
        errors.append(
            UserError(["event"], Code.INVALID, "An event name has 1 to 120 letters, digits, spaces or _ . : / -.")
        )
    if errors:
        raise UserFailure(*errors)


async def _visit(contact: Contact, channel_id: int, at: datetime, new_page: bool) -> Visit:
    """The contact's current visit on the channel, or a new one after VISIT_TIMEOUT."""
    last = await Visit.filter(contact_id=contact.id, channel_id=channel_id).order_by("-last_seen_at", "-id").first()
    if last is None or at - last.last_seen_at > rules_domain.VISIT_TIMEOUT:
        return await Visit.create(
            workspace_id=contact.workspace_id,
            contact_id=contact.id,
            channel_id=channel_id,
            number=(last.number + 1) if last else 1,
            page_views=1,
            started_at=at,
            last_seen_at=at,
        )
    last.last_seen_at = at
    if new_page or last.page_views == 0:
        last.page_views += 1
    await Visit.filter(id=last.id).update(last_seen_at=at, page_views=last.page_views)
    return last


def delivery_row(d: ProactiveDelivery, push: dict[str, Any]) -> dict[str, Any]:
    return {"id": d.id, "createdAt": d.created_at.isoformat(), **push}


async def report_page_view(ctx: Context, view: PageView) -> Report:
    """The widget or SDK reports where the visitor is: when a page opens (time 0), as time
    passes on it, and with a custom event. At most one proactive message is pushed per
    report: the first of the channel's live messages (oldest first) whose rules, window
    and frequency allow it."""
    principal = ctx.require_contact()
    assert principal.contact_id is not None and principal.channel_id is not None
    await rate_limits.hit_widget("widget-events", str(principal.channel_id), ctx.client_ip)
    _check_page_view(view)
    at = now()
    contact = await Contact.get(id=principal.contact_id)
    new_page = view.time_on_page == 0 and view.event is None
    async with atomic(ctx.outbox):
        visit = await _visit(contact, principal.channel_id, at, new_page)
        if new_page:
            await ContactEvent.create(
                workspace_id=contact.workspace_id,
                contact_id=contact.id,
                kind=EventKind.PAGE_VIEW,
                name="page_view",
                url=view.url,
                title=view.title,
                properties={},
                occurred_at=at,
            )
            await Contact.filter(id=contact.id, last_seen_at__lt=at).update(last_seen_at=at)
            mark_for_segments(ctx.outbox, contact.workspace_id, contact.id)
    entry = await live_cache.get(ctx.hub, principal.channel_id)
    if not entry.messages or contact.blocked:
        return Report(visit, None, 0)
    segments: frozenset[int] = frozenset()
    if any(m.needs_segments for m in entry.messages):
        segments = frozenset(await SegmentMembership.filter(contact_id=contact.id).values_list("segment_id", flat=True))
    visitor = rules_domain.Visitor(
        url=view.url,
        title=view.title or "",
        referrer=view.referrer or contact.referrer or "",
        time_on_page=view.time_on_page,
        visit_count=visit.number,
        language=view.language or contact.browser_language or contact.locale or "",
        country=contact.country or "",
        device=view.device or "",
        event=view.event,
        segment_ids=segments,
        attributes=contact.attributes or {},
    )
    candidates = rules_domain.matching(entry.messages, visitor, at, entry.business_hours)
    if not candidates:
        return Report(visit, None, len(entry.messages))
    earlier: dict[int, list[tuple[int | None, int]]] = {}
    for message_id, visit_id, page_view in await ProactiveDelivery.filter(
        contact_id=contact.id, message_id__in=[m.id for m in candidates]
    ).values_list("message_id", "visit_id", "page_view"):
        earlier.setdefault(message_id, []).append((visit_id, page_view))
    for live in candidates:
        if not rules_domain.frequency_allows(live.frequency, earlier.get(live.id, []), visit.id, visit.page_views):
            continue
        delivery = await _deliver(ctx.outbox, contact, visit, live, at)
        if delivery is not None:
            return Report(visit, delivery, len(entry.messages))
    return Report(visit, None, len(entry.messages))


class _AlreadyDelivered(Exception):
    pass


async def _deliver(
    outbox: Outbox, contact: Contact, visit: Visit, live: rules_domain.LiveMessage, at: datetime
) -> ProactiveDelivery | None:
    key = rules_domain.dedupe_key(live.frequency, live.id, contact.id, visit.id, visit.page_views)
    try:
        async with atomic(outbox):
            # Conditional on the message still being live: a pause commits before or after.
            counted = await ProactiveMessage.filter(id=live.id, status=ProactiveStatus.LIVE).update(sent=F("sent") + 1)
            if not counted:
                return None
            try:
                delivery = await ProactiveDelivery.create(
                    workspace_id=contact.workspace_id,
                    message_id=live.id,
                    contact_id=contact.id,
                    visit_id=visit.id,
                    page_view=visit.page_views,
                    dedupe_key=key,
                )
            except IntegrityError:
                raise _AlreadyDelivered from None  # a racing page view delivered it: roll the count back
            await attribution.record_receipts(
                contact.workspace_id, attribution.source_key("proactive", live.id), [contact.id], at
            )
            outbox.add(
                keys.contact_proactive_channel(contact.workspace_id, contact.id),
                {"type": "proactive", "cursor": str(delivery.id), "delivery": delivery_row(delivery, live.push)},
            )
    except _AlreadyDelivered:
        return None
    return delivery


async def _own_delivery(ctx: Context, gid: str) -> ProactiveDelivery:
    principal = ctx.require_contact()
    delivery = await ctx.scope.by_global_id(gid, "ProactiveDelivery", ProactiveDelivery)
    if delivery is None or delivery.contact_id != principal.contact_id:
        raise UserFailure.of("deliveryId", Code.NOT_FOUND, "No proactive message delivered to you with this id.")
    return delivery


async def open_delivery(ctx: Context, gid: str) -> ProactiveDelivery:
    """The contact clicked the message: counted as opened once."""
    delivery = await _own_delivery(ctx, gid)
    if delivery.opened_at is None:
        stamp = now()
        async with atomic(ctx.outbox):
            if await ProactiveDelivery.filter(id=delivery.id, opened_at__isnull=True).update(opened_at=stamp):
                await ProactiveMessage.filter(id=delivery.message_id).update(opened=F("opened") + 1)
        delivery.opened_at = stamp
    return delivery


async def dismiss_delivery(ctx: Context, gid: str) -> ProactiveDelivery:
    """The contact closed it; it may come back as the message's frequency allows."""
    delivery = await _own_delivery(ctx, gid)
    if delivery.dismissed_at is None:
        delivery.dismissed_at = now()
        await delivery.save(update_fields=["dismissed_at"])
    return delivery


@dataclass
class Answered:
    delivery: ProactiveDelivery
    conversation: Any


async def answer_delivery(
    ctx: Context, gid: str, *, body: str | None, name: str | None, email: str | None, website_url: str | None
) -> Answered:
    """The contact answers: a conversation starts on the message's channel with its tags,
    the requested name and e-mail fill the contact's empty fields (never a trusted
    contact's e-mail: contacts.fill_from_session) and go in the reply's text, and the conversation goes to the
    agents (the message's team, or the unassigned queue) or to its bot answer."""
    delivery = await _own_delivery(ctx, gid)
    principal = ctx.require_contact()
    if delivery.replied_at is not None:
        raise UserFailure.of("deliveryId", Code.CONFLICT, "You already answered this message.")
    message = await ProactiveMessage.get(id=delivery.message_id)
    errors: list[UserError] = []
    changes: dict[str, str] = {}
    if name is not None or message.ask_name:
        clean_name = " ".join((name or "").split())
        if not clean_name:
            errors.append(UserError(["name"], Code.REQUIRED, "This message asks for your name."))
        elif len(clean_name) > 200:
            errors.append(UserError(["name"], Code.TOO_LONG, "name has at most 200 characters."))
        else:
            changes["name"] = mask_card_numbers(clean_name)
    if email is not None or message.ask_email:
        try:
            changes["email"] = cf.normalize_email(email or "")
        except ValueError as exc:
            errors.append(UserError(["email"], Code.REQUIRED if not email else Code.INVALID, f"email: {exc}."))
    text = None
    if body is not None and body.strip():
        try:
            text = clean_body(body)
        except UserFailure as failure:
            errors.extend(failure.errors)
    elif changes:
        text = "\n".join(f"{k.title()}: {v}" for k, v in changes.items())
    else:
        errors.append(UserError(["body"], Code.REQUIRED, "Write a reply."))
    if errors:
        raise UserFailure(*errors)
    assert text is not None
    contact = await Contact.get(id=principal.contact_id)
    channel = await Channel.get(id=principal.channel_id)
    answer = await BotAnswer.get_or_none(id=message.bot_answer_id, published=True) if message.bot_answer_id else None
    to_bot = message.response_type is ResponseType.BOT and answer is not None
    async with atomic(ctx.outbox):
        # What the contact says about itself fills empty fields only, through the one
        # change path (change log, contactUpdated, webhooks, segments).
        if filled := fill_from_session(contact, changes):
            await contact.save(update_fields=[*filled, "updated_at"])
            await record_change(ctx.outbox, contact, ChangeKind.UPDATED)
        conversation = await open_conversation(ctx.outbox, contact, channel, website_url=website_url, ip=ctx.client_ip)
        if message.tags:
            await ConversationTag.bulk_create(
                [
                    ConversationTag(workspace_id=contact.workspace_id, conversation_id=conversation.id, name=t)
                    for t in message.tags
                ]
            )
        if not to_bot and message.route_team_id is not None and not contact.blocked:
            conversation.team_id = message.route_team_id
            await conversation.save(update_fields=["team_id", "updated_at"])
            await record_activity(
                ctx.outbox, conversation, ActivityKind.ASSIGNED, previous={"assigneeId": None, "teamId": None}
            )
        opener = SenderKind.BOT if message.response_type is ResponseType.BOT else SenderKind.SYSTEM
        if message.text:
            await add_message(
                ctx.outbox, conversation, sender_kind=opener, body=message.text, notify=not contact.blocked
            )
        await receive_inbound(ctx.outbox, conversation, contact, text)
        if to_bot:
            assert answer is not None
            await add_message(
                ctx.outbox, conversation, sender_kind=SenderKind.BOT, body=answer.body, notify=not contact.blocked
            )
        elif message.follow_up_text:
            await add_message(
                ctx.outbox,
                conversation,
                sender_kind=SenderKind.SYSTEM,
                body=message.follow_up_text,
                notify=not contact.blocked,
            )
        stamp = now()
        await ProactiveDelivery.filter(id=delivery.id).update(replied_at=stamp, conversation_id=conversation.id)
        delivery.replied_at, delivery.conversation_id = stamp, conversation.id
    return Answered(delivery, conversation)


async def conversation_tags(ctx: Context, conversation_id: int) -> list[str]:
    async def batch(ids: list[int]) -> list[list[str]]:
        rows = (
            await ConversationTag.filter(conversation_id__in=ids)
            .order_by("name")
            .values_list("conversation_id", "name")
        )
        found: dict[int, list[str]] = {i: [] for i in ids}
        for cid, tag in rows:
            found[cid].append(tag)
        return [found[i] for i in ids]

    return await ctx.loader("conversation.tags", batch).load(conversation_id)  # type: ignore[no-any-return]
