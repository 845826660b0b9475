"""The schema the runtime runs: Strawberry's, with Parley's executor, guards, library
work-arounds and prepared documents.

`ParleySchema` is what schema/__init__.py builds from the areas' root types. Building it
applies runtime/patches.py, makes runtime/execution.py's `Executor` the execution context
and installs the types' guards (runtime/guards.py). It keeps prepared documents for the
plain HTTP path (runtime/http.py): a query text parsed and validated once, under the same
limits and rules as Strawberry's own path (`prepare`), kept in a bounded cache.

Library internals it relies on: strawberry-graphql 0.341.2's `strawberry.Schema`
constructor (`execution_context_class`) and its graphql-core schema `_schema`,
`strawberry.schema.schema.validate_document` (Strawberry's validation, as its own path
calls it); graphql-core 3.3.2's `parse(max_tokens=...)` and `specified_rules`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, OperationType, parse, specified_rules
from graphql.validation import ASTValidationRule
from strawberry.schema.schema import validate_document

from runtime import guards, patches
from runtime.execution import Executor


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
    """Strawberry's schema, executed by `Executor`, its types' guards installed, plus
    prepared documents for the HTTP view's plain path (runtime/http.py): a query text
    parsed and validated once, under the same limits and rules as Strawberry's own path
    (`prepare`)."""

    # Kept: 1,000 texts and 4 million characters at most, the least recently used out
    # first; a longer text than PREPARED_TEXT_MAX is prepared each time. (A string literal
    # is one token: the token limit alone does not bound a text.)
    PREPARED_MAX = 1_000
    PREPARED_CHARS_MAX = 4_000_000
    PREPARED_TEXT_MAX = 400_000

    def __init__(
        self, *args: Any, validation_rules: Sequence[type[ASTValidationRule]], max_tokens: int, **kwargs: Any
    ) -> None:
        patches.apply()
        super().__init__(*args, execution_context_class=Executor, **kwargs)
        guards.install(self._schema)
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
        operations = {
            d.name.value if d.name else None: d.operation
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        }
        return Prepared(document, operations)
