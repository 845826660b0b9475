"""Builds the Schema from each area's root types, with the limits and caches every
request goes through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, OperationType, parse, specified_rules
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.schema.schema import validate_document
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

from core.config import settings
from core import graphql_patches, guards
from core.execution import Executor
from core.errors import MaskUnexpectedErrors
from schema.auth import AuthMutation, AuthQuery
from schema.campaigns import CampaignMutation, CampaignQuery
from schema.contacts import ContactMutation, ContactQuery, ContactSubscription
from schema.conversations import ConversationMutation, ConversationQuery, ConversationSubscription
from schema.exports import ExportMutation, ExportQuery
from schema.jobs import JobMutation, JobQuery, JobSubscription
from schema.nodes import NodeQuery
from schema.proactive import ProactiveMutation, ProactiveQuery, ProactiveSubscription
from schema.segments import SegmentMutation, SegmentQuery, SegmentSubscription
from schema.sync import SyncMutation, SyncQuery
from schema.webhooks import WebhookMutation, WebhookQuery
from schema.workspaces import WorkspaceMutation, WorkspaceQuery


@strawberry.type
class Query(NodeQuery, AuthQuery, WorkspaceQuery, ContactQuery, SegmentQuery, ConversationQuery, JobQuery, ExportQuery,
            SyncQuery, WebhookQuery, CampaignQuery, ProactiveQuery):
    pass


@strawberry.type
class Mutation(AuthMutation, WorkspaceMutation, ContactMutation, SegmentMutation, ConversationMutation, JobMutation, ExportMutation,
               SyncMutation, WebhookMutation, CampaignMutation, ProactiveMutation):
    pass


@strawberry.type
class Subscription(ContactSubscription, SegmentSubscription, ConversationSubscription, JobSubscription, ProactiveSubscription):
    pass


@dataclass(frozen=True, slots=True)
class Prepared:
    """A query text parsed and validated without errors: its document and what each of
    its operations is (by name; None for the one anonymous operation)."""

    document: DocumentNode
    operations: dict[str | None, OperationType]

    def operation(self, name: str | None) -> OperationType | None:
        """The operation a request with this operationName runs; None when it names none
        (graphql-core's path then says why)."""
        if name is None:
            return next(iter(self.operations.values())) if len(self.operations) == 1 else None
        return self.operations.get(name)


class ParleySchema(strawberry.Schema):
    """Strawberry's schema, plus prepared documents for the HTTP view's plain path
    (asgi.py): a query text parsed and validated once, under the same limits and rules
    as Strawberry's own path (`prepare`)."""

    # Kept: 1,000 texts and 4 million characters at most, the least recently used out
    # first; a longer text than PREPARED_TEXT_MAX is prepared each time. (A string literal
    # is one token: the token limit alone does not bound a text.)
    PREPARED_MAX = 1_000
    PREPARED_CHARS_MAX = 4_000_000
    PREPARED_TEXT_MAX = 400_000

    def __init__(self, *args: Any, validation_rules: Sequence[type[ASTValidationRule]], max_tokens: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.document_rules = (*specified_rules, *validation_rules)
        self.max_tokens = max_tokens
        self._prepared: dict[str, Prepared] = {}  # query text -> its Prepared, least recent first
        self._prepared_chars = 0

    def prepare(self, query: str) -> Prepared | None:
        """The query text's Prepared, or None when it has errors (not kept: a client's
        malformed texts would crowd out the valid ones; Strawberry's path reports them)."""
        found = self._prepared.pop(query, None)
        if found is None:
            found = self._prepare(query)
            if found is None or len(query) > self.PREPARED_TEXT_MAX:
                return found
            self._prepared_chars += len(query)
            while len(self._prepared) >= self.PREPARED_MAX or self._prepared_chars > self.PREPARED_CHARS_MAX:
                self._prepared_chars -= len(oldest := next(iter(self._prepared)))
                del self._prepared[oldest]
        self._prepared[query] = found  # the most recent last
        return found

    def _prepare(self, query: str) -> Prepared | None:
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError:
            return None
        if validate_document(self._schema, document, self.document_rules):
            return None
        operations = {d.name.value if d.name else None: d.operation for d in document.definitions if isinstance(d, OperationDefinitionNode)}
        return Prepared(document, operations)


def build_schema(*, introspection: bool | None = None) -> ParleySchema:
    graphql_patches.apply()
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
    built = ParleySchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions, execution_context_class=Executor,
        validation_rules=rules, max_tokens=settings.max_tokens,
    )
    guards.install(built._schema)
    return built


schema = build_schema()
