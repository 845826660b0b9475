"""The GraphQL executor: graphql-core's, with a short path for plain data.

Most of a list page is plain data: a connection's `edges`, each edge's `cursor` and `node`,
and the node's attributes (`name`, `email`, `lastSeenAt`) and relay `id`. graphql-core runs
every one of those fields through its whole machinery — a response path, a resolve-info
object, argument coercion, awaitable checks, value completion — about 5 µs a field, which
cost a 50-contact page more than its database query (bench/readpath.py).

Here a field whose resolver only reads an attribute (Strawberry marks those `_is_default`)
or is relay's default `id`, and that takes no arguments, is read and completed in place,
down through objects and lists as long as everything below is plain too. Anything else —
a resolver of our own, arguments, abstract types, `@defer` — and every irregular value (a
null in a non-null field, a value the scalar refuses, a wrong object type) gives the field
back to graphql-core's own path, which then produces exactly the data and errors it always
would: plain reads have no side effects, so reading again is safe.

A resolver of our own takes the short path too when it is marked `@plain`: it reads its
object and `info.context` only, has no arguments, and answers at once when it can (a
related row already loaded for the page) or with an awaitable when it cannot — which then
goes back to graphql-core's path, which calls it again and awaits it.

Every operation is costed here too (core/cost.py, MAX_QUERY_COST) before anything runs,
and a subscription's events go through runtime/fanout.py's `execute_shared`.

Library internals it relies on — the most of any module here; an upgrade looks here first:

- graphql-core 3.3.2: the execution context's `build`, `execute_operation(serially)`,
  `execute_fields(parent_type, source_value, path, grouped_field_set, position_context)`,
  `collect_subfields` (returning grouped fields, new defer usages and more),
  `build_per_event_executor`, its attributes `collected_errors`, `_relevant_sub_fields`,
  `middleware_manager`, `async_helpers` (`GraphQLResolveInfoHelpers` with `gather_async_work`
  and `track_async_work`), `variable_values.coerced`, `fragment_definitions`,
  `is_awaitable`; `graphql.execution.collect_fields.FieldDetailsList` and
  `GroupedFieldSet` (a field's `node`); `graphql.execution.executor.CollectedErrors`;
  `GraphQLObjectType.is_type_of` as graphql-core calls it (value, info).
- strawberry-graphql 0.341.2: `StrawberryGraphQLCoreExecutionContext`; the
  `strawberry-definition` extension of a GraphQL field and its `python_name`,
  `default_resolver`, `base_resolver` (`wrapped_func`, `info_parameter`,
  `self_parameter`), `extensions` and `permission_classes`; the `_is_default` mark on the
  resolvers of plain fields; `relay.Node.__dict__["_id"]`, `["resolve_id"]` and
  `["resolve_typename"]` (relay's default id, recognised and written in place);
  `strawberry.schema.types.base_scalars.isoformat` (DateTime's serializer).
"""

from __future__ import annotations

import inspect
import keyword
import weakref
from base64 import b64encode
from binascii import b2a_base64
from collections.abc import Callable, Coroutine
from datetime import datetime
from operator import attrgetter
from typing import Any, TypeVar

from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLID,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLString,
    OperationType,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import CollectedErrors
from graphql.pyutils import Path, Undefined
from strawberry import relay
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.types.base_scalars import isoformat as _ISOFORMAT

from core.config import settings
from core.cost import TooComplex, operation_cost
from core.errors import Code, PublicError, QueryTooCostly
from runtime.fanout import execute_shared, subscription_executor


class _Irregular(Exception):
    """Not plain here: graphql-core's path takes the field. Raised as a new instance each
    time: raising one shared instance again chains each raise's frames onto its
    traceback, which then kept every request's whole execution alive (a conversations
    page leaked ~270 KB)."""


F = TypeVar("F", bound=Callable[..., Any])


def plain(resolver: F) -> F:
    """Marks a resolver `(self, info)` that reads only its object and `info.context`, has
    no side effects, and returns its value at once when it has it (else an awaitable):
    the executor then calls it in place, like an attribute read. Put it under
    `@strawberry.field`. A resolver that reads anything else of `info` falls back to
    graphql-core's path (the short path's info has the context only)."""
    resolver._parley_plain = True  # type: ignore[attr-defined]
    return resolver


# How to complete a value of one GraphQL type: (executor, field details, value) -> result.
_Completer = Callable[["Executor", FieldDetailsList, Any], Any]
# How to read and complete a plain field, or None when it is not plain: (read, complete,
# whether read takes the execution's info as well as the object, the attribute read when
# the read is a plain attribute).
_Plan = tuple[Callable[..., Any], _Completer, bool, str | None] | None
_plans: dict[tuple[GraphQLObjectType, str], _Plan] = {}
_completers: dict[GraphQLOutputType, _Completer | None] = {}
_NODE_ID = relay.Node.__dict__["_id"].__func__
_NODE_RESOLVE_ID = relay.Node.__dict__["resolve_id"].__func__
_NODE_RESOLVE_TYPENAME = relay.Node.__dict__["resolve_typename"].__func__
_id_attrs: dict[type, str | None] = {}


def _plan(parent_type: GraphQLObjectType, field_name: str) -> _Plan:
    key = (parent_type, field_name)
    try:
        return _plans[key]
    except KeyError:
        pass
    plan: _Plan = None
    field = parent_type.fields.get(field_name)
    if field is not None and not field.args:
        complete = _completer(field.type)
        if complete is None:
            pass
        elif getattr(field.resolve, "_is_default", False):
            # Strawberry's plain-field resolver reads the attribute and ignores the rest:
            # with the default `getattr`, the same read is one attrgetter call.
            definition = field.extensions.get("strawberry-definition")
            if getattr(definition, "default_resolver", None) is getattr and isinstance(definition.python_name, str):
                plan = (attrgetter(definition.python_name), complete, False, definition.python_name)
            else:
                plan = (field.resolve, complete, False, None)
        elif _is_default_node_id(definition := field.extensions.get("strawberry-definition")):
            plan = (_node_id_reader(parent_type.name), complete, False, None)
        elif (read := _plain_reader(definition)) is not None:
            plan = (read, complete, True, None)
    _plans[key] = plan
    return plan


def _plain_reader(definition: Any) -> Callable[[Any, Any], Any] | None:
    """A `@plain` resolver `(self, info)`, called in place; None for any other field, and
    for one with extensions or permission classes, which graphql-core's path applies."""
    resolver = getattr(definition, "base_resolver", None)
    func = getattr(resolver, "wrapped_func", None)
    if not getattr(func, "_parley_plain", False) or definition.extensions or definition.permission_classes:
        return None
    parameters = list(inspect.signature(func).parameters)
    info = getattr(resolver, "info_parameter", None)
    own = getattr(resolver, "self_parameter", None)
    if info is None or own is None or parameters != [own.name, info.name]:
        return None
    name = info.name

    def read(source: Any, info: _ContextOnly) -> Any:
        value = func(source, **{name: info})
        if isinstance(value, Coroutine):
            value.close()  # not at hand: graphql-core's path calls it again and awaits it
            raise _Irregular
        return value

    return read


class _ContextOnly:
    """What a `@plain` resolver gets for its info on the short path: the context, nothing
    else (reading anything more raises, and graphql-core's path answers instead)."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


def _completer(return_type: GraphQLOutputType) -> _Completer | None:
    """Built once per type: the isinstance tests are paid here, not per value."""
    if return_type in _completers:
        return _completers[return_type]
    complete: _Completer | None = None
    if isinstance(return_type, GraphQLNonNull):
        inner = _completer(return_type.of_type)
        if inner is not None:

            def complete(ex: Executor, fields: FieldDetailsList, value: Any, inner: _Completer = inner) -> Any:
                if value is None:
                    raise _Irregular
                return inner(ex, fields, value)

    elif return_type is GraphQLString or return_type is GraphQLID:
        coerce_text = return_type.coerce_output_value

        def complete(ex: Executor, fields: FieldDetailsList, value: Any) -> Any:
            if value is None or type(value) is str:
                return value
            return _coerced(coerce_text, value)

    elif is_leaf_type(return_type):
        coerce = return_type.coerce_output_value  # type: ignore[union-attr]

        def complete(ex: Executor, fields: FieldDetailsList, value: Any) -> Any:
            return None if value is None else _coerced(coerce, value)

    elif isinstance(return_type, GraphQLList):
        item = _completer(return_type.of_type)
        if item is not None:
            item_type = return_type.of_type
            non_null_items = isinstance(item_type, GraphQLNonNull)
            if non_null_items:
                item_type = item_type.of_type
            objects = item_type if isinstance(item_type, GraphQLObjectType) else None

            def complete(ex: Executor, fields: FieldDetailsList, value: Any, item: _Completer = item) -> Any:
                if value is None:
                    return None
                if not isinstance(value, list | tuple):
                    raise _Irregular
                if objects is not None:
                    # Irregular here, before any row is read, when the rows are not plain.
                    row = ex._row_plan(objects, fields)
                    return [row(v) for v in value] if non_null_items else [None if v is None else row(v) for v in value]
                return [item(ex, fields, v) for v in value]

    elif isinstance(return_type, GraphQLObjectType):
        object_type = return_type

        def complete(ex: Executor, fields: FieldDetailsList, value: Any) -> Any:
            return None if value is None else ex._complete_object(object_type, fields, value)

    _completers[return_type] = complete
    return complete


def _coerced(coerce: Callable[[Any], Any], value: Any) -> Any:
    try:
        coerced = coerce(value)
    except Exception:
        raise _Irregular from None
    if coerced is None or coerced is Undefined:
        raise _Irregular
    return coerced


def _is_default_node_id(definition: Any) -> bool:
    resolver = getattr(definition, "base_resolver", None)
    return getattr(getattr(resolver, "wrapped_func", None), "__func__", None) is _NODE_ID


def _node_id_reader(type_name: str) -> Callable[[Any], str]:
    """relay's `Node._id` for nodes that keep Strawberry's resolve_id and resolve_typename,
    already as the ID it is sent as (`str(GlobalID)`: base64 of "Type:id")."""
    prefix = f"{type_name}:"

    def read(source: Any) -> str:
        cls = type(source)
        try:
            attr = _id_attrs[cls]
        except KeyError:
            default = (
                isinstance(source, relay.Node)
                and cls.resolve_id.__func__ is _NODE_RESOLVE_ID  # type: ignore[attr-defined]
                and cls.resolve_typename.__func__ is _NODE_RESOLVE_TYPENAME  # type: ignore[attr-defined]
            )
            attr = _id_attrs[cls] = cls.resolve_id_attr() if default else None
        if attr is None:
            raise _Irregular
        node_id = getattr(source, attr)
        if node_id is None:
            raise _Irregular
        return b64encode(f"{prefix}{node_id}".encode()).decode()

    return read


class Executor(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # graphql-core's helpers are the executor's own bound methods: a reference cycle,
        # which left every request's executor and all it holds to the garbage collector
        # (a pass over 20,000 young objects every ~240 list pages). Through a weak
        # reference they call the same methods, and the executor goes when its request
        # does.
        me = weakref.ref(self)
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=lambda *args, **kwargs: me().gather_async_work(*args, **kwargs),  # type: ignore[union-attr]
            track=lambda *args, **kwargs: me().track_async_work(*args, **kwargs),  # type: ignore[union-attr]
        )

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        executor = super().build(*args, **kwargs)
        if not isinstance(executor, Executor):
            return executor  # errors: an unknown operation, variables that do not coerce
        # Every operation, over HTTP (both paths) and WebSocket, is costed here: after
        # validation and variable coercion, before anything runs.
        refused = executor._over_budget()
        if refused is not None:
            return [refused]
        if executor.operation.operation is OperationType.SUBSCRIPTION:
            # For runtime/fanout.py's direct delivery: the resolver runs in this same task.
            subscription_executor.set(executor)
        return executor

    def _over_budget(self) -> GraphQLError | None:
        """The refusal of an operation over MAX_QUERY_COST, else None; the cost goes to
        the context's `cost_report` when the client asked for it (runtime/http.py)."""
        budget = settings.max_query_cost
        try:
            cost = operation_cost(self.schema, self.operation, self.fragment_definitions, self.variable_values.coerced)
        except TooComplex:
            return PublicError("This query is nested too deeply to be costed.", Code.QUERY_TOO_COSTLY)
        if cost > budget:
            return QueryTooCostly(cost, budget)
        report = getattr(self.context_value, "cost_report", None)
        if report is not None:
            report["requested"], report["budget"] = cost, budget
        return None

    def build_per_event_executor(self, payload: Any) -> Any:
        # graphql-core's copy.copy() of the executor, without copy's generic protocol (8 %
        # of a fan-out delivery's CPU); caches of the subscription's executor are not
        # shared with the event's (runtime/patches.py).
        executor = object.__new__(type(self))
        executor.__dict__.update(self.__dict__)
        executor.root_value = payload
        executor.collected_errors = CollectedErrors()
        executor._relevant_sub_fields = {}
        executor._row_plans = {}
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        # A subscription event's selection runs once per audience (runtime/fanout.py).
        return execute_shared(self, serially, super().execute_operation)

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        if self.middleware_manager is not None and self.middleware_manager.middlewares:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        slow: dict[str, FieldDetailsList] = {}
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            plan = None if node.arguments else _plan(parent_type, node.name.value)
            if plan is not None:
                try:
                    value = plan[0](source_value, self._plain_info()) if plan[2] else plan[0](source_value)
                    results[response_name] = plan[1](self, field_details_list, value)
                    continue
                except _Irregular:
                    pass
                except Exception:  # noqa: S110 — the read failed: graphql-core's path reports it
                    pass
            slow[response_name] = field_details_list
            results[response_name] = None  # holds the field's place in the response
        if not slow:
            return results
        # The rest in graphql-core's own way (errors, null propagation, awaitables).
        rest = super().execute_fields(parent_type, source_value, path, slow, position_context)
        if self.is_awaitable(rest):

            async def merged() -> dict[str, Any]:
                return _fill(results, slow, await rest)

            return merged()
        return _fill(results, slow, rest)

    def _plain_info(self) -> _ContextOnly:
        try:
            return self.__dict__["_context_only"]  # type: ignore[no-any-return]
        except KeyError:
            info = self.__dict__["_context_only"] = _ContextOnly(self.context_value)
            return info

    def _row_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Callable[[Any], dict[str, Any]]:
        """The function that reads and completes a selection's plain fields on one object
        (a row of a list); irregular when any of them is not plain. Kept per execution, by
        the type and the field details (the same list for every row of a list; kept beside
        its function, so its id is not reused while the function is)."""
        plans: dict[tuple[GraphQLObjectType, int], Any] = self.__dict__.setdefault("_row_plans", {})
        key = (object_type, id(field_details_list))
        found = plans.get(key)
        if found is not None and found[0] is field_details_list:
            row = found[1]
        else:
            grouped_field_set, new_defer_usages, _ = self.collect_subfields(object_type, field_details_list)
            factory = None if new_defer_usages else _row_factory(object_type, grouped_field_set)
            # The row function keeps the executor weakly: it is kept in the executor's own
            # plans, and a strong reference would make a cycle (see __init__).
            row = (
                None
                if factory is None
                else factory(weakref.proxy(self), self._plain_info(), *grouped_field_set.values())
            )
            plans[key] = (field_details_list, row)
        if row is None:
            raise _Irregular
        return row  # type: ignore[no-any-return]

    def _complete_object(self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList, value: Any) -> Any:
        return self._row_plan(object_type, field_details_list)(value)


# A row function's factory per object type and selection (response and field names):
# generated once, called once per execution with what is the execution's own. Bounded:
# aliases let a client make any number of selections; the oldest goes first.
_RowFactory = Callable[..., Callable[[Any], dict[str, Any]]]
_row_factories: dict[tuple[GraphQLObjectType, tuple[tuple[str, str, bool], ...]], _RowFactory | None] = {}
ROW_FACTORIES_MAX = 2_000


def _row_factory(object_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> _RowFactory | None:
    shape = tuple(
        (name, sub[0].node.name.value, bool(sub[0].node.arguments)) for name, sub in grouped_field_set.items()
    )
    key = (object_type, shape)
    try:
        return _row_factories[key]
    except KeyError:
        pass
    while len(_row_factories) >= ROW_FACTORIES_MAX:
        del _row_factories[next(iter(_row_factories))]
    factory = _row_factories[key] = _generate_row_factory(object_type, shape)
    return factory


def _generate_row_factory(
    object_type: GraphQLObjectType, shape: tuple[tuple[str, str, bool], ...]
) -> _RowFactory | None:
    """Python source for reading and completing one object's plain fields, compiled: a
    row of a list page costs one call, not a call per field for its read and another
    for its completion (the row is checked as a whole; any irregular value gives the
    object back to graphql-core's path). None when a field is not plain."""
    names: dict[str, Any] = {
        "Irregular": _Irregular,
        "coerced": _coerced,
        "is_type_of": object_type.is_type_of,
        "b2a": b2a_base64,
        "datetime": datetime,
    }
    body = ["    def row(value):", "        try:"]
    head: list[str] = []  # the factory's own lines, before `row`
    if object_type.is_type_of is not None:
        # Strawberry's is_type_of is an isinstance check that ignores its info; a guarded
        # type's (runtime/guards.py) reads the context, which the short path's info holds.
        body.append("            if is_type_of(value, info) is not True: raise Irregular")
    for i, (_, field_name, has_arguments) in enumerate(shape):
        plan = None if has_arguments else _plan(object_type, field_name)
        if plan is None:
            return None
        read, complete, with_info, attr = plan
        v = f"v{i}"
        names[f"r{i}"] = read
        if attr is not None and attr.isidentifier() and not keyword.iskeyword(attr):
            body.append(f"            {v} = value.{attr}")
        elif (id_attr := _default_node_id_attr(object_type, field_name)) is not None:
            # relay's id, as `_node_id_reader` reads it, for the type's own class.
            names[f"t{i}"], names[f"p{i}"], _ = id_attr
            body += [
                f"            if type(value) is t{i}:",
                f"                {v} = value.{id_attr[2]}",
                f"                if {v} is None: raise Irregular",
                f'                {v} = b2a(f"{{p{i}}}{{{v}}}".encode(), newline=False).decode()',
                "            else:",
                f"                {v} = r{i}(value)",
            ]
        else:
            body.append(f"            {v} = r{i}(value, info)" if with_info else f"            {v} = r{i}(value)")
        field_type = object_type.fields[field_name].type
        inner = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
        if isinstance(inner, GraphQLObjectType):
            # The object's own row function, looked up on its first value, not per row.
            names[f"o{i}"] = inner
            head.append(f"    sub{i} = None")
            body.insert(1, f"        nonlocal sub{i}")
            pad = "            "
            if inner is not field_type:
                body.append(f"{pad}if {v} is None: raise Irregular")
            else:
                body.append(f"{pad}if {v} is not None:")
                pad += "    "
            body += [f"{pad}if sub{i} is None: sub{i} = ex._row_plan(o{i}, s{i})", f"{pad}{v} = sub{i}({v})"]
        else:
            body.extend(_complete_source(field_type, i, complete, names))
    body += [
        "        except Exception:",
        "            raise Irregular from None",
        "        return {" + ", ".join(f"{name!r}: v{i}" for i, (name, _, _) in enumerate(shape)) + "}",
        "    return row",
    ]
    subs = "".join(f", s{i}" for i in range(len(shape)))
    source = "\n".join([f"def factory(ex, info{subs}):", *head, *body])
    exec(compile(source, f"<row {object_type.name}>", "exec"), names)  # noqa: S102 — our own source, from the schema
    return names["factory"]  # type: ignore[no-any-return]


def _default_node_id_attr(object_type: GraphQLObjectType, field_name: str) -> tuple[type, str, str] | None:
    """(class, "Type:" prefix, attribute) when the field is relay's default `id` and the
    type's class keeps Strawberry's resolve_id and resolve_typename."""
    field = object_type.fields[field_name]
    definition = object_type.extensions.get("strawberry-definition")
    cls = getattr(definition, "origin", None)
    if (
        not _is_default_node_id(field.extensions.get("strawberry-definition"))
        or not isinstance(cls, type)
        or not issubclass(cls, relay.Node)
    ):
        return None
    if cls.resolve_id.__func__ is not _NODE_RESOLVE_ID or cls.resolve_typename.__func__ is not _NODE_RESOLVE_TYPENAME:  # type: ignore[attr-defined]
        return None
    attr = cls.resolve_id_attr()
    if not attr.isidentifier() or keyword.iskeyword(attr):
        return None
    return cls, f"{object_type.name}:", attr


_INLINE_TYPES: dict[Any, str] = {GraphQLString: "str", GraphQLID: "str", GraphQLBoolean: "bool"}


def _complete_source(field_type: GraphQLOutputType, i: int, complete: _Completer, names: dict[str, Any]) -> list[str]:
    """The lines that complete `v{i}` as `complete` would: leaves inline, the rest by a call."""
    non_null = isinstance(field_type, GraphQLNonNull)
    base = field_type.of_type if non_null else field_type
    v, pad = f"v{i}", " " * 12
    if not is_leaf_type(base):
        names[f"c{i}"] = complete
        return [f"{pad}{v} = c{i}(ex, s{i}, {v})"]
    names[f"k{i}"] = base.coerce_output_value  # type: ignore[union-attr]
    inline = _INLINE_TYPES.get(base)
    if inline is not None and non_null:
        return [
            f"{pad}if type({v}) is not {inline}:",
            f"{pad}    if {v} is None: raise Irregular",
            f"{pad}    {v} = coerced(k{i}, {v})",
        ]
    if inline is not None:
        return [f"{pad}if {v} is not None and type({v}) is not {inline}: {v} = coerced(k{i}, {v})"]
    if base.coerce_output_value is _ISOFORMAT:  # type: ignore[union-attr]
        # Strawberry's DateTime (and Date, Time): `value.isoformat()`, here for a datetime.
        coerce = f"{v} = {v}.isoformat() if type({v}) is datetime else coerced(k{i}, {v})"
        if non_null:
            return [f"{pad}if {v} is None: raise Irregular", f"{pad}{coerce}"]
        return [f"{pad}if {v} is not None: {coerce}"]
    if non_null:
        return [f"{pad}if {v} is None: raise Irregular", f"{pad}{v} = coerced(k{i}, {v})"]
    return [f"{pad}if {v} is not None: {v} = coerced(k{i}, {v})"]


def _fill(results: dict[str, Any], slow: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    for name in slow:
        if name in rest:
            results[name] = rest[name]
        else:
            del results[name]
    return results
