"""Canned responses: saved replies agents find by a short code. Personal ones are their
owner's alone; shared ones every agent of the workspace sees and uses, and only owners
and admins share, edit or delete them. Agents only: API keys and contacts' sessions
have no canned responses.

Placeholders (domain/canned.py) are checked when a response is saved and filled by
`render_canned_response` from a conversation the agent can see."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q

from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.permissions import Permission, Principal
from domain import canned
from models.canned import CannedResponse
from models.contacts import Contact
from models.workspaces import Agent
from resolvers.conversations import find_conversation
from resolvers.pagination import Order, Page, paginate
from services.segments import attribute_types

BY_SHORTCUT = Order(("shortcut", "id"), descending=False)
SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_BODY = 5_000
MAX_SEARCH = 100
# How many a workspace keeps: shared ones, and personal ones per agent.
MAX_SHARED = 1_000
MAX_PERSONAL = 200


def visible(principal: Principal) -> Q:
    return Q(shared=True) | Q(owner_id=principal.agent_id)


def can_see(principal: Principal, row: CannedResponse) -> bool:
    """For `node(id:)`: agents only, a personal one its owner only."""
    return principal.agent_id is not None and (row.shared or row.owner_id == principal.agent_id)


def _can_edit(principal: Principal, row: CannedResponse) -> bool:
    return principal.is_admin if row.shared else row.owner_id == principal.agent_id


async def _find(ctx: Context, gid: str, field: str = "id") -> CannedResponse:
    principal = ctx.require_agent()
    row = await ctx.scope.by_global_id(gid, "CannedResponse", CannedResponse)
    if row is None or not can_see(principal, row):
        raise UserFailure.of(field, Code.NOT_FOUND, "No canned response with this id.")
    return row


async def list_canned(ctx: Context, *, search: str | None, first: int | None, after: str | None) -> Page[Any]:
    """Those the agent may use, by shortcut; `search` matches the shortcut or the text."""
    principal = ctx.require_agent()
    query = ctx.scope.all(CannedResponse).filter(visible(principal))
    words = (search or "").strip()[:MAX_SEARCH]
    if words:
        query = query.filter(Q(shortcut__icontains=words) | Q(body__icontains=words))
    return await paginate(query, BY_SHORTCUT, first=first, after=after, default_size=50)


async def _validate(ctx: Context, principal: Principal, values: dict[str, Any], row: CannedResponse | None) -> None:
    errors: list[UserError] = []
    if "shortcut" in values:
        shortcut = (values["shortcut"] or "").strip().lower()
        if not SHORTCUT.match(shortcut):
            errors.append(
                UserError(
                    ["shortcut"],
                    Code.INVALID,
                    "shortcut has 1 to 32 lower-case letters, digits, - or _, starting with a letter or digit.",
                )
            )
        values["shortcut"] = shortcut
    if "body" in values:
        body = (values["body"] or "").strip()
        if not body:
            errors.append(UserError(["body"], Code.REQUIRED, "A canned response needs some text."))
        elif len(body) > MAX_BODY:
            errors.append(UserError(["body"], Code.TOO_LONG, f"body has at most {MAX_BODY} characters."))
        else:
            for name in canned.unknown(body, await attribute_types(ctx.scope.workspace_id)):
                errors.append(
                    UserError(
                        ["body"],
                        Code.UNKNOWN_FIELD,
                        f"Unknown placeholder {{{{{name}}}}}: use {', '.join(canned.FIXED)} "
                        "or contact.attributes.<key> of an attribute definition.",
                    )
                )
        values["body"] = body
    shared = values["shared"] if values.get("shared") is not None else (row.shared if row else False)
    values["shared"] = shared
    if shared and not principal.is_admin:
        errors.append(UserError(["shared"], Code.FORBIDDEN, "Only owners and admins share canned responses."))
    if errors:
        raise UserFailure(*errors)
    shortcut = values.get("shortcut", row.shortcut if row else "")
    same = ctx.scope.all(CannedResponse).filter(shortcut=shortcut)
    owner_id = row.owner_id if row else principal.agent_id
    same = same.filter(shared=True) if shared else same.filter(shared=False, owner_id=owner_id)
    if row is not None:
        same = same.exclude(id=row.id)
    if await same.exists():
        raise UserFailure.of("shortcut", Code.TAKEN, f"A canned response with the shortcut {shortcut} exists.")
    if row is None or row.shared != shared:
        kept = ctx.scope.all(CannedResponse)
        kept = kept.filter(shared=True) if shared else kept.filter(shared=False, owner_id=owner_id)
        limit = MAX_SHARED if shared else MAX_PERSONAL
        if await kept.count() >= limit:
            raise UserFailure.of("shared", Code.INVALID, f"At most {limit} {'shared' if shared else 'personal'} ones.")


async def create_canned(ctx: Context, values: dict[str, Any]) -> CannedResponse:
    principal = ctx.require_agent()
    await _validate(ctx, principal, values, None)
    return await CannedResponse.create(
        workspace_id=ctx.scope.workspace_id,
        owner_id=principal.agent_id,
        shared=values["shared"],
        shortcut=values["shortcut"],
        body=values["body"],
    )


async def update_canned(ctx: Context, gid: str, values: dict[str, Any]) -> CannedResponse:
    principal = ctx.require_agent()
    row = await _find(ctx, gid)
    if not _can_edit(principal, row):
        raise UserFailure.of("id", Code.FORBIDDEN, "Only owners and admins edit shared canned responses.")
    await _validate(ctx, principal, values, row)
    for name in ("shortcut", "body", "shared"):
        if values.get(name) is not None:
            setattr(row, name, values[name])
    await row.save()
    return row


async def delete_canned(ctx: Context, gid: str) -> str:
    principal = ctx.require_agent()
    row = await _find(ctx, gid)
    if not _can_edit(principal, row):
        raise UserFailure.of("id", Code.FORBIDDEN, "Only owners and admins delete shared canned responses.")
    await row.delete()
    return gid


@dataclass
class Rendered:
    text: str
    missing: list[str]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


async def render_canned(ctx: Context, gid: str, conversation_gid: str) -> Rendered:
    """The response's text for a conversation, its placeholders filled; the names without
    a value (left empty) in `missing`."""
    principal = ctx.require_agent()
    ctx.require(Permission.CONVERSATIONS_READ)
    row = await _find(ctx, gid)
    conversation = await find_conversation(ctx, conversation_gid)
    if conversation is None:
        raise UserFailure.of("conversationId", Code.NOT_FOUND, "No conversation with this id.")
    names = canned.unknown(row.body, await attribute_types(ctx.scope.workspace_id))
    if names:  # an attribute definition deleted since the response was saved
        raise UserFailure.of("id", Code.UNKNOWN_FIELD, f"Unknown placeholder {{{{{names[0]}}}}}: edit the response.")
    contact = await ctx.scope.get(Contact, conversation.contact_id)
    agent = await ctx.scope.get(Agent, principal.agent_id)
    values: dict[str, str | None] = {
        "contact.name": contact.name if contact else None,
        "contact.email": contact.email if contact else None,
        "contact.phone": contact.phone if contact else None,
        "agent.name": agent.name if agent else None,
        "agent.email": agent.email if agent else None,
    }
    for key, value in ((contact.attributes or {}) if contact else {}).items():
        values[canned.ATTRIBUTE_PREFIX + key] = _text(value)
    text, missing = canned.fill(row.body, values)
    return Rendered(text, missing)
