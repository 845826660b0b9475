"""What a GraphQL operation costs, counted from its document and variables before it runs.

    cost = operation_cost(schema, operation, fragments, variables)   # an int
    if cost > settings.max_query_cost: refuse (code QUERY_TOO_COSTLY)

How it counts:

- every field costs 1 (`__typename` nothing), a field in `WEIGHTS` its weight;
- a field with a page size (`first`, else `last`: a literal or a variable, else the
  field's default page size, at most MAX_PAGE_SIZE) counts the list fields of its
  selection (a connection's `edges`, a preview's `contacts`) that many times, its other
  fields (`pageInfo`, `totalCount`) once: nested connections multiply;
- fragments and inline fragments count as if written out, each alias counts, and every
  member of an abstract type's inline fragments counts (an upper bound).

A document's operations are compiled once into a *shape* (`_shape`): a number when no
page size comes from a variable, else a small expression over those variables, applied
to each request's variables. Compiling walks the document once, each fragment once
(memoised), as deep as the depth limit lets a document nest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef

from core.config import settings

# What a field weighs beyond the 1 every field costs: fields that run an unbounded or
# heavy query of their own, once per object they are asked on ("Type.field"; `*` in the
# type name is any connection type).
WEIGHTS: dict[str, int] = {
    # A live COUNT of the segment's compiled rules: joins over events and conversations.
    "Segment.count": 50,
    # Compiles the rules, counts every match and reads the first of them.
    "Query.previewSegment": 50,
    # Six aggregate statements (two with window functions) over up to 366 days of conversations.
    "Query.inboxReport": 100,
    # One COUNT over every row the connection's filters match, across all pages.
    "*Connection.totalCount": 10,
    # COUNT(DISTINCT contact_id) over the workspace's conversations (and again per change).
    "Query.unreadCount": 10,
    "Subscription.unreadCount": 10,
    # Counts and a GROUP BY over every recipient of the campaign.
    "Campaign.stats": 10,
    "Campaign.skipReasons": 10,
}
# Segment.memberCount is a stored number (as of the last refresh): an ordinary field.

# Page sizes of connections asked without `first`/`last` (the resolvers' `default_size`;
# paginate's own default, 20, for the rest).
DEFAULT_PAGE_SIZES: dict[str, int] = {
    "Query.segments": 50,
    "Query.conversations": 25,
    "Query.myConversations": 25,
    "Conversation.messages": 50,
    "Query.topics": 100,
    "Query.attributeDefinitions": 100,
    "Query.campaigns": 25,
    "Query.proactiveMessages": 25,
    "ProactiveMessage.deliveries": 25,
}
DEFAULT_PAGE_SIZE = 20
PAGE_ARGUMENTS = ("first", "last")


def weight(type_name: str, field_name: str) -> int:
    """The cost of one field on one object, its selection aside."""
    if field_name == "__typename":
        return 0
    found = WEIGHTS.get(f"{type_name}.{field_name}")
    if found is None and type_name.endswith("Connection"):
        found = WEIGHTS.get(f"*Connection.{field_name}")
    return 1 if found is None else 1 + found


@dataclass(frozen=True, slots=True)
class _Var:
    """A page size given by a variable: its value, else the field's default."""

    name: str
    default: int

    def value(self, variables: Mapping[str, Any]) -> int:
        given = variables.get(self.name)
        return _clamp(given) if type(given) is int else self.default


@dataclass(frozen=True, slots=True)
class _Sum:
    constant: int
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class _Scaled:
    size: _Var | int
    expr: Expr


Expr = int | _Sum | _Scaled


def _add(*exprs: Expr) -> Expr:
    constant = sum(e for e in exprs if type(e) is int)
    parts = tuple(e for e in exprs if type(e) is not int)
    return _Sum(constant, parts) if parts else constant


def _scale(size: _Var | int, expr: Expr) -> Expr:
    if type(size) is int and type(expr) is int:
        return size * expr
    return _Scaled(size, expr)


def _evaluate(expr: Expr, variables: Mapping[str, Any], memo: dict[int, int]) -> int:
    if type(expr) is int:
        return expr
    found = memo.get(id(expr))
    if found is not None:
        return found
    if isinstance(expr, _Sum):
        value = expr.constant + sum(_evaluate(p, variables, memo) for p in expr.parts)
    else:
        assert isinstance(expr, _Scaled)
        size = expr.size if isinstance(expr.size, int) else expr.size.value(variables)
        value = size * _evaluate(expr.expr, variables, memo)
    memo[id(expr)] = value
    return value


def _clamp(size: int) -> int:
    return max(0, min(size, settings.max_page_size))


class _Compiler:
    """One document's operations into shapes; each fragment compiled once."""

    def __init__(self, schema: GraphQLSchema, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.schema = schema
        self.fragments = fragments
        self.compiled: dict[str, tuple[Expr, Expr]] = {}

    def operation(self, operation: OperationDefinitionNode) -> Expr:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return 0
        lists, rest = self.selections(operation.selection_set, root)
        return _add(lists, rest)

    def selections(self, selection_set: SelectionSetNode, parent: Any) -> tuple[Expr, Expr]:
        """(the list fields' cost, the other fields' cost) of a selection on `parent`: a
        page size multiplies the first, not the second."""
        lists: list[Expr] = []
        rest: list[Expr] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                cost, is_list = self.field(selection, parent)
                (lists if is_list else rest).append(cost)
            elif isinstance(selection, InlineFragmentNode):
                on = (
                    parent
                    if selection.type_condition is None
                    else self.schema.get_type(selection.type_condition.name.value)
                )
                inner = self.selections(selection.selection_set, on)
                lists.append(inner[0])
                rest.append(inner[1])
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value)
                lists.append(inner[0])
                rest.append(inner[1])
        return _add(*lists), _add(*rest)

    def fragment(self, name: str) -> tuple[Expr, Expr]:
        found = self.compiled.get(name)
        if found is None:
            definition = self.fragments[name]
            found = self.compiled[name] = self.selections(
                definition.selection_set, self.schema.get_type(definition.type_condition.name.value)
            )
        return found

    def field(self, node: FieldNode, parent: Any) -> tuple[Expr, bool]:
        name = node.name.value
        if name == "__schema":
            definition = SchemaMetaFieldDef
        elif name == "__type":
            definition = TypeMetaFieldDef
        elif name == "__typename" or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0, False
        else:
            definition = parent.fields.get(name)
            if definition is None:
                return 0, False
        field_type = definition.type
        is_list = isinstance(field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type, GraphQLList)
        cost: Expr = weight(parent.name, name)
        if node.selection_set is None:
            return cost, is_list
        lists, rest = self.selections(node.selection_set, get_named_type(field_type))
        size = self.page_size(node, definition, f"{parent.name}.{name}")
        return _add(cost, lists if size is None else _scale(size, lists), rest), is_list

    def page_size(self, node: FieldNode, definition: Any, key: str) -> _Var | int | None:
        """The field's page size, or None when it takes none."""
        if not any(a in definition.args for a in PAGE_ARGUMENTS):
            return None
        default = DEFAULT_PAGE_SIZES.get(key)
        if default is None:
            declared = next((definition.args[a].default_value for a in PAGE_ARGUMENTS if a in definition.args), None)
            default = declared if type(declared) is int else DEFAULT_PAGE_SIZE
        default = _clamp(default)
        given = {a.name.value: a.value for a in node.arguments or ()}
        for argument in PAGE_ARGUMENTS:
            value = given.get(argument)
            if isinstance(value, IntValueNode):
                return _clamp(int(value.value))
            if isinstance(value, VariableNode):
                return _Var(value.name.value, default)
        return default


# Shapes of the operations seen lately, by the operation node (kept beside its shape, so
# its id is not reused while the entry lives): Strawberry's parser cache and the plain
# path's prepared documents hand the same nodes back for the same text.
SHAPES_MAX = 2_000
_shapes: dict[int, tuple[OperationDefinitionNode, Expr]] = {}


class TooComplex(Exception):
    """A document nested too deeply to be costed (the depth limit stops it sooner)."""


def operation_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    """The operation's cost for these (coerced) variables."""
    found = _shapes.get(id(operation))
    if found is not None and found[0] is operation:
        shape = found[1]
    else:
        try:
            shape = _Compiler(schema, fragments).operation(operation)
        except RecursionError:
            raise TooComplex from None
        while len(_shapes) >= SHAPES_MAX:
            del _shapes[next(iter(_shapes))]
        _shapes[id(operation)] = (operation, shape)
    if type(shape) is int:
        return shape
    try:
        return _evaluate(shape, variables, {})
    except RecursionError:
        raise TooComplex from None
