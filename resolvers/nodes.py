"""`node(id:)`: any object by global id, within the caller's workspace and permissions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tortoise.models import Model

from core.context import Context
from core.permissions import Permission, Principal, PrincipalKind
from core.scoping import decode_global_id
from models.bulk import BulkAction
from models.campaigns import Campaign
from models.canned import CannedResponse
from models.channels import Channel
from models.contacts import AttributeDefinition, Contact, ContactEvent, ContactNote, DeletedContact
from models.conversations import Conversation, ConversationNote, Message, Topic
from models.job_records import Job
from models.proactive import Bot, BotAnswer, ProactiveDelivery, ProactiveMessage
from models.routing import RoutingRule
from models.webhooks import WebhookDelivery, WebhookEndpoint
from models.workspaces import Agent, ApiKey, Team, Workspace
from resolvers import canned
from resolvers.contacts import can_see_contact
from resolvers.conversations import can_see_conversation
from resolvers.job_records import can_see_job
from resolvers.proactive import can_see_delivery


def _agents(p: Principal, _: Any) -> bool:
    return p.kind is PrincipalKind.AGENT


def _anyone(_: Principal, __: Any) -> bool:
    return True


def _with(permission: Permission) -> Callable[[Principal, Any], bool]:
    return lambda p, _: p.can(permission)


# GraphQL type name -> (model, may this principal see this row?)
NODES: dict[str, tuple[type[Model], Callable[[Principal, Any], bool]]] = {
    "Workspace": (Workspace, _anyone),
    "Agent": (Agent, _agents),
    "Team": (Team, _agents),
    "Channel": (Channel, _agents),
    "ApiKey": (ApiKey, _with(Permission.WORKSPACE_MANAGE)),
    "Contact": (Contact, lambda p, row: can_see_contact(p, row.id)),
    "ContactNote": (ContactNote, _with(Permission.CONTACTS_READ)),
    "ContactEvent": (ContactEvent, lambda p, row: can_see_contact(p, row.contact_id)),
    "AttributeDefinition": (AttributeDefinition, lambda p, _: p.kind is not PrincipalKind.CONTACT),
    "DeletedContact": (DeletedContact, _with(Permission.AUDIT_READ)),
    "Conversation": (Conversation, can_see_conversation),
    "Message": (Message, _with(Permission.CONVERSATIONS_READ)),
    "ConversationNote": (ConversationNote, _with(Permission.CONVERSATIONS_READ)),
    "Topic": (Topic, _anyone),
    "Job": (Job, can_see_job),
    "WebhookEndpoint": (WebhookEndpoint, _with(Permission.WEBHOOKS_MANAGE)),
    "WebhookDelivery": (WebhookDelivery, _with(Permission.WEBHOOKS_MANAGE)),
    "Campaign": (Campaign, _with(Permission.CONVERSATIONS_READ)),
    "ProactiveMessage": (ProactiveMessage, _with(Permission.CONVERSATIONS_READ)),
    "Bot": (Bot, _with(Permission.CONVERSATIONS_READ)),
    "BotAnswer": (BotAnswer, _with(Permission.CONVERSATIONS_READ)),
    "ProactiveDelivery": (ProactiveDelivery, can_see_delivery),
    "RoutingRule": (RoutingRule, _with(Permission.WORKSPACE_MANAGE)),
    "CannedResponse": (CannedResponse, canned.can_see),
    "BulkAction": (BulkAction, _with(Permission.CONTACTS_WRITE)),
}


async def load_node(ctx: Context, gid: str) -> tuple[str, Model] | None:
    principal = ctx.require_principal()
    decoded = decode_global_id(gid)
    if decoded is None:
        return None
    type_name, pk = decoded
    if type_name == "Segment":
        from resolvers.segments import find_segment

        segment = await find_segment(ctx, gid) if principal.can(Permission.CONTACTS_READ) else None
        return (type_name, segment) if segment else None
    if type_name not in NODES:
        return None
    model, visible = NODES[type_name]
    row = await ctx.scope.get(model, pk)
    if row is None or not visible(principal, row):
        return None
    if isinstance(row, ProactiveDelivery):
        await row.fetch_related("message")
    return type_name, row
