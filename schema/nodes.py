"""The root `node(id:)` and `nodes(ids:)` fields."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from core.errors import Code, PublicError
from resolvers.nodes import load_node
from schema.bulk import BulkAction
from schema.campaigns import Campaign
from schema.canned import CannedResponse
from schema.channels import Channel
from schema.contacts import AttributeDefinition, Contact, ContactEvent, ContactNote, DeletedContact
from schema.conversations import Conversation, ConversationNote, Message, Topic
from schema.job_records import Job
from schema.proactive import Bot, BotAnswer, ProactiveDelivery, ProactiveMessage
from schema.routing import RoutingRule
from schema.segments import Segment
from schema.webhooks import WebhookDelivery, WebhookEndpoint
from schema.workspaces import Agent, ApiKey, Team, Workspace

CONVERT: dict[str, Callable[[Any], relay.Node]] = {
    t.__name__: t.from_model
    for t in (
        Workspace,
        Agent,
        Team,
        Channel,
        ApiKey,
        Contact,
        ContactNote,
        ContactEvent,
        AttributeDefinition,
        DeletedContact,
        Segment,
        Conversation,
        Message,
        ConversationNote,
        Topic,
        Job,
        WebhookEndpoint,
        WebhookDelivery,
        Campaign,
        ProactiveMessage,
        Bot,
        BotAnswer,
        ProactiveDelivery,
        RoutingRule,
        CannedResponse,
        BulkAction,
    )
}
MAX_NODES = 100


async def _node(ctx: Context, gid: relay.GlobalID) -> relay.Node | None:
    found = await load_node(ctx, str(gid))
    if found is None:
        return None
    type_name, row = found
    return CONVERT[type_name](row)


@strawberry.type
class NodeQuery:
    @strawberry.field(description="Any object by its global id; null if it does not exist or is not yours.")
    async def node(self, info: Info[Context, None], id: relay.GlobalID) -> relay.Node | None:
        return await _node(info.context, id)

    @strawberry.field
    async def nodes(self, info: Info[Context, None], ids: list[relay.GlobalID]) -> list[relay.Node | None]:
        if len(ids) > MAX_NODES:
            raise PublicError(f"At most {MAX_NODES} ids.", Code.INVALID)
        return list(await asyncio.gather(*(_node(info.context, i) for i in ids)))
