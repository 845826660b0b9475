"""Builds the Schema from each area's root types, with the limits and caches every
request goes through (the runtime under it: runtime/prepared.py's ParleySchema)."""

from __future__ import annotations

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from core.config import settings
from core.errors import MaskUnexpectedErrors
from runtime.prepared import ParleySchema
from schema.attachments import UPLOAD, AttachmentMutation, AttachmentQuery, Upload
from schema.attributes import AttributeMutation
from schema.auth import AuthMutation, AuthQuery
from schema.bulk import BulkMutation, BulkQuery
from schema.campaigns import CampaignMutation, CampaignQuery
from schema.canned import CannedMutation, CannedQuery
from schema.channels import ChannelMutation, ChannelQuery
from schema.contacts import ContactMutation, ContactQuery, ContactSubscription
from schema.conversations import ConversationMutation, ConversationQuery, ConversationSubscription
from schema.exports import ExportMutation, ExportQuery
from schema.inbox import InboxMutation, InboxSubscription
from schema.job_records import JobMutation, JobQuery, JobSubscription
from schema.nodes import NodeQuery
from schema.proactive import ProactiveMutation, ProactiveQuery, ProactiveSubscription
from schema.push import PushMutation, PushQuery
from schema.reports import ReportQuery
from schema.routing import RoutingMutation, RoutingQuery
from schema.search import SearchQuery
from schema.segments import SegmentMutation, SegmentQuery, SegmentSubscription
from schema.sync import SyncMutation, SyncQuery
from schema.webhooks import WebhookMutation, WebhookQuery
from schema.workspaces import WorkspaceMutation, WorkspaceQuery


@strawberry.type
class Query(
    NodeQuery,
    AuthQuery,
    WorkspaceQuery,
    ChannelQuery,
    ContactQuery,
    SegmentQuery,
    ConversationQuery,
    JobQuery,
    ExportQuery,
    SyncQuery,
    WebhookQuery,
    CampaignQuery,
    ProactiveQuery,
    PushQuery,
    RoutingQuery,
    ReportQuery,
    SearchQuery,
    CannedQuery,
    BulkQuery,
    AttachmentQuery,
):
    pass


@strawberry.type
class Mutation(
    AuthMutation,
    BulkMutation,
    ChannelMutation,
    WorkspaceMutation,
    ContactMutation,
    AttributeMutation,
    SegmentMutation,
    ConversationMutation,
    JobMutation,
    ExportMutation,
    SyncMutation,
    WebhookMutation,
    CampaignMutation,
    ProactiveMutation,
    PushMutation,
    RoutingMutation,
    CannedMutation,
    AttachmentMutation,
    InboxMutation,
):
    pass


@strawberry.type
class Subscription(
    ContactSubscription,
    SegmentSubscription,
    ConversationSubscription,
    JobSubscription,
    ProactiveSubscription,
    InboxSubscription,
):
    pass


def build_schema(*, introspection: bool | None = None) -> ParleySchema:
    allow_introspection = settings.is_dev if introspection is None else introspection
    # The limiters' rule classes are built once: ValidationCache keys on the rule tuple,
    # and a limiter made per request brings a new class each time (a miss every time).
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    if not allow_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list = [
        MaskUnexpectedErrors,
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=1000),
        lambda: ValidationCache(maxsize=1000),
    ]
    return ParleySchema(
        config=StrawberryConfig(scalar_map={Upload: UPLOAD}),
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        validation_rules=rules,
        max_tokens=settings.max_tokens,
    )


schema = build_schema()
