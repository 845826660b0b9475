"""The app under benchmark plus its baseline: the real Parley app, and beside it bare
Starlette endpoints that return the same rows from the same database with no GraphQL,
no auth and no model objects — what the read path is measured against.

    uvicorn bench.bare_app:app      # POST /graphql as usual; GET /bare/contacts, /bare/conversations
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asgi import app
from models.contacts import Contact
from models.conversations import Conversation, Message
from models.workspaces import Agent

CONTACT_FIELDS = ("id", "name", "email", "phone", "last_seen_at")


def _json(payload: Any) -> Response:
    return Response(json.dumps(payload, default=str, separators=(",", ":")), media_type="application/json")


async def bare_contacts(request: Request) -> Response:
    """The 50 most recent contacts of a workspace, straight from Tortoise."""
    workspace_id = int(request.query_params["workspace"])
    rows = (
        await Contact.filter(workspace_id=workspace_id)
        .order_by("-last_seen_at", "-id")
        .limit(50)
        .values(*CONTACT_FIELDS)
    )
    return _json({"contacts": rows})


async def bare_conversations(request: Request) -> Response:
    """25 conversations with their contact, assignee and last message: four queries."""
    workspace_id = int(request.query_params["workspace"])
    rows = await (
        Conversation.filter(workspace_id=workspace_id)
        .order_by("-vip", "-last_message_at", "-id")
        .limit(25)
        .values("id", "status", "contact_id", "assignee_id", "last_message_id")
    )
    contacts = {c["id"]: c for c in await Contact.filter(id__in=[r["contact_id"] for r in rows]).values("id", "name")}
    agents = {
        a["id"]: a
        for a in await Agent.filter(id__in=[r["assignee_id"] for r in rows if r["assignee_id"]]).values("id", "name")
    }
    messages = {
        m["id"]: m
        for m in await Message.filter(id__in=[r["last_message_id"] for r in rows if r["last_message_id"]]).values(
            "id", "body"
        )
    }
    for r in rows:
        r["contact"] = contacts.get(r.pop("contact_id"))
        r["assignee"] = agents.get(r.pop("assignee_id"))
        r["lastMessage"] = messages.get(r.pop("last_message_id"))
    return _json({"conversations": rows})


app.router.routes.extend([Route("/bare/contacts", bare_contacts), Route("/bare/conversations", bare_conversations)])
