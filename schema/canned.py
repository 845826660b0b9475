"""Canned responses: `cannedResponses`, create, update, delete, and
`renderCannedResponse`, which fills a response's placeholders for a conversation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from domain.canned import FIXED
from models import canned as m
from resolvers import canned as r
from resolvers.contacts import load_agent
from schema.common import Connection, UserError, mutate, provided, to_connection
from schema.workspaces import Agent

PLACEHOLDERS = ", ".join(f"{{{{{name}}}}}" for name in FIXED) + ", {{contact.attributes.<key>}}"


@strawberry.type
class CannedResponse(relay.Node):
    id: relay.NodeID[int]
    shortcut: str = strawberry.field(description="What an agent types to find it, e.g. `refund`.")
    body: str = strawberry.field(description=f"The text, with placeholders: {PLACEHOLDERS}.")
    shared: bool = strawberry.field(description="Every agent of the workspace uses it; else its owner only.")
    created_at: datetime
    updated_at: datetime
    _owner_id: strawberry.Private[int | None]

    @strawberry.field
    async def owner(self, info: Info[Context, None]) -> Agent | None:
        agent = await load_agent(info.context, self._owner_id)
        return Agent.from_model(agent) if agent else None

    @classmethod
    def from_model(cls, c: m.CannedResponse) -> CannedResponse:
        return cls(
            id=c.id,
            shortcut=c.shortcut,
            body=c.body,
            shared=c.shared,
            created_at=c.created_at,
            updated_at=c.updated_at,
            _owner_id=c.owner_id,
        )


@strawberry.input
class CreateCannedResponseInput:
    shortcut: str = strawberry.field(description="1 to 32 lower-case letters, digits, - or _.")
    body: str = strawberry.field(description=f"At most {r.MAX_BODY} characters; placeholders: {PLACEHOLDERS}.")
    shared: bool = strawberry.field(default=False, description="Owners and admins only.")


@strawberry.input
class UpdateCannedResponseInput:
    id: relay.GlobalID
    shortcut: str | None = strawberry.UNSET
    body: str | None = strawberry.UNSET
    shared: bool | None = strawberry.UNSET


@strawberry.input
class CannedResponseIdInput:
    id: relay.GlobalID


@strawberry.type
class CannedResponsePayload:
    canned_response: CannedResponse | None = None
    user_errors: list[UserError]


@strawberry.type
class DeleteCannedResponsePayload:
    deleted_id: relay.GlobalID | None = None
    user_errors: list[UserError]


@strawberry.type
class RenderedCannedResponse:
    text: str | None = strawberry.field(default=None, description="The body with its placeholders filled.")
    missing: list[str] = strawberry.field(
        default_factory=list, description="Placeholders with no value for this conversation (left empty in text)."
    )
    user_errors: list[UserError]


def _payload(c: m.CannedResponse) -> dict[str, Any]:
    return {"canned_response": CannedResponse.from_model(c)}


FIELDS = ("shortcut", "body", "shared")


@strawberry.type
class CannedQuery:
    @strawberry.field(
        description="Agents: the canned responses you may use (yours and the shared ones), by shortcut; "
        "`search` (at most 100 characters) matches the shortcut or the text."
    )
    async def canned_responses(
        self, info: Info[Context, None], search: str | None = None, first: int | None = None, after: str | None = None
    ) -> Connection[CannedResponse]:
        page = await r.list_canned(info.context, search=search, first=first, after=after)
        return to_connection(page, CannedResponse.from_model)

    @strawberry.field(
        description="A canned response's text for a conversation, its placeholders filled from the conversation's "
        "contact and from you. Insert it into sendMessage's body."
    )
    async def render_canned_response(
        self, info: Info[Context, None], id: relay.GlobalID, conversation_id: relay.GlobalID
    ) -> RenderedCannedResponse:
        work = r.render_canned(info.context, str(id), str(conversation_id))
        return await mutate(RenderedCannedResponse, work, lambda x: {"text": x.text, "missing": x.missing})


@strawberry.type
class CannedMutation:
    @strawberry.mutation(description="Agents save personal canned responses; owners and admins also shared ones.")
    async def create_canned_response(
        self, info: Info[Context, None], input: CreateCannedResponseInput
    ) -> CannedResponsePayload:
        values = provided(input, FIELDS)
        return await mutate(CannedResponsePayload, r.create_canned(info.context, values), _payload)

    @strawberry.mutation(description="Its owner edits a personal one; owners and admins edit shared ones.")
    async def update_canned_response(
        self, info: Info[Context, None], input: UpdateCannedResponseInput
    ) -> CannedResponsePayload:
        values = provided(input, FIELDS)
        return await mutate(CannedResponsePayload, r.update_canned(info.context, str(input.id), values), _payload)

    @strawberry.mutation(description="Its owner deletes a personal one; owners and admins delete shared ones.")
    async def delete_canned_response(
        self, info: Info[Context, None], input: CannedResponseIdInput
    ) -> DeleteCannedResponsePayload:
        return await mutate(
            DeleteCannedResponsePayload,
            r.delete_canned(info.context, str(input.id)),
            lambda _: {"deleted_id": input.id},
        )
