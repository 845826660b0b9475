"""A plain-Python reference for segment rules, written from the semantics documented in
domain/segments.py and sharing none of its SQL machinery: the compiled SQL must select
exactly the contacts `matches` accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from domain.segments import Condition, Group

TEXT_FIELDS = {
    "name",
    "email",
    "phone",
    "external_id",
    "country",
    "city",
    "time_zone",
    "locale",
    "browser_language",
    "os",
    "browser",
    "platform",
    "referrer",
}
DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass
class Event:
    name: str
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass
class Conversation:
    status: str
    created_at: datetime


@dataclass
class Row:
    """A contact as loaded from the database: built-in columns in `fields`."""

    id: int
    fields: dict[str, Any]
    attributes: dict[str, Any]
    tags: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)


def lower(text: str) -> str:
    """ASCII-only case folding, written out."""
    return "".join(chr(ord(ch) + 32) if "A" <= ch <= "Z" else ch for ch in text)


def matches(group: Group, row: Row, now: datetime, attribute_types: dict[str, str]) -> bool:
    if not group.items:
        return True
    results = [
        matches(item, row, now, attribute_types)
        if isinstance(item, Group)
        else condition(item, row, now, attribute_types)
        for item in group.items
    ]
    return all(results) if group.match == "all" else any(results)


def select(group: Group, rows: list[Row], now: datetime, attribute_types: dict[str, str]) -> set[int]:
    return {row.id for row in rows if matches(group, row, now, attribute_types)}


def typed(raw: Any, kind: str) -> Any:
    """The stored value if it has the type `kind` wants, else None (missing)."""
    if kind in ("text", "list"):
        return raw if isinstance(raw, str) else None
    if kind == "number":
        return raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if kind == "boolean":
        return raw if isinstance(raw, bool) else None
    if kind == "date":
        return raw if isinstance(raw, str) and DATE_SHAPE.fullmatch(raw) else None
    raise AssertionError(kind)


def condition(c: Condition, row: Row, now: datetime, attribute_types: dict[str, str]) -> bool:
    op = c.operator
    if c.field == "tag":
        wanted = {c.value} if op in ("equals", "not_equals") else set(c.values)
        found = bool(row.tags) if op in ("is_set", "is_not_set") else bool(row.tags & wanted)
        return found if op in ("equals", "in", "is_set") else not found
    if c.field.startswith("event."):
        return event(c, row, now)
    if c.field == "conversation_count":
        return conversation_count(c, row, now)

    if c.field.startswith("attribute."):
        key = c.field.removeprefix("attribute.")
        kind = attribute_types[key]
        value = typed(row.attributes.get(key), kind)
    elif c.field == "last_conversation_at":
        value = max((v.created_at for v in row.conversations), default=None)
        kind = "datetime"
    else:
        value = row.fields[c.field]
        kind = (
            "text"
            if c.field in TEXT_FIELDS
            else "enum"
            if c.field == "sms_consent"
            else "boolean"
            if isinstance(value, bool) or c.field in ("vip", "blocked", "gdpr_consent")
            else "datetime"
        )

    if op == "is_set":
        return value is not None
    if op == "is_not_set":
        return value is None
    if value is None:
        return False  # missing values match nothing else, negative operators included

    if kind == "text":
        v = lower(value)
        x = lower(c.value) if c.value is not None else None
        xs = [lower(x) for x in c.values]
        return {
            "equals": lambda: v == x,
            "not_equals": lambda: v != x,
            "contains": lambda: x in v,
            "not_contains": lambda: x not in v,
            "starts_with": lambda: v.startswith(x),
            "ends_with": lambda: v.endswith(x),
            "in": lambda: v in xs,
            "not_in": lambda: v not in xs,
        }[op]()
    if kind in ("number", "boolean", "list", "enum"):
        return compare(value, op, c.value, c.values)
    if kind == "date":  # YYYY-MM-DD text, compared as text
        if op == "before":
            return bool(value < c.value.isoformat())
        if op == "after":
            return bool(value > c.value.isoformat())
        if op == "between":
            return bool(c.values[0].isoformat() <= value <= c.values[1].isoformat())
        cutoff = (now - timedelta(days=c.days or 0)).astimezone(UTC).date().isoformat()
        return bool(value >= cutoff) if op == "within_last_days" else bool(value < cutoff)
    if kind == "datetime":
        if op == "before":
            return bool(value < first_instant(c.value))
        if op == "after":
            return bool(value > last_instant(c.value))
        if op == "between":
            return bool(first_instant(c.values[0]) <= value <= last_instant(c.values[1]))
        cutoff = now - timedelta(days=c.days or 0)
        return bool(value >= cutoff) if op == "within_last_days" else bool(value < cutoff)
    raise AssertionError(kind)


def compare(value: Any, op: str, x: Any, xs: tuple[Any, ...]) -> bool:
    if op == "equals":
        return bool(value == x)
    if op == "not_equals":
        return bool(value != x)
    if op == "greater_than":
        return bool(value > x)
    if op == "greater_or_equal":
        return bool(value >= x)
    if op == "less_than":
        return bool(value < x)
    if op == "less_or_equal":
        return bool(value <= x)
    if op == "between":
        return bool(xs[0] <= value <= xs[1])
    if op == "in":
        return value in xs
    if op == "not_in":
        return value not in xs
    raise AssertionError(op)


def first_instant(bound: date | datetime) -> datetime:
    if isinstance(bound, datetime):
        return bound
    return datetime.combine(bound, time(0), tzinfo=UTC)


def last_instant(bound: date | datetime) -> datetime:
    if isinstance(bound, datetime):
        return bound
    return datetime.combine(bound, time(23, 59, 59, 999999), tzinfo=UTC)


def event(c: Condition, row: Row, now: datetime) -> bool:
    name = c.field.removeprefix("event.")
    n = 0
    for e in row.events:
        if e.name != name:
            continue
        if c.days is not None and e.occurred_at < now - timedelta(days=c.days):
            continue
        if c.property is not None and not property_matches(c, e.properties.get(c.property)):
            continue
        n += 1
    assert c.count is not None
    return {"at_least": n >= c.count, "at_most": n <= c.count, "exactly": n == c.count}[c.event_count_op or ""]


def conversation_count(c: Condition, row: Row, now: datetime) -> bool:
    n = sum(
        1
        for v in row.conversations
        if (c.status is None or v.status == c.status)
        and (c.days is None or v.created_at >= now - timedelta(days=c.days))
    )
    assert c.count is not None
    return {"at_least": n >= c.count, "at_most": n <= c.count, "exactly": n == c.count}[c.event_count_op or ""]


def property_matches(c: Condition, raw: Any) -> bool:
    x, op = c.property_value, c.property_operator
    if isinstance(x, bool):
        value = typed(raw, "boolean")
    elif isinstance(x, str):
        value = typed(raw, "text")
    else:
        value = typed(raw, "number")
    if value is None:
        return False
    if isinstance(x, str):
        v, x = lower(value), lower(x)
        return {"equals": v == x, "not_equals": v != x, "contains": x in v}[op or ""]
    return compare(value, op or "", x, ())
