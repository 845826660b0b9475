"""The executor's short path for plain leaf fields answers exactly as graphql-core does:
same data, same field order, same errors and null propagation."""

from __future__ import annotations

import enum
import gc
import json
import weakref
from datetime import UTC, date, datetime
from typing import Any

import pytest
import strawberry
from strawberry import relay

from runtime.execution import Executor, plain


@strawberry.enum
class Mood(enum.Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


@strawberry.type
class Row:
    name: str | None
    required: str
    count: int
    mood: Mood
    seen_at: datetime | None
    flag: bool = True
    maybe: bool | None = None

    @strawberry.field
    def shout(self, loud: bool = False) -> str:
        return self.required.upper() if loud else self.required

    @strawberry.field
    async def later(self) -> str:
        return f"later {self.required}"

    @strawberry.field
    @plain
    def tag(self, info: strawberry.Info) -> str | None:
        """At once for most rows; an awaitable for row "b", as a related row not loaded yet."""
        if self.required == "b":

            async def later() -> str:
                return f"late {info.context}"

            return later()
        return None if self.name is None else f"#{self.name} {info.context}"

    @strawberry.field
    @plain
    def partner(self, info: strawberry.Info) -> Row | None:
        return ROWS[1] if self.count == 1 else None

    @strawberry.field
    @plain
    def where(self, info: strawberry.Info) -> str:
        """Breaks the promise (reads more than the context): graphql-core's path answers."""
        return str(info.path.key)


ROWS = [
    Row(name="Ada", required="a", count=1, mood=Mood.HAPPY, seen_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)),
    Row(name=None, required="b", count=2, mood=Mood.GRUMPY, seen_at=None),
    Row(name="Bad", required=None, count=3, mood=Mood.HAPPY, seen_at=None),  # type: ignore[arg-type]
    Row(name="Worse", required="d", count="many", mood=Mood.HAPPY, seen_at=None),  # type: ignore[arg-type]
    Row(name="Flags", required="e", count=5, mood=Mood.HAPPY, seen_at=date(2026, 1, 2), flag=1, maybe=0),  # type: ignore[arg-type]
    Row(name="Odd", required="f", count=6, mood=Mood.HAPPY, seen_at="2026-01-02", flag=None, maybe="yes"),  # type: ignore[arg-type]
]


@strawberry.type
class Thing(relay.Node):
    id: relay.NodeID[int]
    label: str
    rows: list[Row]
    grid: list[list[int | None]]
    strict: list[int]


@strawberry.type
class Page:
    things: list[Thing]
    named: Row | None


THINGS = [
    Thing(id=1, label="one", rows=ROWS[:2], grid=[[1, None], []], strict=[1, 2]),
    Thing(id=2, label="two", rows=[], grid=[], strict=[3, None]),  # type: ignore[list-item]
    Thing(id=None, label="three", rows=[], grid=[], strict=[]),  # type: ignore[arg-type]
    Thing(id=4, label="four", rows=[ROWS[4]], grid=[], strict=[]),
    Thing(id=5, label="five", rows=[ROWS[5]], grid=[], strict=[]),
]


@strawberry.type
class Query:
    @strawberry.field
    def rows(self, upto: int = 2) -> list[Row]:
        return ROWS[:upto]

    @strawberry.field
    def page(self, upto: int = 1) -> Page:
        return Page(things=THINGS[:upto], named=ROWS[0])

    @strawberry.field
    def wrong(self) -> Page:
        return Page(things=[LooksLikeAThing()], named=LooksLikeARow())  # type: ignore[list-item,arg-type]

    @strawberry.field
    def nullable_rows(self, upto: int = 4) -> list[Row | None]:
        return ROWS[:upto]

    @strawberry.field
    def fresh_rows(self) -> list[Row | None]:
        """New rows each time, the last one irregular (a null where required): for
        checking that nothing of an execution outlives it."""
        rows = [
            Row(name=f"n{i}", required="r" if i < 2 else None, count=i, mood=Mood.HAPPY, seen_at=None) for i in range(3)
        ]  # type: ignore[arg-type]
        MADE.extend(weakref.ref(row) for row in rows)
        return rows


MADE: list[weakref.ref[Row]] = []


class LooksLikeAThing:
    """Has a Thing's attributes but is no Thing: graphql-core refuses it (a Node type has an
    is_type_of check), and so must we."""

    id = 9
    label = "impostor"


class LooksLikeARow:
    """A Row (no interfaces, so no is_type_of) is duck-typed by graphql-core: so it is here."""

    name = "impostor"
    count = 1


QUERIES = [
    "{ rows { name required count mood seenAt } }",
    "{ rows { b: count a: name shout(loud: true) later name __typename seenAt } }",
    "{ rows { ...F count } } fragment F on Row { mood name }",
    "query($on: Boolean!) { rows { name @include(if: $on) count @skip(if: $on) later } }",
    # A null in a non-null field, and a value the scalar cannot coerce: errors, and the
    # row nulled where the list allows it.
    "{ nullableRows { name required count } }",
    "{ nullableRows { later count name } }",
    "{ rows(upto: 3) { name required } }",
    # Booleans: true ones, numbers graphql-core coerces, a null where required, a string.
    "{ nullableRows(upto: 5) { flag maybe name } }",
    "{ nullableRows(upto: 6) { flag maybe name } }",
    "{ page(upto: 4) { things { rows { flag maybe name } } } }",
    "{ page(upto: 5) { things { rows { flag maybe } } } }",
    "{ nullableRows(upto: 6) { maybe } }",
    # DateTime: a datetime, a null, a date (which has isoformat too), a string (which has not).
    "{ nullableRows(upto: 6) { seenAt name } }",
    "{ page(upto: 2) { things { rows { seenAt name } } } }",
    "{ page(upto: 5) { things { label rows { seenAt } } } }",
    # Nested plain objects and lists, relay ids, lists of lists.
    "{ page { things { id label rows { name mood } grid } named { name count } } }",
    "{ page(upto: 2) { things { id label strict } } }",
    "{ page(upto: 3) { things { label id } } }",
    "{ page { things { rows { later name } label } } }",
    "{ wrong { things { label } } }",
    "{ wrong { things { id } } }",
    "{ wrong { named { name count } } }",
    # @plain resolvers: at once, as an awaitable, returning an object, breaking the promise.
    "{ rows(upto: 3) { tag name partner { name tag partner { count } } } }",
    "{ nullableRows { tag required where } }",
    "{ page { things { rows { tag where } } named { partner { tag } } } }",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_same_answer_as_graphql_core(query: str) -> None:
    graphql_core = strawberry.Schema(query=Query)
    ours = strawberry.Schema(query=Query, execution_context_class=Executor)
    variables = {"on": True}
    expected = await graphql_core.execute(query, variable_values=variables, context_value="ctx")
    assert all(e.path for e in expected.errors or []), expected.errors  # executed, not refused as invalid
    got = await ours.execute(query, variable_values=variables, context_value="ctx")
    assert got.data == expected.data
    # As sent: 1 and true are equal in Python, not in JSON.
    assert json.dumps(got.data) == json.dumps(expected.data)
    assert list(_keys(got.data)) == list(_keys(expected.data))
    assert [(e.message, e.path) for e in got.errors or []] == [(e.message, e.path) for e in expected.errors or []]


def test_the_cases_cover_errors_and_nulls() -> None:
    """The comparison above would be weak if no case produced an error."""
    result = strawberry.Schema(query=Query, execution_context_class=Executor).execute_sync(
        "{ nullableRows { required count } }"
    )
    assert result.data == {"nullableRows": [{"required": "a", "count": 1}, {"required": "b", "count": 2}, None, None]}
    assert {tuple(e.path) for e in result.errors or []} == {
        ("nullableRows", 2, "required"),
        ("nullableRows", 3, "count"),
    }


def _keys(value: object) -> list[object]:
    """Every key path in order, so the field order is compared too."""
    out: list[object] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(k)
            out.extend(_keys(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(_keys(v))
    return out


def test_plain_fields_take_the_short_path() -> None:
    from runtime import execution

    schema = strawberry.Schema(query=Query, execution_context_class=Executor)
    schema.execute_sync("{ rows { name shout } }")
    row = schema._schema.type_map["Row"]
    assert execution._plans[(row, "name")] is not None
    assert execution._plans[(row, "shout")] is None


async def test_lists_of_objects_are_completed_by_generated_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparisons above pass on graphql-core's path too: here the rows of each type
    were answered by generated functions (ids, dates, nested objects and lists)."""
    from runtime import execution

    monkeypatch.setattr(execution, "_row_factories", {})
    schema = strawberry.Schema(query=Query, execution_context_class=Executor)
    result = await schema.execute(
        "{ page(upto: 2) { things { id label rows { name seenAt partner { count } } } } }", context_value="ctx"
    )
    assert result.errors is None
    assert result.data["page"]["things"][0]["rows"][0] == {
        "name": "Ada",
        "seenAt": "2026-01-02T03:04:00+00:00",
        "partner": {"count": 2},
    }
    made = {
        (object_type.name, tuple(name for name, _, _ in shape)): factory
        for (object_type, shape), factory in execution._row_factories.items()
    }
    assert made.keys() >= {
        ("Thing", ("id", "label", "rows")),
        ("Row", ("name", "seenAt", "partner")),
        ("Row", ("count",)),
    }
    assert all(factory is not None for factory in made.values())


async def test_plain_resolvers_answer_in_place_with_the_context() -> None:
    from runtime import execution

    schema = strawberry.Schema(query=Query, execution_context_class=Executor)
    result = await schema.execute("{ rows { tag partner { name } } }", context_value="ctx")
    assert result.errors is None
    assert result.data == {
        "rows": [{"tag": "#Ada ctx", "partner": {"name": None}}, {"tag": "late ctx", "partner": None}]
    }
    row = schema._schema.type_map["Row"]
    assert execution._plans[(row, "tag")] is not None and execution._plans[(row, "tag")][2] is True


class _Quiet(strawberry.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        """Not logged: a log record's traceback would keep the execution alive itself."""


async def test_an_execution_keeps_nothing_alive_after_it() -> None:
    """The short path gives irregular fields back by raising: a shared exception instance
    raised again chained every raise's frames onto its traceback, and with them every
    request's rows and results (a conversations page leaked ~270 KB, RSS 104 → 1,111 MiB
    over 3,700 requests)."""
    schema = _Quiet(query=Query, execution_context_class=Executor)
    MADE.clear()
    for _ in range(20):
        # The third row's null `required` is irregular: graphql-core's path reports it.
        result = await schema.execute("{ freshRows { name required } }")
        assert result.data is not None and result.data["freshRows"][2] is None
        assert [tuple(e.path) for e in result.errors or []] == [("freshRows", 2, "required")]
    del result
    gc.collect()
    assert len(MADE) == 60
    assert [ref for ref in MADE if ref() is not None] == []


async def test_generated_rows_are_bounded_however_many_selections_clients_make(monkeypatch: pytest.MonkeyPatch) -> None:
    """Aliases let a client make any number of distinct selections: the generated row
    functions kept stay at the bound, and every answer is still right."""
    from runtime import execution

    monkeypatch.setattr(execution, "ROW_FACTORIES_MAX", 3)
    monkeypatch.setattr(execution, "_row_factories", {})
    ours = strawberry.Schema(query=Query, execution_context_class=Executor)
    for i in range(8):
        result = await ours.execute(f"{{ page {{ named {{ n{i}: name count }} }} }}")
        assert result.data == {"page": {"named": {f"n{i}": "Ada", "count": 1}}}, result.errors
        assert len(execution._row_factories) <= 3
