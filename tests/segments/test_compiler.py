"""The segment rule compiler: parse() errors with their paths and codes, the SQL it emits,
and — on whichever database the session runs (SQLite, or PostgreSQL with TEST_DATABASE_URL)
— every operator of every field type against hand-computed answers and the plain-Python
reference in tests/segments/reference.py, then random rule trees against the reference."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.segments import Condition, Group, RuleError, compile_where, parse
from tests.segments import reference
from tests.segments.reference import Conversation, Event, Row

TYPES = {"plan": "text", "seats": "number", "paying": "boolean", "renewal": "date", "tier": "list"}


def tree(*conditions: dict[str, Any], match: str = "all", groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"match": match, "conditions": list(conditions), "groups": groups or []}


def cond(field: str, operator: str | None = None, **rest: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"field": field}
    if operator is not None:
        out["operator"] = operator
    out.update(rest)
    return out


COUNTRY_PT = cond("country", "equals", value="PT")


# -- parse: what is rejected, where, and why -------------------------------------------------


def nest(levels: int) -> dict[str, Any]:
    """A chain of `levels` groups, the innermost holding one condition."""
    inner = tree(COUNTRY_PT)
    for _ in range(levels - 1):
        inner = tree(groups=[inner])
    return inner


PARSE_ERRORS: list[tuple[str, Any, str, list[str], str]] = [
    ("not an object", ["country"], "INVALID_VALUE", [], "The rules"),
    ("bad match", {"match": "both", "conditions": []}, "INVALID_VALUE", ["match"], "match"),
    ("unknown tree key", {"match": "all", "conditions": [], "filters": []}, "INVALID_VALUE", ["filters"], "filters"),
    ("conditions not a list", {"match": "all", "conditions": {"field": "x"}}, "INVALID_VALUE", ["conditions"], "list"),
    ("condition not an object", tree("country"), "INVALID_VALUE", ["conditions", "0"], "Condition 1"),
    (
        "unknown field, nested",
        tree(COUNTRY_PT, groups=[tree(cond("favourite_colour", "equals", value="red"), match="any")]),
        "UNKNOWN_FIELD",
        ["groups", "0", "conditions", "0", "field"],
        "favourite_colour",
    ),
    (
        "missing field",
        tree({"operator": "equals", "value": "x"}),
        "UNKNOWN_FIELD",
        ["conditions", "0", "field"],
        "field",
    ),
    (
        "unknown conversation field",
        tree(cond("conversation.count", "greater_than", value=1)),
        "UNKNOWN_FIELD",
        ["conditions", "0", "field"],
        "conversation_count or last_conversation_at",
    ),
    (
        "conversation count with a text operator",
        tree(cond("conversation_count", "equals", value=1)),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "at_least",
    ),
    (
        "conversation count without a count",
        tree(cond("conversation_count", event_count_op="at_least")),
        "INVALID_VALUE",
        ["conditions", "0", "count"],
        "count",
    ),
    (
        "conversation count with a bad status",
        tree(cond("conversation_count", "at_least", count=1, status="closed")),
        "INVALID_VALUE",
        ["conditions", "0", "status"],
        "open, snoozed, resolved",
    ),
    (
        "conversation count with a status that is not text",
        tree(cond("conversation_count", "at_least", count=1, status=1)),
        "INVALID_VALUE",
        ["conditions", "0", "status"],
        "open",
    ),
    (
        "conversation count with a property",
        tree(
            cond(
                "conversation_count",
                "at_least",
                count=1,
                **{"property": "x", "property_operator": "equals", "property_value": 1},
            )
        ),
        "INVALID_VALUE",
        ["conditions", "0", "property"],
        "event.<name>",
    ),
    (
        "conversation count with days zero",
        tree(cond("conversation_count", "at_least", count=1, days=0)),
        "INVALID_VALUE",
        ["conditions", "0", "days"],
        "days",
    ),
    (
        "status on an event",
        tree(cond("event.purchase", event_count_op="at_least", count=1, status="open")),
        "INVALID_VALUE",
        ["conditions", "0", "status"],
        "conversation_count only",
    ),
    (
        "status on a contact field",
        tree(cond("email", "is_set", status="open")),
        "INVALID_VALUE",
        ["conditions", "0", "status"],
        "conversation_count only",
    ),
    (
        "last conversation with contains",
        tree(cond("last_conversation_at", "contains", value="x")),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "a date and time field",
    ),
    (
        "last conversation with a count",
        tree(cond("last_conversation_at", "is_set", count=1)),
        "INVALID_VALUE",
        ["conditions", "0", "count"],
        "event.<name> and conversation_count only",
    ),
    (
        "undefined attribute",
        tree(cond("attribute.colour", "equals", value="red")),
        "UNKNOWN_FIELD",
        ["conditions", "0", "field"],
        "colour",
    ),
    (
        "malformed attribute key",
        tree(cond("attribute.Plan", "equals", value="x")),
        "UNKNOWN_FIELD",
        ["conditions", "0", "field"],
        "Plan",
    ),
    (
        "ip is not a segment field",
        tree(cond("ip", "equals", value="1.2.3.4")),
        "UNKNOWN_FIELD",
        ["conditions", "0", "field"],
        "ip",
    ),
    (
        "malformed event name",
        tree(cond("event.sign up!", event_count_op="at_least", count=1)),
        "UNKNOWN_FIELD",
        ["conditions", "0", "field"],
        "event",
    ),
    (
        "boolean with contains",
        tree(cond("vip", "contains", value="x")),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "vip contains",
    ),
    (
        "missing operator",
        tree(cond("email", value="a@b.c")),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "email",
    ),
    (
        "text with greater_than",
        tree(cond("name", "greater_than", value="a")),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "greater_than",
    ),
    (
        "date attribute with equals",
        tree(cond("attribute.renewal", "equals", value="2026-01-01")),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "renewal",
    ),
    (
        "tag with contains",
        tree(cond("tag", "contains", value="x")),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "tag",
    ),
    (
        "number given as text",
        tree(COUNTRY_PT, cond("attribute.seats", "greater_than", value="10")),
        "INVALID_VALUE",
        ["conditions", "1", "value"],
        "Condition 2 (attribute.seats greater_than): expected a number",
    ),
    (
        "boolean given as number",
        tree(cond("vip", "equals", value=1)),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "true or false",
    ),
    ("missing value", tree(cond("email", "equals")), "INVALID_VALUE", ["conditions", "0", "value"], "needs a value"),
    (
        "empty text",
        tree(cond("email", "contains", value="")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "non-empty",
    ),
    (
        "too long text",
        tree(cond("email", "contains", value="x" * 1001)),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "1000",
    ),
    (
        "NUL in text",
        tree(cond("email", "contains", value="a\x00")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "NUL",
    ),
    (
        "lone surrogate",
        tree(cond("email", "contains", value="a\ud800")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "Unicode",
    ),
    (
        "date with a newline",
        tree(cond("attribute.renewal", "before", value="2026-02-01\n")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "YYYY-MM-DD",
    ),
    (
        "between reversed",
        tree(cond("attribute.seats", "between", values=[5, 1])),
        "INVALID_VALUE",
        ["conditions", "0", "values"],
        "low <= high",
    ),
    (
        "between with one value",
        tree(cond("attribute.seats", "between", values=[5])),
        "INVALID_VALUE",
        ["conditions", "0", "values"],
        "[low, high]",
    ),
    (
        "in with a bad item",
        tree(cond("attribute.seats", "in", values=[1, "2"])),
        "INVALID_VALUE",
        ["conditions", "0", "values", "1"],
        "number",
    ),
    (
        "in with nothing",
        tree(cond("city", "in", values=[])),
        "INVALID_VALUE",
        ["conditions", "0", "values"],
        "1 to 100",
    ),
    (
        "in with too much",
        tree(cond("city", "in", values=[f"c{i}" for i in range(101)])),
        "INVALID_VALUE",
        ["conditions", "0", "values"],
        "1 to 100",
    ),
    (
        "values not a list",
        tree(cond("city", "in", values="Porto")),
        "INVALID_VALUE",
        ["conditions", "0", "values"],
        "list",
    ),
    (
        "days zero",
        tree(cond("last_seen_at", "within_last_days", days=0)),
        "INVALID_VALUE",
        ["conditions", "0", "days"],
        "days",
    ),
    (
        "days as a boolean",
        tree(cond("last_seen_at", "within_last_days", days=True)),
        "INVALID_VALUE",
        ["conditions", "0", "days"],
        "days",
    ),
    (
        "days missing",
        tree(cond("last_seen_at", "more_than_days_ago")),
        "INVALID_VALUE",
        ["conditions", "0", "days"],
        "days",
    ),
    (
        "impossible date",
        tree(cond("attribute.renewal", "before", value="2026-02-30")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "YYYY-MM-DD",
    ),
    (
        "compact date",
        tree(cond("attribute.renewal", "before", value="20260201")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "YYYY-MM-DD",
    ),
    (
        "datetime on a date attribute",
        tree(cond("attribute.renewal", "after", value="2026-02-01T10:00:00Z")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "YYYY-MM-DD",
    ),
    (
        "not a datetime",
        tree(cond("created_at", "after", value="yesterday")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "ISO 8601",
    ),
    (
        "year out of range",
        tree(cond("created_at", "after", value="0999-01-01")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "year",
    ),
    (
        "bad sms consent",
        tree(cond("sms_consent", "equals", value="maybe")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "subscribed",
    ),
    ("tag too long", tree(cond("tag", "equals", value="x" * 65)), "INVALID_VALUE", ["conditions", "0", "value"], "64"),
    (
        "value with is_set",
        tree(cond("email", "is_set", value="x")),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "does not apply",
    ),
    (
        "days with equals",
        tree(cond("email", "equals", value="x", days=3)),
        "INVALID_VALUE",
        ["conditions", "0", "days"],
        "do not apply",
    ),
    (
        "values with equals",
        tree(cond("email", "equals", value="x", values=["y"])),
        "INVALID_VALUE",
        ["conditions", "0", "values"],
        "do not apply",
    ),
    (
        "unknown condition key",
        tree(cond("email", "equals", valeu="x")),
        "INVALID_VALUE",
        ["conditions", "0", "valeu"],
        "valeu",
    ),
    (
        "event key on a contact field",
        tree(cond("email", "is_set", count=2)),
        "INVALID_VALUE",
        ["conditions", "0", "count"],
        "event",
    ),
    (
        "property key on a contact field",
        tree(cond("email", "is_set", property="x")),
        "INVALID_VALUE",
        ["conditions", "0", "property"],
        "event.<name> fields only",
    ),
    (
        "event without a count operator",
        tree(cond("event.purchase", count=1)),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "at_least",
    ),
    (
        "event with a text operator",
        tree(cond("event.purchase", "equals", value="x")),
        "INVALID_OPERATOR",
        ["conditions", "0", "operator"],
        "at_least",
    ),
    (
        "event count op unknown",
        tree(cond("event.purchase", event_count_op="more_than", count=1)),
        "INVALID_OPERATOR",
        ["conditions", "0", "event_count_op"],
        "at_least",
    ),
    (
        "event count negative",
        tree(cond("event.purchase", event_count_op="at_least", count=-1)),
        "INVALID_VALUE",
        ["conditions", "0", "count"],
        "count",
    ),
    (
        "event count missing",
        tree(cond("event.purchase", event_count_op="at_least")),
        "INVALID_VALUE",
        ["conditions", "0", "count"],
        "count",
    ),
    (
        "event count fractional",
        tree(cond("event.purchase", event_count_op="at_least", count=1.5)),
        "INVALID_VALUE",
        ["conditions", "0", "count"],
        "count",
    ),
    (
        "event with value",
        tree(cond("event.purchase", event_count_op="at_least", count=1, value=3)),
        "INVALID_VALUE",
        ["conditions", "0", "value"],
        "count",
    ),
    (
        "event days zero",
        tree(cond("event.purchase", event_count_op="at_least", count=1, days=0)),
        "INVALID_VALUE",
        ["conditions", "0", "days"],
        "days",
    ),
    (
        "property name with a dot",
        tree(
            cond(
                "event.purchase",
                event_count_op="at_least",
                count=1,
                property="a.b",
                property_operator="equals",
                property_value=1,
            )
        ),
        "INVALID_VALUE",
        ["conditions", "0", "property"],
        "property",
    ),
    (
        "property without operator",
        tree(cond("event.purchase", event_count_op="at_least", count=1, property="amount")),
        "INVALID_OPERATOR",
        ["conditions", "0", "property_operator"],
        "property_operator",
    ),
    (
        "property operator unknown",
        tree(
            cond(
                "event.purchase",
                event_count_op="at_least",
                count=1,
                property="plan",
                property_operator="starts_with",
                property_value="p",
            )
        ),
        "INVALID_OPERATOR",
        ["conditions", "0", "property_operator"],
        "property_operator",
    ),
    (
        "property greater than text",
        tree(
            cond(
                "event.purchase",
                event_count_op="at_least",
                count=1,
                property="amount",
                property_operator="greater_than",
                property_value="5",
            )
        ),
        "INVALID_VALUE",
        ["conditions", "0", "property_value"],
        "number",
    ),
    (
        "property value a list",
        tree(
            cond(
                "event.purchase",
                event_count_op="at_least",
                count=1,
                property="amount",
                property_operator="equals",
                property_value=[1],
            )
        ),
        "INVALID_VALUE",
        ["conditions", "0", "property_value"],
        "list",
    ),
    (
        "property value missing",
        tree(cond("event.purchase", event_count_op="at_least", count=1, property="amount", property_operator="equals")),
        "INVALID_VALUE",
        ["conditions", "0", "property_value"],
        "nothing",
    ),
    ("empty nested group", tree(COUNTRY_PT, groups=[tree()]), "INVALID_VALUE", ["groups", "0"], "Group 1"),
    ("too deep", nest(5), "TOO_DEEP", ["groups", "0", "groups", "0", "groups", "0", "groups", "0"], "4 deep"),
    (
        "too many conditions",
        tree(*[COUNTRY_PT] * 30, groups=[tree(*[COUNTRY_PT] * 21)]),
        "TOO_MANY_CONDITIONS",
        ["groups", "0", "conditions", "20"],
        "Condition 21 of group 1",
    ),
    (
        "the first bad condition wins",
        tree(COUNTRY_PT, cond("vip", "equals", value="yes"), groups=[tree(cond("nope", "equals", value=1))]),
        "INVALID_VALUE",
        ["conditions", "1", "value"],
        "Condition 2 (vip equals)",
    ),
    (
        "depth first: an earlier group before a later one",
        tree(groups=[tree(groups=[tree(cond("city", "in"))]), tree(cond("nope", "is_set"))]),
        "INVALID_VALUE",
        ["groups", "0", "groups", "0", "conditions", "0", "values"],
        "Condition 1 of group 1.1 (city in)",
    ),
]


@pytest.mark.parametrize(
    ("rules", "code", "path", "message"), [case[1:] for case in PARSE_ERRORS], ids=[case[0] for case in PARSE_ERRORS]
)
def test_parse_rejects_with_path_and_code(rules: Any, code: str, path: list[str], message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse(rules, TYPES)
    assert (caught.value.code, caught.value.path) == (code, path), str(caught.value)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_parse_limits_are_inclusive() -> None:
    assert parse(nest(4), TYPES)
    assert parse(tree(*[COUNTRY_PT] * 40, groups=[tree(*[COUNTRY_PT] * 10)]), TYPES)


def test_parse_normalises_values() -> None:
    group = parse(
        tree(
            cond("tag", "in", values=["  Big   Spender ", "VIP"]),
            cond("sms_consent", "equals", value="SUBSCRIBED"),
            cond("created_at", "between", values=["2026-03-01T10:00:00+02:00", "2026-03-02T10:00:00"]),
            cond("first_seen_at", "before", value="2026-03-01"),
            cond("attribute.renewal", "after", value="2026-03-01"),
            cond(
                "event.purchase",
                "at_least",
                count=2.0,
                days=30,
                property="amount",
                property_operator="greater_than",
                property_value=5,
            ),
            cond("event.purchase", event_count_op="exactly", count=0),
            {"field": "email", "operator": "is_set", "value": None, "values": []},
        ),
        TYPES,
    )
    tags, sms, created, first, renewal, purchase, none, email = group.items
    assert isinstance(tags, Condition) and tags.values == ("big spender", "vip") and tags.kind == "tag"
    assert isinstance(sms, Condition) and sms.value == "subscribed"
    assert isinstance(created, Condition) and created.values == (
        datetime(2026, 3, 1, 8, tzinfo=UTC),
        datetime(2026, 3, 2, 10, tzinfo=UTC),
    )
    assert isinstance(first, Condition) and first.value == date(2026, 3, 1) and first.kind == "datetime"
    assert isinstance(renewal, Condition) and renewal.value == date(2026, 3, 1) and renewal.kind == "date"
    assert purchase == Condition(
        field="event.purchase",
        operator="at_least",
        days=30,
        event_count_op="at_least",
        count=2,
        property="amount",
        property_operator="greater_than",
        property_value=5,
        kind="event",
    )
    assert isinstance(none, Condition) and (none.operator, none.count) == ("exactly", 0)
    assert email == Condition(field="email", operator="is_set", kind="text")
    assert parse({"match": "any", "conditions": []}, {}) == Group(match="any", items=())


def test_parse_conversation_fields() -> None:
    group = parse(
        tree(
            cond("conversation_count", "at_least", count=2.0, days=30, status="OPEN"),
            cond("conversation_count", event_count_op="exactly", count=0),
            cond("last_conversation_at", "within_last_days", days=7),
        ),
        TYPES,
    )
    assert group.items == (
        Condition(
            field="conversation_count",
            operator="at_least",
            days=30,
            event_count_op="at_least",
            count=2,
            status="open",
            kind="conversation_count",
        ),
        Condition(
            field="conversation_count", operator="exactly", event_count_op="exactly", count=0, kind="conversation_count"
        ),
        Condition(field="last_conversation_at", operator="within_last_days", days=7, kind="datetime"),
    )


def test_postgres_equality_on_json_scalars_is_containment() -> None:
    """What the GIN index (jsonb_path_ops) on contacts.attributes can serve: `@>` with the
    value in a JSON parameter — never for texts with letters, which compare folded."""
    now = datetime(2026, 5, 1, tzinfo=UTC)

    def sql(rule: dict[str, Any]) -> tuple[str, list[Any]]:
        return compile_where(parse(tree(rule), TYPES), "postgres", now=now)

    assert sql(cond("attribute.seats", "equals", value=2.2)) == ("c.attributes @> $1::jsonb", ['{"seats":2.2}'])
    assert sql(cond("attribute.seats", "in", values=[1, 10])) == (
        "c.attributes @> ANY($1::jsonb[])",
        [['{"seats":1}', '{"seats":10}']],
    )
    assert sql(cond("attribute.paying", "not_equals", value=True)) == (
        "c.attributes @> $1::jsonb",
        ['{"paying":false}'],
    )
    assert sql(cond("attribute.tier", "equals", value="Gold")) == ("c.attributes @> $1::jsonb", ['{"tier":"Gold"}'])
    assert sql(cond("attribute.plan", "equals", value="42-7")) == ("c.attributes @> $1::jsonb", ['{"plan":"42-7"}'])
    assert sql(cond("attribute.plan", "in", values=["1", "é"])) == (
        "c.attributes @> ANY($1::jsonb[])",
        [['{"plan":"1"}', '{"plan":"é"}']],
    )
    for rule in (
        cond("attribute.plan", "equals", value="Pro"),
        cond("attribute.plan", "in", values=["1", "a"]),
        cond("attribute.seats", "greater_than", value=1),
        cond("attribute.tier", "not_equals", value="x"),
    ):
        assert "@>" not in sql(rule)[0]


def test_postgres_groups_attribute_filters_cheapest_first() -> None:
    """The ->> text comparison before the jsonpath, in one conjunct the planner cannot
    reorder; containment tests and other fields stay separate conjuncts."""
    rules = tree(
        cond("attribute.seats", "greater_or_equal", value=10),
        cond("country", "equals", value="PT"),
        cond("attribute.plan", "equals", value="pro"),
        cond("attribute.tier", "equals", value="gold"),
    )
    sql, params = compile_where(parse(rules, TYPES), "postgres", now=datetime(2026, 5, 1, tzinfo=UTC))
    assert sql == (
        '(COALESCE(lower(((c.attributes ->> $1::text)) COLLATE "C") = $2::text AND c.attributes @@ $3::jsonpath, FALSE)'
        ' AND (c.country IS NOT NULL AND lower((c.country) COLLATE "C") = $4::text) AND c.attributes @> $5::jsonb)'
    )
    assert params == ["plan", "pro", 'strict $."seats" >= 10', "pt", '{"tier":"gold"}']
    any_of = tree(
        cond("attribute.seats", "greater_or_equal", value=10),
        cond("attribute.plan", "equals", value="pro"),
        match="any",
    )
    sql, _ = compile_where(parse(any_of, TYPES), "postgres", now=datetime(2026, 5, 1, tzinfo=UTC))
    assert sql.startswith("(COALESCE(c.attributes @@ $1::jsonpath, FALSE) OR ")


def test_compiled_sql_carries_every_user_value_as_a_parameter() -> None:
    nasty = "x'); DROP TABLE contacts; --"
    types = {"zz_key": "text", "zz_num": "number"}
    rules = tree(
        cond("name", "contains", value=nasty),
        cond("attribute.zz_key", "equals", value=nasty),
        cond("tag", "equals", value=nasty),
        cond(
            "event.Zz_event",
            event_count_op="at_least",
            count=7,
            property="zz_prop",
            property_operator="equals",
            property_value=nasty,
        ),
        cond("attribute.zz_num", "greater_than", value=123456),
        cond("attribute.zz_key", "equals", value="0099"),
        cond("conversation_count", "at_least", count=8, status="snoozed"),
        match="any",
    )
    now = datetime(2026, 5, 1, tzinfo=UTC)
    for dialect in ("sqlite", "postgres"):
        sql, params = compile_where(parse(rules, types), dialect, now=now, param_start=3)
        for secret in ("DROP", "zz_key", "zz_num", "Zz_event", "zz_prop", "123456", "0099", "snoozed"):
            assert secret not in sql
        text = repr(params)
        assert "zz_key" in text and "zz_num" in text and "Zz_event" in params and "zz_prop" in params and 7 in params
        if dialect == "sqlite":
            assert sql.count("?") == len(params) and "$" not in sql.replace("'$.", "")
        else:
            numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
            assert numbers == list(range(3, 3 + len(params))) and "?" not in sql


def test_compile_where_edges() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert compile_where(parse({"match": "all"}, {}), "postgres", now=now) == ("TRUE", [])
    with pytest.raises(ValueError):
        compile_where(parse({"match": "all"}, {}), "mysql", now=now)
    with pytest.raises(ValueError):
        compile_where(parse({"match": "all"}, {}), "sqlite", now=datetime(2026, 5, 1))


# -- the database ----------------------------------------------------------------------------


async def load_rows(workspace_id: int) -> list[Row]:
    from models.contacts import Contact, ContactEvent, ContactTag
    from models.conversations import Conversation as ConversationRow

    rows = {}
    for c in await Contact.filter(workspace_id=workspace_id):
        fields = {f: getattr(c, f) for f in reference.TEXT_FIELDS}
        fields.update(
            vip=c.vip,
            blocked=c.blocked,
            gdpr_consent=c.gdpr_consent,
            sms_consent=str(c.sms_consent),
            first_seen_at=c.first_seen_at,
            last_seen_at=c.last_seen_at,
            created_at=c.created_at,
        )
        rows[c.id] = Row(id=c.id, fields=fields, attributes=dict(c.attributes))
    for contact_id, name in await ContactTag.filter(workspace_id=workspace_id).values_list("contact_id", "name"):
        rows[contact_id].tags.add(name)
    for e in await ContactEvent.filter(workspace_id=workspace_id):
        rows[e.contact_id].events.append(Event(name=e.name, occurred_at=e.occurred_at, properties=dict(e.properties)))
    for v in await ConversationRow.filter(workspace_id=workspace_id):
        rows[v.contact_id].conversations.append(Conversation(status=str(v.status), created_at=v.created_at))
    return list(rows.values())


async def add_contact(
    workspace_id: int,
    *,
    channel_id: int,
    created_at: datetime,
    tags: tuple[str, ...] = (),
    events: tuple[tuple[str, datetime, dict[str, Any]], ...] = (),
    conversations: tuple[tuple[str, datetime], ...] = (),
    **fields: Any,
) -> int:
    from models.contacts import Contact, ContactEvent, ContactTag
    from models.conversations import Conversation as ConversationRow

    contact = await Contact.create(workspace_id=workspace_id, **fields)
    await Contact.filter(id=contact.id).update(created_at=created_at)
    for tag in tags:
        await ContactTag.create(workspace_id=workspace_id, contact_id=contact.id, name=tag)
    for name, at, properties in events:
        await ContactEvent.create(
            workspace_id=workspace_id,
            contact_id=contact.id,
            kind="event",
            name=name,
            occurred_at=at,
            properties=properties,
        )
    for status, started in conversations:
        made = await ConversationRow.create(
            workspace_id=workspace_id, contact_id=contact.id, channel_id=channel_id, status=status
        )
        await ConversationRow.filter(id=made.id).update(created_at=started)
    return contact.id


async def run(group: Group, workspace_id: int, now: datetime, *, negate: bool = False) -> set[int]:
    from tortoise import connections

    from core.db import dialect

    d = dialect()
    where, params = compile_where(group, d, now=now, param_start=2)
    ws = "?" if d == "sqlite" else "$1"
    sql = f"SELECT c.id FROM contacts c WHERE c.workspace_id = {ws} AND {'NOT ' if negate else ''}({where})"
    rows = await connections.get("default").execute_query_dict(sql, [workspace_id, *params])
    return {r["id"] for r in rows}


# A hand-made workspace: five contacts, each operator checked against answers worked out by
# hand (and against the reference). NOW has microseconds; T0 is a whole second, stored on
# SQLite as '...:00+00:00' without them.
NOW = datetime.now(UTC).replace(microsecond=654321)
T0 = datetime.combine((NOW - timedelta(days=50)).date(), time(12), tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def day(offset: int) -> date:
    return (NOW + timedelta(days=offset)).date()


PEOPLE: dict[str, dict[str, Any]] = {
    "ana": {
        "name": "Ana Silva",
        "email": "ana@example.com",
        "phone": "+351912345678",
        "country": "PT",
        "city": "Lisboa",
        "vip": True,
        "gdpr_consent": True,
        "sms_consent": "subscribed",
        "first_seen_at": ago(3),
        "last_seen_at": ago(1),
        "created_at": ago(400),
        "tags": ("trial", "beta"),
        "attributes": {"plan": "Pro", "seats": 10, "paying": True, "renewal": day(-5).isoformat(), "tier": "gold"},
        "events": (
            ("purchase", ago(1), {"amount": 50, "currency": "EUR"}),
            ("purchase", ago(10), {"amount": 150, "currency": "usd"}),
            ("purchase", ago(100), {"amount": 5}),
            ("login", ago(2), {}),
        ),
        "conversations": (("open", ago(2)), ("resolved", ago(40)), ("resolved", ago(100))),
    },
    "bea": {
        "name": "Bea 100%_off",
        "email": "BEA@Example.ORG",
        "country": "es",
        "city": "Madrid",
        "sms_consent": "unsubscribed",
        "first_seen_at": ago(40),
        "last_seen_at": ago(30),
        "created_at": ago(30),
        "tags": ("trial",),
        "attributes": {
            "plan": "free",
            "seats": 2.2,
            "paying": False,
            "renewal": day(-40).isoformat(),
            "tier": "silver",
        },
        "events": (("purchase", ago(40), {"amount": "50"}), ("login", ago(5), {})),
        "conversations": (("snoozed", ago(10)),),
    },
    "cid": {
        "name": "Cid\\Campeador",
        "sms_consent": "never",
        "last_seen_at": ago(200),
        "created_at": ago(10),
        "attributes": {},
    },
    "dan": {
        "name": "Élodie Dan",
        "email": "dan@example.com",
        "country": "FR",
        "city": "lisboa",
        "vip": True,
        "blocked": True,
        "sms_consent": "never",
        "first_seen_at": ago(10),
        "last_seen_at": T0,
        "created_at": ago(60),
        "tags": ("big spender",),
        # Every attribute stored with the wrong JSON type: missing for every condition.
        "attributes": {"plan": 5, "seats": "10", "paying": "true", "renewal": "soon", "tier": 3},
        "events": (("signup", T0, {"plan": "pro", "beta-user": True}),),
        "conversations": (("resolved", T0),),
    },
    "eve": {
        "name": "eve",
        "email": "eve@example.com",
        "country": "PT",
        "sms_consent": "subscribed",
        "first_seen_at": ago(7),
        "last_seen_at": ago(7),
        "created_at": ago(7),
        "tags": ("beta",),
        "attributes": {"plan": "PRO", "seats": 0, "paying": None, "renewal": day(0).isoformat(), "tier": "Gold"},
        "events": (("purchase", ago(7), {"amount": 50}), ("purchase", ago(7), {"amount": 50})),
        "conversations": (("open", ago(7)), ("resolved", ago(7))),
    },
}
EVERYONE = set(PEOPLE)


def purchase(count_op: str, count: int, **rest: Any) -> dict[str, Any]:
    return cond("event.purchase", event_count_op=count_op, count=count, **rest)


def conversations(count_op: str, count: int, **rest: Any) -> dict[str, Any]:
    return cond("conversation_count", event_count_op=count_op, count=count, **rest)


def prop(name: str, operator: str, value: Any) -> dict[str, Any]:
    return {"property": name, "property_operator": operator, "property_value": value}


CASES: list[tuple[dict[str, Any], set[str]]] = [
    # text, built-in (case-insensitive, ASCII folding, literal wildcards, missing never matches)
    (cond("country", "equals", value="pt"), {"ana", "eve"}),
    (cond("country", "not_equals", value="pt"), {"bea", "dan"}),
    (cond("email", "contains", value="EXAMPLE"), {"ana", "bea", "dan", "eve"}),
    (cond("email", "not_contains", value="example.com"), {"bea"}),
    (cond("name", "contains", value="%_"), {"bea"}),
    (cond("name", "contains", value="\\"), {"cid"}),
    (cond("name", "contains", value="'"), set()),
    (cond("name", "starts_with", value="ana"), {"ana"}),
    (cond("name", "starts_with", value="_"), set()),
    (cond("name", "ends_with", value="DAN"), {"dan"}),
    (cond("name", "equals", value="ÉLODIE DAN"), {"dan"}),
    (cond("name", "equals", value="élodie dan"), set()),
    (cond("city", "in", values=["LISBOA", "porto"]), {"ana", "dan"}),
    (cond("city", "not_in", values=["lisboa"]), {"bea"}),
    (cond("phone", "is_set"), {"ana"}),
    (cond("phone", "is_not_set"), {"bea", "cid", "dan", "eve"}),
    (cond("email", "is_not_set"), {"cid"}),
    # text attribute (wrong JSON type counts as missing)
    (cond("attribute.plan", "equals", value="pro"), {"ana", "eve"}),
    (cond("attribute.plan", "not_equals", value="pro"), {"bea"}),
    (cond("attribute.plan", "contains", value="R"), {"ana", "bea", "eve"}),
    (cond("attribute.plan", "not_contains", value="e"), {"ana", "eve"}),
    (cond("attribute.plan", "starts_with", value="f"), {"bea"}),
    (cond("attribute.plan", "ends_with", value="O"), {"ana", "eve"}),
    (cond("attribute.plan", "in", values=["free", "enterprise"]), {"bea"}),
    (cond("attribute.plan", "not_in", values=["FREE"]), {"ana", "eve"}),
    (cond("attribute.plan", "is_set"), {"ana", "bea", "eve"}),
    (cond("attribute.plan", "is_not_set"), {"cid", "dan"}),
    # number attribute
    (cond("attribute.seats", "equals", value=10), {"ana"}),
    (cond("attribute.seats", "not_equals", value=10), {"bea", "eve"}),
    (cond("attribute.seats", "equals", value=2.2), {"bea"}),  # exactly, not as the float's binary expansion
    (cond("attribute.seats", "greater_than", value=2.2), {"ana"}),
    (cond("attribute.seats", "greater_or_equal", value=2.2), {"ana", "bea"}),
    (cond("attribute.seats", "less_than", value=2.2), {"eve"}),
    (cond("attribute.seats", "less_or_equal", value=2.2), {"bea", "eve"}),
    (cond("attribute.seats", "between", values=[0, 2.2]), {"bea", "eve"}),
    (cond("attribute.seats", "between", values=[2.3, 10.0]), {"ana"}),
    (cond("attribute.seats", "in", values=[0, 10]), {"ana", "eve"}),
    (cond("attribute.seats", "not_in", values=[0, 10]), {"bea"}),
    (cond("attribute.seats", "is_set"), {"ana", "bea", "eve"}),
    (cond("attribute.seats", "is_not_set"), {"cid", "dan"}),
    # boolean attribute (JSON null and "true" are missing)
    (cond("attribute.paying", "equals", value=True), {"ana"}),
    (cond("attribute.paying", "equals", value=False), {"bea"}),
    (cond("attribute.paying", "not_equals", value=True), {"bea"}),
    (cond("attribute.paying", "is_set"), {"ana", "bea"}),
    (cond("attribute.paying", "is_not_set"), {"cid", "dan", "eve"}),
    # boolean columns
    (cond("vip", "equals", value=True), {"ana", "dan"}),
    (cond("vip", "not_equals", value=True), {"bea", "cid", "eve"}),
    (cond("blocked", "equals", value=True), {"dan"}),
    (cond("gdpr_consent", "not_equals", value=False), {"ana"}),
    (cond("vip", "is_set"), EVERYONE),
    (cond("vip", "is_not_set"), set()),
    # enum
    (cond("sms_consent", "equals", value="subscribed"), {"ana", "eve"}),
    (cond("sms_consent", "not_equals", value="never"), {"ana", "bea", "eve"}),
    (cond("sms_consent", "in", values=["unsubscribed", "never"]), {"bea", "cid", "dan"}),
    (cond("sms_consent", "not_in", values=["subscribed"]), {"bea", "cid", "dan"}),
    (cond("sms_consent", "is_set"), EVERYONE),
    (cond("sms_consent", "is_not_set"), set()),
    # list attribute (exact)
    (cond("attribute.tier", "equals", value="gold"), {"ana"}),
    (cond("attribute.tier", "not_equals", value="gold"), {"bea", "eve"}),
    (cond("attribute.tier", "in", values=["gold", "silver"]), {"ana", "bea"}),
    (cond("attribute.tier", "not_in", values=["silver"]), {"ana", "eve"}),
    (cond("attribute.tier", "is_set"), {"ana", "bea", "eve"}),
    (cond("attribute.tier", "is_not_set"), {"cid", "dan"}),
    # date attribute
    (cond("attribute.renewal", "before", value=day(-5).isoformat()), {"bea"}),
    (cond("attribute.renewal", "after", value=day(-5).isoformat()), {"eve"}),
    (cond("attribute.renewal", "between", values=[day(-40).isoformat(), day(-5).isoformat()]), {"ana", "bea"}),
    (cond("attribute.renewal", "within_last_days", days=5), {"ana", "eve"}),
    (cond("attribute.renewal", "within_last_days", days=4), {"eve"}),
    (cond("attribute.renewal", "more_than_days_ago", days=5), {"bea"}),
    (cond("attribute.renewal", "is_set"), {"ana", "bea", "eve"}),
    (cond("attribute.renewal", "is_not_set"), {"cid", "dan"}),
    # datetime columns: boundaries, dates as whole UTC days, whole seconds on SQLite
    (cond("first_seen_at", "within_last_days", days=7), {"ana", "eve"}),
    (cond("first_seen_at", "more_than_days_ago", days=7), {"bea", "dan"}),
    (cond("first_seen_at", "is_set"), {"ana", "bea", "dan", "eve"}),
    (cond("first_seen_at", "is_not_set"), {"cid"}),
    (cond("last_seen_at", "before", value=T0.isoformat()), {"cid"}),
    (cond("last_seen_at", "after", value=T0.isoformat()), {"ana", "bea", "eve"}),
    (cond("last_seen_at", "between", values=[T0.isoformat(), T0.isoformat()]), {"dan"}),
    (cond("last_seen_at", "after", value=(T0 - timedelta(microseconds=1)).isoformat()), {"ana", "bea", "dan", "eve"}),
    (cond("last_seen_at", "before", value=(T0 + timedelta(microseconds=1)).isoformat()), {"cid", "dan"}),
    (
        cond("last_seen_at", "before", value=(T0 + timedelta(microseconds=1)).astimezone(PLUS_TWO).isoformat()),
        {"cid", "dan"},
    ),
    (cond("last_seen_at", "after", value=T0.replace(tzinfo=None).isoformat()), {"ana", "bea", "eve"}),
    (cond("last_seen_at", "before", value=T0.date().isoformat()), {"cid"}),
    (cond("last_seen_at", "after", value=T0.date().isoformat()), {"ana", "bea", "eve"}),
    (cond("last_seen_at", "between", values=[T0.date().isoformat(), T0.date().isoformat()]), {"dan"}),
    (cond("last_seen_at", "within_last_days", days=30), {"ana", "bea", "eve"}),
    (cond("last_seen_at", "more_than_days_ago", days=30), {"cid", "dan"}),
    (cond("created_at", "more_than_days_ago", days=365), {"ana"}),
    (cond("created_at", "between", values=[ago(31).isoformat(), ago(7).isoformat()]), {"bea", "cid", "eve"}),
    (cond("created_at", "is_set"), EVERYONE),
    # tags
    (cond("tag", "equals", value="Trial"), {"ana", "bea"}),
    (cond("tag", "not_equals", value="trial"), {"cid", "dan", "eve"}),
    (cond("tag", "in", values=["beta", "big  Spender"]), {"ana", "dan", "eve"}),
    (cond("tag", "not_in", values=["trial", "beta"]), {"cid", "dan"}),
    (cond("tag", "is_set"), {"ana", "bea", "dan", "eve"}),
    (cond("tag", "is_not_set"), {"cid"}),
    # events
    (purchase("at_least", 1), {"ana", "bea", "eve"}),
    (purchase("at_least", 2), {"ana", "eve"}),
    (purchase("at_least", 3), {"ana"}),
    (purchase("at_least", 0), EVERYONE),
    (purchase("at_most", 1), {"bea", "cid", "dan"}),
    (purchase("exactly", 0), {"cid", "dan"}),
    (purchase("exactly", 2), {"eve"}),
    (cond("event.purchase", "at_least", count=1, days=7), {"ana", "eve"}),
    (purchase("at_least", 2, days=7), {"eve"}),
    (purchase("at_least", 2, **prop("amount", "equals", 50)), {"eve"}),
    (purchase("at_least", 1, **prop("amount", "equals", 50)), {"ana", "eve"}),
    (purchase("at_least", 1, **prop("amount", "equals", "50")), {"bea"}),
    (purchase("at_least", 1, **prop("amount", "not_equals", 50)), {"ana"}),
    (purchase("at_least", 1, **prop("amount", "greater_than", 100)), {"ana"}),
    (purchase("at_least", 2, **prop("amount", "less_than", 60)), {"ana", "eve"}),
    (purchase("at_least", 2, **prop("amount", "greater_than", 40.5)), {"ana", "eve"}),
    (purchase("at_least", 1, **prop("currency", "equals", "eur")), {"ana"}),
    (purchase("at_least", 1, **prop("currency", "contains", "S")), {"ana"}),
    (purchase("exactly", 0, **prop("currency", "contains", "x")), EVERYONE),
    (purchase("at_most", 1, **prop("currency", "not_equals", "eur")), EVERYONE),
    (purchase("at_least", 1, days=20, **prop("currency", "not_equals", "eur")), {"ana"}),
    (cond("event.signup", event_count_op="at_least", count=1, **prop("beta-user", "equals", True)), {"dan"}),
    (cond("event.signup", event_count_op="at_least", count=1, **prop("plan", "equals", "PRO")), {"dan"}),
    (cond("event.Purchase", event_count_op="at_least", count=1), set()),
    (cond("event.login", event_count_op="at_most", count=0, days=3), {"bea", "cid", "dan", "eve"}),
    # conversation counts: all of them, created in the last days, with a status
    (conversations("at_least", 1), {"ana", "bea", "dan", "eve"}),
    (conversations("at_least", 2), {"ana", "eve"}),
    (conversations("at_least", 3), {"ana"}),
    (conversations("at_least", 0), EVERYONE),
    (conversations("at_most", 1), {"bea", "cid", "dan"}),
    (conversations("at_most", 0), {"cid"}),
    (conversations("exactly", 0), {"cid"}),
    (conversations("exactly", 2), {"eve"}),
    (conversations("at_least", 1, days=7), {"ana", "eve"}),  # eve's: exactly 7 days ago
    (conversations("exactly", 2, days=7), {"eve"}),
    (conversations("at_least", 1, status="open"), {"ana", "eve"}),
    (conversations("exactly", 2, status="resolved"), {"ana"}),
    (conversations("at_least", 1, status="resolved", days=30), {"eve"}),
    (conversations("at_most", 0, status="snoozed"), {"ana", "cid", "dan", "eve"}),
    (conversations("exactly", 1, status="SNOOZED", days=30), {"bea"}),
    (cond("conversation_count", "at_least", count=2, status="resolved"), {"ana"}),
    # the newest conversation's start
    (cond("last_conversation_at", "is_set"), {"ana", "bea", "dan", "eve"}),
    (cond("last_conversation_at", "is_not_set"), {"cid"}),
    (cond("last_conversation_at", "within_last_days", days=7), {"ana", "eve"}),
    (cond("last_conversation_at", "within_last_days", days=6), {"ana"}),
    (cond("last_conversation_at", "more_than_days_ago", days=7), {"bea", "dan"}),
    (cond("last_conversation_at", "more_than_days_ago", days=30), {"dan"}),  # not ana: her newest is recent
    (cond("last_conversation_at", "before", value=T0.isoformat()), set()),
    (cond("last_conversation_at", "before", value=(T0 + timedelta(microseconds=1)).isoformat()), {"dan"}),
    (cond("last_conversation_at", "after", value=T0.isoformat()), {"ana", "bea", "eve"}),
    (
        cond("last_conversation_at", "after", value=(T0 - timedelta(microseconds=1)).isoformat()),
        {"ana", "bea", "dan", "eve"},
    ),
    (cond("last_conversation_at", "between", values=[T0.isoformat(), T0.isoformat()]), {"dan"}),
    (cond("last_conversation_at", "before", value=ago(10).date().isoformat()), {"dan"}),
    (cond("last_conversation_at", "after", value=ago(10).date().isoformat()), {"ana", "eve"}),
    (
        cond("last_conversation_at", "between", values=[ago(10).date().isoformat(), ago(7).date().isoformat()]),
        {"bea", "eve"},
    ),
]

NESTED: list[tuple[str, dict[str, Any], set[str]]] = [
    ("empty root", {"match": "all"}, EVERYONE),
    (
        "any of a condition and a group",
        tree(
            cond("country", "equals", value="es"),
            match="any",
            groups=[tree(cond("vip", "equals", value=True), cond("tag", "equals", value="beta"))],
        ),
        {"ana", "bea"},
    ),
    (
        "all of a condition and an any-group",
        tree(
            cond("email", "contains", value="example"),
            groups=[tree(cond("attribute.seats", "greater_than", value=5), cond("tag", "is_not_set"), match="any")],
        ),
        {"ana"},
    ),
    (
        "the predefined lapsed segment",
        tree(cond("last_seen_at", "more_than_days_ago", days=29), cond("last_seen_at", "within_last_days", days=90)),
        {"bea", "dan"},
    ),
    (
        "four deep",
        tree(groups=[tree(groups=[tree(groups=[tree(cond("city", "is_set"), cond("phone", "is_not_set"))])])]),
        {"bea", "dan"},
    ),
]


@pytest.fixture(scope="module")
async def world(app: Any) -> dict[str, Any]:
    from models.contacts import AttributeDefinition
    from resolvers.workspaces import create_workspace

    boot = await create_workspace("Segments", "owner@example.com", "correct horse battery")
    ws = boot.workspace.id
    for key, kind in TYPES.items():
        await AttributeDefinition.create(workspace_id=ws, key=key, label=key, type=kind)
    ids = {label: await add_contact(ws, channel_id=boot.channel.id, **person) for label, person in PEOPLE.items()}
    return {"ws": ws, "ids": ids, "rows": await load_rows(ws)}


async def check(world: dict[str, Any], rules: dict[str, Any], expected: set[str]) -> None:
    group = parse(rules, TYPES)
    by_id = {v: k for k, v in world["ids"].items()}
    got = {by_id[i] for i in await run(group, world["ws"], NOW)}
    ref = {by_id[i] for i in reference.select(group, world["rows"], NOW, TYPES)}
    assert (got, ref) == (expected, expected)
    assert {by_id[i] for i in await run(group, world["ws"], NOW, negate=True)} == EVERYONE - expected


def _case_id(rule: dict[str, Any]) -> str:
    op = rule.get("operator") or rule.get("event_count_op")
    arg = rule.get("value", rule.get("values", rule.get("days", rule.get("count", ""))))
    extra = f" {rule['property']} {rule['property_operator']} {rule['property_value']!r}" if "property" in rule else ""
    return f"{rule['field']} {op} {arg!r}{extra}"


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[_case_id(r) for r, _ in CASES])
async def test_each_operator_on_the_database(world: dict[str, Any], rule: dict[str, Any], expected: set[str]) -> None:
    await check(world, tree(rule), expected)


@pytest.mark.parametrize(("rules", "expected"), [c[1:] for c in NESTED], ids=[c[0] for c in NESTED])
async def test_nested_groups_on_the_database(world: dict[str, Any], rules: dict[str, Any], expected: set[str]) -> None:
    await check(world, rules, expected)


# Stored values of the wrong JSON type, and of the right type that read like another
# (texts "true" and "10"): none raises, and only t5 and t6 hold values of the right types.
# `->>` gives 'true', '10', '["pro"]' for t1-t4's values, so a comparison of that text alone
# would match them: this checks the JSON type guard where the compiler needs one.
TRAPS: dict[str, dict[str, Any]] = {
    "t1": {
        "attributes": {"plan": True, "seats": "10", "paying": "true", "renewal": 20260101, "tier": ["gold"]},
        "events": (("trap", T0, {"n": "10", "s": True, "b": "true"}),),
    },
    "t2": {
        "attributes": {"plan": 10, "seats": [10], "paying": 1, "renewal": ["2026-01-01"], "tier": {"gold": "gold"}},
        "events": (("trap", T0, {"n": [10], "s": ["true"], "b": [True]}),),
    },
    "t3": {
        "attributes": {"plan": ["pro"], "seats": {"n": 10}, "paying": [True], "renewal": "2026-01-01x", "tier": True},
        "events": (("trap", T0, {"n": True, "s": 10, "b": 1}),),
    },
    "t4": {
        "attributes": {"plan": {"true": "true"}, "seats": True, "paying": None, "renewal": None, "tier": 5},
        "events": (("trap", T0, {"n": None, "s": {"s": "true"}, "b": None}),),
    },
    "t5": {
        "attributes": {"plan": "true", "seats": 10, "paying": True, "renewal": "2026-01-01", "tier": "gold"},
        "events": (("trap", T0, {"n": 10, "s": "true", "b": True}),),
    },
    "t6": {"attributes": {"plan": "10"}},
}
T5, BOTH, WRONG = {"t5"}, {"t5", "t6"}, {"t1", "t2", "t3", "t4"}


def trap(name: str, operator: str, value: Any) -> dict[str, Any]:
    return cond("event.trap", event_count_op="at_least", count=1, **prop(name, operator, value))


TRAP_CASES: list[tuple[dict[str, Any], set[str]]] = [
    (cond("attribute.plan", "equals", value="true"), T5),
    (cond("attribute.plan", "equals", value="TRUE"), T5),
    (cond("attribute.plan", "equals", value="10"), {"t6"}),
    (cond("attribute.plan", "in", values=["TRUE", "10"]), BOTH),
    (cond("attribute.plan", "in", values=["10", "x"]), {"t6"}),
    (cond("attribute.plan", "contains", value="r"), T5),
    (cond("attribute.plan", "contains", value="1"), {"t6"}),
    (cond("attribute.plan", "starts_with", value="["), set()),
    (cond("attribute.plan", "ends_with", value="}"), set()),
    (cond("attribute.plan", "not_equals", value="x"), BOTH),
    (cond("attribute.plan", "not_in", values=["true"]), {"t6"}),
    (cond("attribute.plan", "not_contains", value="zz"), BOTH),
    (cond("attribute.plan", "is_set"), BOTH),
    (cond("attribute.plan", "is_not_set"), WRONG),
    (cond("attribute.seats", "equals", value=10), T5),
    (cond("attribute.seats", "in", values=[5, 10]), T5),
    (cond("attribute.seats", "greater_or_equal", value=10), T5),
    (cond("attribute.seats", "less_than", value=100), T5),
    (cond("attribute.seats", "between", values=[0, 10]), T5),
    (cond("attribute.seats", "not_equals", value=5), T5),
    (cond("attribute.seats", "not_in", values=[5]), T5),
    (cond("attribute.seats", "is_set"), T5),
    (cond("attribute.seats", "is_not_set"), WRONG | {"t6"}),
    (cond("attribute.paying", "equals", value=True), T5),
    (cond("attribute.paying", "not_equals", value=False), T5),
    (cond("attribute.paying", "is_set"), T5),
    (cond("attribute.renewal", "before", value="2027-01-01"), T5),
    (cond("attribute.renewal", "after", value="2000-01-01"), T5),
    (cond("attribute.renewal", "between", values=["2026-01-01", "2026-01-01"]), T5),
    (cond("attribute.renewal", "more_than_days_ago", days=1), T5),
    (cond("attribute.renewal", "is_set"), T5),
    (cond("attribute.tier", "equals", value="gold"), T5),
    (cond("attribute.tier", "in", values=["gold"]), T5),
    (cond("attribute.tier", "not_equals", value="x"), T5),
    (cond("attribute.tier", "not_in", values=["x"]), T5),
    (cond("attribute.tier", "is_set"), T5),
    (trap("n", "equals", 10), T5),
    (trap("n", "greater_than", 5), T5),
    (trap("n", "less_than", 50), T5),
    (trap("n", "not_equals", 1), T5),
    (trap("s", "equals", "TRUE"), T5),
    (trap("s", "contains", "r"), T5),
    (trap("s", "not_equals", "x"), T5),
    (trap("b", "equals", True), T5),
    (trap("b", "not_equals", False), T5),
]


@pytest.fixture(scope="module")
async def traps(app: Any) -> dict[str, Any]:
    from models.contacts import AttributeDefinition
    from resolvers.workspaces import create_workspace

    boot = await create_workspace("Traps", "owner@example.com", "correct horse battery")
    ws = boot.workspace.id
    for key, kind in TYPES.items():
        await AttributeDefinition.create(workspace_id=ws, key=key, label=key, type=kind)
    ids = {
        label: await add_contact(ws, channel_id=boot.channel.id, created_at=NOW, last_seen_at=NOW, **person)
        for label, person in TRAPS.items()
    }
    return {"ws": ws, "ids": ids, "rows": await load_rows(ws)}


@pytest.mark.parametrize(("rule", "expected"), TRAP_CASES, ids=[_case_id(r) for r, _ in TRAP_CASES])
async def test_wrongly_typed_values_never_match(
    traps: dict[str, Any], rule: dict[str, Any], expected: set[str]
) -> None:
    group = parse(tree(rule), TYPES)
    by_id = {v: k for k, v in traps["ids"].items()}
    got = {by_id[i] for i in await run(group, traps["ws"], NOW)}
    ref = {by_id[i] for i in reference.select(group, traps["rows"], NOW, TYPES)}
    assert (got, ref) == (expected, expected)
    assert {by_id[i] for i in await run(group, traps["ws"], NOW, negate=True)} == set(TRAPS) - expected


def test_the_cases_cover_every_operator_of_every_type() -> None:
    seen: set[tuple[str, str]] = set()
    for rule, _ in CASES:
        c = parse(tree(rule), TYPES).items[0]
        assert isinstance(c, Condition)
        seen.add((c.field if c.field == "last_conversation_at" else c.kind, c.operator))
        if c.property_operator:
            seen.add(("property", c.property_operator))
    from domain.segments import EVENT_COUNT_OPS, OPERATORS, PROPERTY_OPERATORS

    wanted = {(kind, op) for kind, ops in OPERATORS.items() for op in ops}
    wanted |= {("event", op) for op in EVENT_COUNT_OPS} | {("property", op) for op in PROPERTY_OPERATORS}
    wanted |= {("conversation_count", op) for op in EVENT_COUNT_OPS}
    wanted |= {("last_conversation_at", op) for op in OPERATORS["datetime"]}
    assert wanted - seen == set()


# -- random rules against the reference ------------------------------------------------------

# Texts with letters compare folded; letterless ones ("%", "1", "é") are containment tests on
# PostgreSQL; "1", "true", "[a" are what ->> gives for a number, a boolean, an array.
WORDS = [
    "a",
    "A",
    "ab",
    "aB",
    "Ab",
    "b",
    "%",
    "_",
    "a%",
    "b_",
    "\\",
    "é",
    "É",
    "éa",
    "Éa",
    "ba",
    "a b",
    "1",
    "true",
    "TRUE",
    "[a",
]
STORED_WORDS = [*WORDS, ""]  # an empty text is a value, too
NUMBERS = [-1, 0, 0.1, 0.5, 1, 2, 2.2, 10]
DAY_OFFSETS = [-31, -8, -7, -6, -1, 0, 1]
DAYS = [1, 7, 30]
# The random tests' now is a whole second, so the day cutoffs are too, and every stored
# instant sits on or a microsecond either side of a cutoff or a UTC midnight.
RNOW = NOW.replace(microsecond=0)
MOMENTS = sorted(
    {
        t
        for k in DAYS
        for base in (RNOW - timedelta(days=k), datetime.combine((RNOW - timedelta(days=k)).date(), time(0), tzinfo=UTC))
        for t in (base, base - timedelta(microseconds=1), base + timedelta(microseconds=1))
    }
)
CUTOFFS = [RNOW - timedelta(days=k) for k in DAYS]
TAGS = ["a", "b", "c d"]
EVENT_NAMES = ["buy", "view"]
CONVERSATION_STATUSES = ["open", "snoozed", "resolved"]
TEXT_COLUMNS = {"name": 200, "email": 254, "country": 2, "city": 120, "os": 64}


def random_contact(rnd: random.Random) -> dict[str, Any]:
    def maybe(values: list[Any], none: float = 0.3) -> Any:
        return None if rnd.random() < none else rnd.choice(values)

    person: dict[str, Any] = {f: maybe([w for w in STORED_WORDS if len(w) <= n]) for f, n in TEXT_COLUMNS.items()}
    person.update(
        vip=rnd.random() < 0.5,
        blocked=rnd.random() < 0.3,
        gdpr_consent=rnd.random() < 0.5,
        sms_consent=rnd.choice(["subscribed", "unsubscribed", "never"]),
        first_seen_at=maybe(MOMENTS),
        last_seen_at=rnd.choice(MOMENTS),
        created_at=rnd.choice(MOMENTS),
    )
    # Besides values of the right type: other JSON types, arrays and objects holding a
    # matching value, and texts that read like a value of the right type.
    candidates: dict[str, list[Any]] = {
        "plan": [*STORED_WORDS, 1, True, None, ["a"], {"a": "a"}],
        "seats": [*NUMBERS, "1", True, None, [1], {"n": 1}],
        "paying": [True, False, "true", 1, None, [True]],
        "renewal": [
            *(day(k).isoformat() for k in DAY_OFFSETS),
            "soon",
            "2026-1-1",
            20260101,
            None,
            [day(0).isoformat()],
        ],
        "tier": ["gold", "Gold", "silver", 5, None, ["gold"], {"gold": "gold"}],
    }
    person["attributes"] = {k: rnd.choice(v) for k, v in candidates.items() if rnd.random() < 0.8}
    person["tags"] = tuple(t for t in TAGS if rnd.random() < 0.4)
    events = []
    for _ in range(rnd.choice([0, 0, 1, 2, 3, 4])):
        properties = {
            k: rnd.choice(v)
            for k, v in {"n": [*NUMBERS, "1", True], "s": WORDS, "f": [True, False]}.items()
            if rnd.random() < 0.6
        }
        at = rnd.choice(CUTOFFS if rnd.random() < 0.5 else MOMENTS)  # often exactly on a `days` cutoff
        events.append((rnd.choice(EVENT_NAMES), at, properties))
    person["events"] = tuple(events)
    person["conversations"] = tuple(
        (rnd.choice(CONVERSATION_STATUSES), rnd.choice(CUTOFFS if rnd.random() < 0.5 else MOMENTS))
        for _ in range(rnd.choice([0, 0, 1, 2, 3]))
    )
    return person


@pytest.fixture
async def dataset(tenant: Any) -> dict[str, Any]:
    """Random contacts, generated once per test function (seed in the failure message)."""
    from models.contacts import AttributeDefinition

    seed = random.randrange(2**32)
    rnd = random.Random(seed)
    ws = tenant.workspace.id
    for key, kind in TYPES.items():
        await AttributeDefinition.create(workspace_id=ws, key=key, label=key, type=kind)
    for _ in range(24):
        await add_contact(ws, channel_id=tenant.channel.id, **random_contact(rnd))
    rows = await load_rows(ws)
    return {"ws": ws, "rows": rows, "all": {r.id for r in rows}, "seed": seed}


def st_condition() -> st.SearchStrategy[dict[str, Any]]:
    words = st.sampled_from(WORDS)
    numbers = st.sampled_from(NUMBERS)
    dates = st.sampled_from([day(k).isoformat() for k in DAY_OFFSETS])
    moments = st.one_of(st.sampled_from(MOMENTS).map(lambda t: t.isoformat()), dates)
    days = st.sampled_from(DAYS)

    def ordered(values: st.SearchStrategy[Any], key: Any = None) -> st.SearchStrategy[list[Any]]:
        return st.lists(values, min_size=2, max_size=2).map(lambda pair: sorted(pair, key=key))

    def typed(
        fields: list[str], ops: dict[str, st.SearchStrategy[dict[str, Any]]]
    ) -> list[st.SearchStrategy[dict[str, Any]]]:
        """One strategy per (field, operator), so that all are drawn about equally often."""
        return [
            ops[op].map(lambda extra, f=f, op=op: {"field": f, "operator": op, **extra})
            for f in fields
            for op in sorted(ops)
        ]

    none = st.just({})
    one = {"value": words}
    text_ops = {
        op: st.fixed_dictionaries(one)
        for op in ("equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with")
    }
    text_ops |= {
        "in": st.fixed_dictionaries({"values": st.lists(words, min_size=1, max_size=3)}),
        "not_in": st.fixed_dictionaries({"values": st.lists(words, min_size=1, max_size=3)}),
        "is_set": none,
        "is_not_set": none,
    }
    number_ops = {
        op: st.fixed_dictionaries({"value": numbers})
        for op in ("equals", "not_equals", "greater_than", "greater_or_equal", "less_than", "less_or_equal")
    }
    number_ops |= {
        "between": st.fixed_dictionaries({"values": ordered(numbers)}),
        "in": st.fixed_dictionaries({"values": st.lists(numbers, min_size=1, max_size=3)}),
        "not_in": st.fixed_dictionaries({"values": st.lists(numbers, min_size=1, max_size=3)}),
        "is_set": none,
        "is_not_set": none,
    }
    bool_ops = {
        "equals": st.fixed_dictionaries({"value": st.booleans()}),
        "not_equals": st.fixed_dictionaries({"value": st.booleans()}),
        "is_set": none,
        "is_not_set": none,
    }
    recency = {
        "within_last_days": st.fixed_dictionaries({"days": days}),
        "more_than_days_ago": st.fixed_dictionaries({"days": days}),
        "is_set": none,
        "is_not_set": none,
    }
    date_ops = {
        "before": st.fixed_dictionaries({"value": dates}),
        "after": st.fixed_dictionaries({"value": dates}),
        "between": st.fixed_dictionaries({"values": ordered(dates)}),
        **recency,
    }

    def moment_key(v: str) -> datetime:
        t = datetime.fromisoformat(v)
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    datetime_ops = {
        "before": st.fixed_dictionaries({"value": moments}),
        "after": st.fixed_dictionaries({"value": moments}),
        "between": st.fixed_dictionaries(
            {"values": ordered(st.sampled_from(MOMENTS).map(lambda t: t.isoformat()), key=moment_key)}
        ),
        **recency,
    }
    choice_ops = lambda values: {
        "equals": st.fixed_dictionaries({"value": values}),
        "not_equals": st.fixed_dictionaries({"value": values}),
        "in": st.fixed_dictionaries({"values": st.lists(values, min_size=1, max_size=3)}),
        "not_in": st.fixed_dictionaries({"values": st.lists(values, min_size=1, max_size=3)}),
        "is_set": none,
        "is_not_set": none,
    }
    tag_ops = choice_ops(st.sampled_from(["a", "B", "c  d", "z"]))
    enum_ops = choice_ops(st.sampled_from(["subscribed", "unsubscribed", "never"]))
    list_ops = choice_ops(st.sampled_from(["gold", "Gold", "silver"]))

    prop = st.one_of(
        st.just({}),
        st.fixed_dictionaries(
            {
                "property": st.just("n"),
                "property_operator": st.sampled_from(["equals", "not_equals", "greater_than", "less_than"]),
                "property_value": numbers,
            }
        ),
        st.fixed_dictionaries(
            {
                "property": st.just("s"),
                "property_operator": st.sampled_from(["equals", "not_equals", "contains"]),
                "property_value": words,
            }
        ),
        st.fixed_dictionaries(
            {
                "property": st.sampled_from(["f", "n"]),
                "property_operator": st.sampled_from(["equals", "not_equals"]),
                "property_value": st.booleans(),
            }
        ),
    )
    events = st.builds(
        lambda name, op, n, d, p: {
            "field": f"event.{name}",
            "event_count_op": op,
            "count": n,
            **({"days": d} if d else {}),
            **p,
        },
        st.sampled_from([*EVENT_NAMES, "never_happens"]),
        st.sampled_from(["at_least", "at_most", "exactly"]),
        st.integers(0, 3),
        st.one_of(st.none(), days),
        prop,
    )
    conversation_counts = st.builds(
        lambda op, n, d, status: {
            "field": "conversation_count",
            "event_count_op": op,
            "count": n,
            **({"days": d} if d else {}),
            **({"status": status} if status else {}),
        },
        st.sampled_from(["at_least", "at_most", "exactly"]),
        st.integers(0, 3),
        st.one_of(st.none(), days),
        st.one_of(st.none(), st.sampled_from(CONVERSATION_STATUSES)),
    )
    pairs = [
        *typed(["name", "email", "country", "phone"], text_ops),
        *typed(["attribute.plan"], text_ops),
        *typed(["attribute.seats"], number_ops),
        *typed(["attribute.paying", "vip", "gdpr_consent"], bool_ops),
        *typed(["attribute.renewal"], date_ops),
        *typed(["first_seen_at", "last_seen_at", "created_at", "last_conversation_at"], datetime_ops),
        *typed(["attribute.tier"], list_ops),
        *typed(["sms_consent"], enum_ops),
        *typed(["tag"], tag_ops),
        *[events] * 15,
        *[conversation_counts] * 6,
    ]
    return st.integers(0, len(pairs) - 1).flatmap(lambda i: pairs[i])


CONDITION = st_condition()


@st.composite
def st_tree(draw: st.DrawFn, depth: int = 1) -> dict[str, Any]:
    groups = draw(st.lists(st_tree(depth + 1), max_size=2)) if depth < 4 else []
    conditions = draw(st.lists(CONDITION, min_size=0 if groups or depth == 1 else 1, max_size=3))
    return {"match": draw(st.sampled_from(["all", "any"])), "conditions": conditions, "groups": groups}


async def compare_with_reference(dataset: dict[str, Any], rules: dict[str, Any]) -> None:
    group = parse(rules, TYPES)
    expected = reference.select(group, dataset["rows"], RNOW, TYPES)
    got = await run(group, dataset["ws"], RNOW)
    context = f"seed={dataset['seed']} rules={rules!r}"
    assert got == expected, context
    assert await run(group, dataset["ws"], RNOW, negate=True) == dataset["all"] - expected, context


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.lists(CONDITION, min_size=10, max_size=10))
async def test_random_conditions_match_the_reference(dataset: dict[str, Any], rules: list[dict[str, Any]]) -> None:
    for rule in rules:  # each alone: 600 single conditions per run
        await compare_with_reference(dataset, tree(rule))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st_tree())
async def test_random_rule_trees_match_the_reference(dataset: dict[str, Any], rules: dict[str, Any]) -> None:
    await compare_with_reference(dataset, rules)
