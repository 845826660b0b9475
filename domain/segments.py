"""Segment rules: a rule tree as plain data, checked by `parse`, compiled to one SQL boolean
expression over the contacts table (alias `c`) by `compile_where`, for SQLite and PostgreSQL.

    {"match": "all" | "any",
     "conditions": [{"field": "country", "operator": "equals", "value": "PT"}, ...],
     "groups": [<tree>, ...]}

Fields
    Built-in text columns (name, email, phone, external_id, country, city, time_zone,
    locale, browser_language, os, browser, platform, referrer); booleans (vip, blocked,
    gdpr_consent); the enum sms_consent (subscribed, unsubscribed, never); datetimes
    (first_seen_at, last_seen_at, created_at); `tag`; `attribute.<key>`, typed by its
    definition (text, number, boolean, date, list); `event.<name>`, counted with
    `event_count_op` (at_least, at_most, exactly) and `count`, optionally within the last
    `days` days and optionally only events whose `property` satisfies `property_operator`
    (equals, not_equals, greater_than, less_than, contains) with `property_value`;
    `conversation_count`, counted the same way (`event_count_op`, `count`, optional
    `days`), optionally only conversations with a `status` (open, snoozed, resolved);
    `last_conversation_at`, a datetime: when the contact's newest conversation started.

Operators take `value` (one value), `values` (in and not_in: 1 to 100 values; between:
[low, high], both inclusive), `days` (within_last_days, more_than_days_ago: 1 to 36500) or
nothing (is_set, is_not_set). A key that does not apply to the operator is an error.

Semantics
    * Missing values. A contact whose value is missing matches only `is_not_set`: every
      other operator, the negative ones included (not_equals, not_contains, not_in), does
      not match it. "country is not PT" leaves out contacts whose country is unknown.
      A custom attribute counts as missing when it is absent, JSON null, or stored with a
      JSON type other than its definition's (a number where text is expected, etc.); a
      date attribute must also look like YYYY-MM-DD. So `is_set` means "has a usable
      value". An empty text is a value (it is set).
    * Text (built-in text fields and text attributes) compares case-insensitively, folding
      ASCII letters only (A-Z), identically on both databases: "ÉLODIE" equals "Élodie"
      but "élodie" does not. contains / starts_with / ends_with take the value literally
      (% and _ are not wildcards). List attributes and sms_consent compare exactly.
    * Numbers compare numerically, exactly (PostgreSQL numeric; never raises on a stored
      value that is not a number: that value is missing).
    * Dates and datetimes. `before`/`after`/`between` take ISO dates (YYYY-MM-DD) or, for
      the datetime fields, datetimes too (a datetime without an offset is UTC). A date on
      a datetime field is the whole UTC day: before 2026-03-01 is before its first
      instant, after 2026-03-01 is from the next day on, between takes both days whole.
      `before`/`after` are strict. `within_last_days N` is "at or after now - N days"
      (later, even future, values included); `more_than_days_ago N` is "before now - N
      days"; the two are complementary on contacts with a value. Date attributes compare
      as YYYY-MM-DD text against the UTC date of now - N days.
    * Tags: equals "has the tag", not_equals "has not" (a contact with no tags has not),
      in "has any of", not_in "has none of", is_set "has a tag", is_not_set "has none".
      Tag names are normalised as tags are stored (spaces collapsed, lower case).
    * Events: the contact's events with exactly that name (case-sensitive), in the last
      `days` if given, and whose property matches if given, are counted. A property
      condition is typed by its value: text compares case-insensitively with text
      properties only, numbers with number properties, booleans with boolean properties;
      a property that is absent or of another type does not match (not_equals included).
    * Conversations: conversation_count counts the contact's conversations, those created
      in the last `days` if given (at or after now - days, as within_last_days), with
      that status (now) if given. last_conversation_at is the largest created_at of the
      contact's conversations (not their last message: a conversation that started long
      ago and is still busy does not make it recent), missing for a contact without
      conversations; it takes the datetime operators.
    * An empty root group matches every contact; nested groups must not be empty.
    * The compiled expression is never NULL: it is TRUE or FALSE for every contact, so it
      can safely be negated or combined.

Limits: groups nest at most 4 deep (the root group counts), at most 50 conditions in all.

Custom attributes on PostgreSQL (`_Compiler.pg_json`): equality with numbers, booleans,
list values and letterless texts is `attributes @> '{"key": value}'`, which the GIN index
of migration 0004 serves; numbers otherwise are strict jsonpath comparisons (NULL, never an
error, on a value of another type); texts and dates compare `attributes ->> 'key'` and
check the JSON type only where that text could have come from a non-string. None of them
raises on a wrongly-typed stored value, and each costs about what the unguarded
hand-written `(attributes ->> 'seats')::numeric >= 10` does (BENCHMARKS.md).

    >>> from datetime import UTC, datetime
    >>> group = parse({"match": "any", "conditions": [
    ...     {"field": "country", "operator": "equals", "value": "PT"},
    ...     {"field": "attribute.seats", "operator": "greater_than", "value": 10}]}, {"seats": "number"})
    >>> sql, params = compile_where(group, "postgres", now=datetime(2026, 1, 1, tzinfo=UTC), param_start=2)
    >>> print(sql)  # doctest: +NORMALIZE_WHITESPACE
    ((c.country IS NOT NULL AND lower((c.country) COLLATE "C") = $2::text)
     OR COALESCE(c.attributes @@ $3::jsonpath, FALSE))
    >>> params
    ['pt', 'strict $."seats" > 10']
    >>> vip_contains = {"match": "all", "conditions": [{"field": "vip", "operator": "contains", "value": "x"}]}
    >>> parse(vip_contains, {})  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    domain.segments.RuleError: Condition 1 (vip contains): contains does not apply to a boolean field;
    use equals, not_equals, is_set, is_not_set.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from domain.contact_fields import ATTRIBUTE_KEY, type_name

MAX_DEPTH = 4
MAX_CONDITIONS = 50
MAX_VALUES = 100
MAX_TEXT = 1000
MAX_DAYS = 36500
MAX_COUNT = 1_000_000
MAX_INT = 2**63 - 1
# Dates and datetimes for the datetime fields (four-digit years keep SQLite's text in order).
MIN_YEAR, MAX_YEAR = 1000, 9998

TEXT_FIELDS = (
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
)
BOOLEAN_FIELDS = ("vip", "blocked", "gdpr_consent")
DATETIME_FIELDS = ("first_seen_at", "last_seen_at", "created_at")
SMS_CONSENT = ("subscribed", "unsubscribed", "never")
# Built-in columns that are never NULL.
NOT_NULL = frozenset({"vip", "blocked", "gdpr_consent", "sms_consent", "last_seen_at", "created_at"})

_PRESENCE = ("is_set", "is_not_set")
_TEXT_OPS = ("equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", *_PRESENCE, "in", "not_in")
_NUMBER_OPS = (
    "equals",
    "not_equals",
    "greater_than",
    "greater_or_equal",
    "less_than",
    "less_or_equal",
    "between",
    *_PRESENCE,
    "in",
    "not_in",
)
OPERATORS: dict[str, tuple[str, ...]] = {
    "text": _TEXT_OPS,
    "number": _NUMBER_OPS,
    "boolean": ("equals", "not_equals", *_PRESENCE),
    "date": ("before", "after", "between", "within_last_days", "more_than_days_ago", *_PRESENCE),
    "datetime": ("before", "after", "between", "within_last_days", "more_than_days_ago", *_PRESENCE),
    "list": ("equals", "not_equals", "in", "not_in", *_PRESENCE),
    "enum": ("equals", "not_equals", "in", "not_in", *_PRESENCE),
    "tag": ("equals", "not_equals", "in", "not_in", *_PRESENCE),
}
EVENT_COUNT_OPS = ("at_least", "at_most", "exactly")
CONVERSATION_STATUSES = ("open", "snoozed", "resolved")
PROPERTY_OPERATORS = ("equals", "not_equals", "greater_than", "less_than", "contains")
ATTRIBUTE_TYPES = ("text", "number", "boolean", "date", "list")

_VALUE_OPS = frozenset(
    {
        "equals",
        "not_equals",
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "greater_than",
        "greater_or_equal",
        "less_than",
        "less_or_equal",
        "before",
        "after",
    }
)
_VALUES_OPS = frozenset({"in", "not_in", "between"})
_DAYS_OPS = frozenset({"within_last_days", "more_than_days_ago"})

# As resolvers.contacts.EVENT_NAME: what an event may be called.
EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,119}$")
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # fullmatch

_TREE_KEYS = frozenset({"match", "conditions", "groups"})
_EVENT_KEYS = ("event_count_op", "count", "property", "property_operator", "property_value")
_COUNT_KEYS = ("event_count_op", "count", "status")  # conversation_count
_CONDITION_KEYS = frozenset({"field", "operator", "value", "values", "days", *_EVENT_KEYS, *_COUNT_KEYS})

_KIND_NAMES = {
    "text": "a text",
    "number": "a number",
    "boolean": "a boolean",
    "date": "a date",
    "datetime": "a date and time",
    "list": "a list",
    "enum": "an enum",
    "tag": "the tag",
}

# Conversation fields: how many conversations a contact has, and when the newest started.
CONVERSATION_COUNT = "conversation_count"
LAST_CONVERSATION_AT = "last_conversation_at"
_APPLIES_TO = {
    "event_count_op": f"event.<name> and {CONVERSATION_COUNT}",
    "count": f"event.<name> and {CONVERSATION_COUNT}",
    "status": CONVERSATION_COUNT,
}


class RuleError(ValueError):
    """A rule tree that cannot be compiled. `path` locates the offending key in the tree,
    e.g. ["groups", "0", "conditions", "1", "value"]; `code` is one of UNKNOWN_FIELD,
    INVALID_OPERATOR, INVALID_VALUE, TOO_DEEP, TOO_MANY_CONDITIONS."""

    def __init__(self, message: str, path: list[str], code: str) -> None:
        super().__init__(message)
        self.path = path
        self.code = code


@dataclass(frozen=True)
class Condition:
    """One checked condition. Values are normalised: tag names as stored, sms_consent in
    lower case, dates as `date`, datetimes as aware UTC `datetime`. For events and
    conversation_count, `operator` repeats `event_count_op`. `kind` is the field's type:
    text, number, boolean, date, datetime, list, enum, tag, event or conversation_count
    (last_conversation_at is a datetime)."""

    field: str
    operator: str
    value: Any = None
    values: tuple[Any, ...] = ()
    days: int | None = None
    event_count_op: str | None = None
    count: int | None = None
    property: str | None = None
    property_operator: str | None = None
    property_value: Any = None
    status: str | None = None
    kind: str = ""


@dataclass(frozen=True)
class Group:
    match: str  # "all" | "any"
    items: tuple[Condition | Group, ...]

    def fields(self) -> set[str]:
        """Every field a condition of this group or its groups tests."""
        found: set[str] = set()
        for item in self.items:
            found |= item.fields() if isinstance(item, Group) else {item.field}
        return found

    @property
    def counts_conversations(self) -> bool:
        """Whether membership can change when only a contact's conversations do."""
        return bool(self.fields() & {CONVERSATION_COUNT, LAST_CONVERSATION_AT})


# -- parsing ---------------------------------------------------------------------------------


class _Bad(Exception):
    """A bad condition: `key` is the path of the bad part inside it (["values", "1"])."""

    def __init__(self, key: str | list[str] | None, message: str, code: str = "INVALID_VALUE") -> None:
        super().__init__(message)
        self.key = [] if key is None else [key] if isinstance(key, str) else key
        self.message = message
        self.code = code


def parse(tree: dict[str, Any], attribute_types: dict[str, str]) -> Group:
    """The checked rule tree, or RuleError naming the first bad condition (depth first:
    a group's conditions, then its groups)."""
    return _Parser(attribute_types).group(tree, [], 1)


class _Parser:
    def __init__(self, attribute_types: dict[str, str]) -> None:
        self.types = attribute_types
        self.count = 0

    def group(self, tree: Any, path: list[str], depth: int) -> Group:
        where = _group_name(path)
        if depth > MAX_DEPTH:
            raise RuleError(f"{where}: groups nest at most {MAX_DEPTH} deep.", path, "TOO_DEEP")
        if not isinstance(tree, dict):
            raise RuleError(f"{where}: expected an object with match, conditions and groups.", path, "INVALID_VALUE")
        for key in tree:
            if key not in _TREE_KEYS:
                raise RuleError(f"{where}: unknown key {key!r}.", [*path, str(key)], "INVALID_VALUE")
        match = tree.get("match")
        if match not in ("all", "any"):
            raise RuleError(f'{where}: match is "all" or "any".', [*path, "match"], "INVALID_VALUE")
        conditions = _list(tree.get("conditions"), [*path, "conditions"], where)
        groups = _list(tree.get("groups"), [*path, "groups"], where)
        if depth > 1 and not conditions and not groups:
            raise RuleError(f"{where}: a nested group needs at least one condition.", path, "INVALID_VALUE")
        items: list[Condition | Group] = []
        for i, raw in enumerate(conditions):
            cpath = [*path, "conditions", str(i)]
            self.count += 1
            if self.count > MAX_CONDITIONS:
                raise RuleError(
                    f"{_condition_name(cpath, raw)}: at most {MAX_CONDITIONS} conditions in all.",
                    cpath,
                    "TOO_MANY_CONDITIONS",
                )
            try:
                items.append(self.condition(raw))
            except _Bad as bad:
                raise RuleError(f"{_condition_name(cpath, raw)}: {bad.message}", [*cpath, *bad.key], bad.code) from None
        for j, sub in enumerate(groups):
            items.append(self.group(sub, [*path, "groups", str(j)], depth + 1))
        return Group(match=match, items=tuple(items))

    def condition(self, raw: Any) -> Condition:
        if not isinstance(raw, dict):
            raise _Bad(None, "expected an object with field and operator.")
        for key in raw:
            if key not in _CONDITION_KEYS:
                raise _Bad(str(key), f"unknown key {key!r}.")
        field = raw.get("field")
        if not isinstance(field, str) or not field:
            raise _Bad("field", "field is required.", "UNKNOWN_FIELD")
        kind = self.kind(field)
        if kind == "event":
            if raw.get("status") is not None:
                raise _Bad("status", f"status applies to {CONVERSATION_COUNT} only.")
            return _event_condition(raw, field)
        if kind == CONVERSATION_COUNT:
            return _conversation_count_condition(raw)
        for key in (*_EVENT_KEYS, "status"):
            if raw.get(key) is not None:
                raise _Bad(key, f"{key} applies to {_APPLIES_TO.get(key, 'event.<name> fields')} only.")
        operator = raw.get("operator")
        allowed = OPERATORS[kind]
        if operator not in allowed:
            shown = operator if isinstance(operator, str) else "the operator"
            verb = "is required" if operator is None else f"does not apply to {_KIND_NAMES[kind]} field"
            raise _Bad(
                "operator",
                f"{'operator' if operator is None else shown} {verb}; use {', '.join(allowed)}.",
                "INVALID_OPERATOR",
            )
        value, values, days = raw.get("value"), raw.get("values"), raw.get("days")
        if values is not None and not isinstance(values, list | tuple):
            raise _Bad("values", "values must be a list.")
        values = list(values or [])
        if operator not in _VALUE_OPS and value is not None:
            raise _Bad("value", f"value does not apply to {operator}.")
        if operator not in _VALUES_OPS and values:
            raise _Bad("values", f"values do not apply to {operator}.")
        if operator not in _DAYS_OPS and days is not None:
            raise _Bad("days", f"days do not apply to {operator}.")
        check = _CHECKS[kind]
        out_value: Any = None
        out_values: tuple[Any, ...] = ()
        out_days: int | None = None
        if operator in _VALUE_OPS:
            if value is None:
                raise _Bad("value", f"{operator} needs a value.")
            out_value = _checked(check, value, ["value"])
        elif operator == "between":
            if len(values) != 2:
                raise _Bad("values", "between needs values [low, high].")
            low, high = (_checked(check, v, ["values", str(i)]) for i, v in enumerate(values))
            if _bound_key(low, start=True) > _bound_key(high, start=False):
                raise _Bad("values", "between needs low <= high.")
            out_values = (low, high)
        elif operator in ("in", "not_in"):
            if not 1 <= len(values) <= MAX_VALUES:
                raise _Bad("values", f"{operator} needs 1 to {MAX_VALUES} values.")
            out_values = tuple(_checked(check, v, ["values", str(i)]) for i, v in enumerate(values))
        elif operator in _DAYS_OPS:
            out_days = _days(days, required=True)
        return Condition(field=field, operator=operator, value=out_value, values=out_values, days=out_days, kind=kind)

    def kind(self, field: str) -> str:
        if field in TEXT_FIELDS:
            return "text"
        if field in BOOLEAN_FIELDS:
            return "boolean"
        if field in DATETIME_FIELDS:
            return "datetime"
        if field == "sms_consent":
            return "enum"
        if field == "tag":
            return "tag"
        if field == LAST_CONVERSATION_AT:
            return "datetime"
        if field == CONVERSATION_COUNT:
            return CONVERSATION_COUNT
        if field.startswith("attribute."):
            key = field[len("attribute.") :]
            if not ATTRIBUTE_KEY.match(key) or key not in self.types:
                raise _Bad("field", f"unknown attribute {key!r}; define it first.", "UNKNOWN_FIELD")
            kind = str(self.types[key])
            if kind not in ATTRIBUTE_TYPES:
                raise _Bad("field", f"attribute {key!r} has an unknown type {kind!r}.", "UNKNOWN_FIELD")
            return kind
        if field.startswith("event."):
            if not EVENT_NAME.match(field[len("event.") :]):
                raise _Bad("field", "an event name has 1 to 120 letters, digits, spaces or _ . : / -.", "UNKNOWN_FIELD")
            return "event"
        raise _Bad(
            "field",
            f"unknown field {field!r}; use a contact field, tag, attribute.<key>, event.<name>, "
            f"{CONVERSATION_COUNT} or {LAST_CONVERSATION_AT}.",
            "UNKNOWN_FIELD",
        )


def _list(raw: Any, path: list[str], where: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise RuleError(f"{where}: {path[-1]} must be a list.", path, "INVALID_VALUE")
    return list(raw)


def _group_name(path: list[str]) -> str:
    if not path:
        return "The rules"
    return "Group " + ".".join(str(int(p) + 1) for p in path[1::2])


def _condition_name(path: list[str], raw: Any) -> str:
    """'Condition 2 of group 1.3 (attribute.plan equals)'."""
    number = int(path[-1]) + 1
    groups = path[:-2]
    where = f"Condition {number}" + (f" of {_group_name(groups).lower()}" if groups else "")
    if isinstance(raw, dict) and isinstance(raw.get("field"), str):
        op = raw.get("operator") or raw.get("event_count_op")
        label = raw["field"][:130] + (f" {op}" if isinstance(op, str) else "")
        where += f" ({label[:160]})"
    return where


def _checked(check: Callable[[Any], Any], value: Any, key: list[str]) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise _Bad(key, str(exc)) from None


def _days(days: Any, *, required: bool) -> int | None:
    if days is None and not required:
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise _Bad("days", f"days is a whole number from 1 to {MAX_DAYS}.")
    return days


def _encodable(text: str) -> None:
    """What both databases can store: UTF-8 without NUL."""
    if "\x00" in text:
        raise ValueError("text cannot contain NUL characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode.") from None


def _fail(message: str) -> NoReturn:
    """A user's value of the wrong type is a bad value too: ValueError, not TypeError."""
    raise ValueError(message)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        _fail(f"expected text, got {type_name(value)}.")
    if not value:
        raise ValueError("expected a non-empty text.")
    if len(value) > MAX_TEXT:
        raise ValueError(f"at most {MAX_TEXT} characters.")
    _encodable(value)
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"expected a number, got {type_name(value)}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number.")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise ValueError("number out of range.")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(f"expected true or false, got {type_name(value)}.")
    return value


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected a date as YYYY-MM-DD.")


def _date_or_datetime(value: Any) -> date | datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date | str) and (isinstance(value, date) or _ISO_DATE.fullmatch(value)):
        day = _date(value)
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise ValueError(f"expected a year from {MIN_YEAR} to {MAX_YEAR}.")
        return day
    elif isinstance(value, str) and len(value) > 10 and value[10] in "T ":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected a date (YYYY-MM-DD) or an ISO 8601 date and time.") from None
    else:
        raise ValueError("expected a date (YYYY-MM-DD) or an ISO 8601 date and time.")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"expected a year from {MIN_YEAR} to {MAX_YEAR}.")
    return moment.astimezone(UTC)


def _sms_consent(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in SMS_CONSENT:
        raise ValueError(f"expected one of {', '.join(SMS_CONSENT)}.")
    return value.lower()


def _tag(value: Any) -> str:
    if not isinstance(value, str):
        _fail(f"expected a tag name, got {type_name(value)}.")
    name = " ".join(value.split()).lower()
    if not 1 <= len(name) <= 64:
        raise ValueError("a tag has 1 to 64 characters.")
    _encodable(name)
    return name


# How a condition's values are checked and normalised, by the field's kind.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "number": _number,
    "boolean": _boolean,
    "date": _date,
    "datetime": _date_or_datetime,
    "list": _text,
    "enum": _sms_consent,
    "tag": _tag,
}


def _bound_key(value: Any, *, start: bool) -> Any:
    """Comparable form of a between bound (dates as their whole day)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return _day_start(value) if start else _day_start(value) + timedelta(days=1) - timedelta(microseconds=1)
    return value


def _counted(raw: dict[str, Any], what: str) -> tuple[str, int, int | None]:
    """(count operator, count, days) of an event or conversation_count condition."""
    op_key = "event_count_op" if raw.get("event_count_op") is not None else "operator"
    count_op = raw.get("event_count_op")
    operator = raw.get("operator")
    if count_op is not None and operator is not None and operator != count_op:
        raise _Bad("operator", f"{what} counts with event_count_op (at_least, at_most, exactly).", "INVALID_OPERATOR")
    op = count_op if count_op is not None else operator
    if op not in EVENT_COUNT_OPS:
        raise _Bad(op_key, f"{what} counts with at_least, at_most or exactly.", "INVALID_OPERATOR")
    for key in ("value", "values"):
        if raw.get(key) not in (None, [], ()):
            raise _Bad(key, f"{key} does not apply to {what}; use count.")
    count = raw.get("count")
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise _Bad("count", f"count is a whole number from 0 to {MAX_COUNT}.")
    return op, count, _days(raw.get("days"), required=False)


def _conversation_count_condition(raw: dict[str, Any]) -> Condition:
    for key in ("property", "property_operator", "property_value"):
        if raw.get(key) is not None:
            raise _Bad(key, f"{key} applies to event.<name> fields only.")
    op, count, days = _counted(raw, "a conversation condition")
    status = raw.get("status")
    if status is not None:
        if not isinstance(status, str) or status.lower() not in CONVERSATION_STATUSES:
            raise _Bad("status", f"status is one of {', '.join(CONVERSATION_STATUSES)}.")
        status = status.lower()
    return Condition(
        field=CONVERSATION_COUNT,
        operator=op,
        days=days,
        event_count_op=op,
        count=count,
        status=status,
        kind=CONVERSATION_COUNT,
    )


def _event_condition(raw: dict[str, Any], field: str) -> Condition:
    op, count, days = _counted(raw, "an event condition")
    prop, prop_op, prop_value = raw.get("property"), raw.get("property_operator"), raw.get("property_value")
    if prop is None and prop_op is None and prop_value is None:
        return Condition(field=field, operator=op, days=days, event_count_op=op, count=count, kind="event")
    if not isinstance(prop, str) or not PROPERTY_NAME.match(prop):
        raise _Bad("property", "property names a top-level event property: 1 to 64 letters, digits, _ or -.")
    if prop_op not in PROPERTY_OPERATORS:
        raise _Bad(
            "property_operator", f"property_operator is one of {', '.join(PROPERTY_OPERATORS)}.", "INVALID_OPERATOR"
        )
    try:
        if prop_op in ("greater_than", "less_than"):
            prop_value = _number(prop_value)
        elif prop_op == "contains" or isinstance(prop_value, str):
            prop_value = _text(prop_value)
        elif isinstance(prop_value, bool | int | float):
            prop_value = _number(prop_value) if not isinstance(prop_value, bool) else prop_value
        else:
            raise ValueError(f"expected text, a number or a boolean, got {type_name(prop_value)}.")
    except ValueError as exc:
        raise _Bad("property_value", str(exc)) from None
    return Condition(
        field=field,
        operator=op,
        days=days,
        event_count_op=op,
        count=count,
        property=prop,
        property_operator=prop_op,
        property_value=prop_value,
        kind="event",
    )


# -- compiling -------------------------------------------------------------------------------


def compile_where(group: Group, dialect: str, *, now: datetime, param_start: int = 1) -> tuple[str, list[Any]]:
    """(SQL boolean expression over contacts `c`, its parameters). Placeholders are `?` for
    "sqlite" and `$n::type`, numbered from `param_start`, for "postgres". No user value,
    attribute key or event name is ever part of the SQL text."""
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unknown dialect {dialect!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    compiler = _Compiler(dialect == "postgres", now.astimezone(UTC), param_start)
    return compiler.group(group), compiler.params


class _Compiler:
    """Builds SQL left to right: every placeholder is made, and its parameter appended, in
    the order it appears in the text (SQLite's `?` are positional)."""

    def __init__(self, postgres: bool, now: datetime, param_start: int) -> None:
        self.pg = postgres
        self.now = now
        self.next = param_start
        self.params: list[Any] = []

    # placeholders

    def p(self, value: Any, pg_type: str) -> str:
        if self.pg:
            if pg_type == "numeric" and isinstance(value, float):
                value = Decimal(repr(value))  # asyncpg would send the float's exact binary expansion
            self.params.append(value)
            self.next += 1
            return f"${self.next - 1}::{pg_type}"
        self.params.append(value)
        return "?"

    def moment(self, value: datetime) -> str:
        """A datetime bound. On SQLite the column is text as Tortoise writes it, str() of the
        UTC datetime ('2026-11-22 03:31:42.123456+00:00', but '...:42+00:00' when the
        microseconds are zero; raw SQL elsewhere may write '...:42.000000+00:00'). Bound in
        the same canonical form and used only with >= and <, text order is time order for
        both spellings: '+' sorts before '.', so a whole second sorts first either way."""
        value = value.astimezone(UTC)
        return self.p(value if self.pg else str(value), "timestamptz")

    # structure

    def group(self, group: Group) -> str:
        if not group.items:
            return "TRUE"
        # On PostgreSQL the custom-attribute filters of an AND group are emitted as one
        # conjunct, cheapest first. Separately, the planner would order them by its own
        # estimates, which rate a jsonpath match (@@) as cheap as one ->> comparison while it
        # costs about twice as much per row: "plan = pro AND seats >= 10" then evaluated the
        # jsonpath on every contact first (1.5× the time). Containment tests (@>) stay
        # separate conjuncts so that the GIN index on contacts.attributes can serve them.
        filters = [i for i in group.items if self.pg and group.match == "all" and _filter_rank(i) is not None]
        parts: list[str] = []
        for item in group.items:
            if len(filters) > 1 and item in filters:
                if item is filters[0]:
                    ordered = sorted(filters, key=lambda f: _filter_rank(f) or 0)
                    conditions = [f for f in ordered if isinstance(f, Condition)]  # what _filter_rank ranks
                    parts.append(f"COALESCE({' AND '.join(self.pg_attribute(f)[0] for f in conditions)}, FALSE)")
            else:
                parts.append(self.group(item) if isinstance(item, Group) else self.condition(item))
        if len(parts) == 1:
            return parts[0]
        return "(" + (" AND " if group.match == "all" else " OR ").join(parts) + ")"

    def condition(self, c: Condition) -> str:
        if c.kind == "tag":
            return self.tag(c)
        if c.kind == "event":
            return self.event(c)
        if c.kind == CONVERSATION_COUNT:
            return self.conversation_count(c)
        if c.field == LAST_CONVERSATION_AT:
            return self.last_conversation(c)
        if c.field.startswith("attribute.") and self.pg:
            sql, nullable = self.pg_attribute(c)
            return f"COALESCE({sql}, FALSE)" if nullable else sql
        if c.field.startswith("attribute."):
            key = c.field[len("attribute.") :]
            column = self.sqlite_json_value("c.attributes", key, c.kind)
            guard = "coalesce"
        else:
            column = _const(f"c.{c.field}")
            guard = "none" if c.field in NOT_NULL else "column"
        return self.predicate(column, c, guard)

    def predicate(self, v: Callable[[], str], c: Condition, guard: str) -> str:
        op = c.operator
        if op == "is_set":
            return f"{v()} IS NOT NULL"
        if op == "is_not_set":
            return f"{v()} IS NULL"
        kind = c.kind
        if kind == "text":
            sql = self.text_predicate(v, op, c.value, c.values)
        elif kind == "datetime":
            sql = self.datetime_predicate(v, c)
        elif kind == "date":
            sql = self.date_predicate(v, c)
        else:
            pg_type = {"number": "numeric", "boolean": "boolean"}.get(kind, "text")
            sql = self.compare(v, op, c.value, c.values, pg_type)
        if guard == "column":
            return f"({v()} IS NOT NULL AND {sql})"
        if guard == "coalesce":
            return f"COALESCE({sql}, FALSE)"
        return f"({sql})"

    # comparisons

    def lower(self, v: Callable[[], str]) -> str:
        # COLLATE "C": PostgreSQL then folds ASCII only, as SQLite's lower() does.
        return f'lower(({v()}) COLLATE "C")' if self.pg else f"lower({v()})"

    def text_predicate(self, v: Callable[[], str], op: str, value: Any, values: tuple[Any, ...]) -> str:
        if op in ("equals", "not_equals"):
            return f"{self.lower(v)} {'=' if op == 'equals' else '<>'} {self.p(fold(value), 'text')}"
        if op in ("in", "not_in"):
            lhs = self.lower(v)  # placeholders in text order
            listed = ", ".join(self.p(fold(x), "text") for x in values)
            return f"{lhs} {'IN' if op == 'in' else 'NOT IN'} ({listed})"
        escaped = like_escape(fold(value))
        pattern = {
            "contains": f"%{escaped}%",
            "not_contains": f"%{escaped}%",
            "starts_with": f"{escaped}%",
            "ends_with": f"%{escaped}",
        }[op]
        like = "NOT LIKE" if op == "not_contains" else "LIKE"
        return f"{self.lower(v)} {like} {self.p(pattern, 'text')} ESCAPE '\\'"

    def compare(self, v: Callable[[], str], op: str, value: Any, values: tuple[Any, ...], pg_type: str) -> str:
        if op == "between":
            return f"{v()} BETWEEN {self.p(values[0], pg_type)} AND {self.p(values[1], pg_type)}"
        if op in ("in", "not_in"):
            lhs = v()  # placeholders in text order
            listed = ", ".join(self.p(x, pg_type) for x in values)
            return f"{lhs} {'IN' if op == 'in' else 'NOT IN'} ({listed})"
        return f"{v()} {_SQL_OP[op]} {self.p(value, pg_type)}"

    def datetime_predicate(self, v: Callable[[], str], c: Condition) -> str:
        # Only >= and < against canonical bounds (see `moment`).
        op = c.operator
        if op == "before":
            return f"{v()} < {self.moment(_start(c.value))}"
        if op == "after":
            return f"{v()} >= {self.moment(_end(c.value))}"
        if op == "between":
            return f"{v()} >= {self.moment(_start(c.values[0]))} AND {v()} < {self.moment(_end(c.values[1]))}"
        assert c.days is not None
        lhs = v()
        cutoff = self.moment(self.now - timedelta(days=c.days))
        return f"{lhs} >= {cutoff}" if op == "within_last_days" else f"{lhs} < {cutoff}"

    def date_predicate(self, v: Callable[[], str], c: Condition) -> str:
        op = c.operator
        if op in ("before", "after"):
            return f"{v()} {'<' if op == 'before' else '>'} {self.p(c.value.isoformat(), 'text')}"
        if op == "between":
            low, high = (x.isoformat() for x in c.values)
            return f"{v()} BETWEEN {self.p(low, 'text')} AND {self.p(high, 'text')}"
        assert c.days is not None
        lhs = v()
        cutoff = self.p((self.now - timedelta(days=c.days)).date().isoformat(), "text")
        return f"{lhs} >= {cutoff}" if op == "within_last_days" else f"{lhs} < {cutoff}"

    # JSON on PostgreSQL: one predicate per condition, never raising on what is stored

    def pg_attribute(self, c: Condition) -> tuple[str, bool]:
        return self.pg_json("c.attributes", c.field[len("attribute.") :], c.kind, c.operator, c.value, c.values, c.days)

    def pg_json(
        self, column: str, key: str, kind: str, op: str, value: Any, values: tuple[Any, ...], days: int | None
    ) -> tuple[str, bool]:
        """(SQL, whether it may be NULL) for a condition on one top-level key of a JSON object
        column, true only for a value of the kind's JSON type (see the module docstring).

        - Equality with JSON scalars — numbers, booleans, list values, and texts without
          ASCII letters (nothing to fold) — is containment, `column @> {"key": value}`: exact
          for the JSON type, cheap per row, and served by the GIN index (jsonb_path_ops).
        - Numbers otherwise: a strict jsonpath (`strict $."seats" >= 10`), whose comparisons
          are unknown (NULL), never an error, when the stored value is not a number.
        - Text, list and date values are compared as `column ->> key` text first; the JSON
          type is checked only where that text could come from a non-string (`->>` gives
          '10', 'true', '[...]' for those): after a match of an ambiguous value or pattern,
          and for the negative operators. A date's shape check alone excludes non-strings.
        """
        if _contained(kind, op, value, values):
            return self.containment(column, key, kind, op, value, values), False
        if op in ("is_set", "is_not_set"):
            if kind == "date":
                test = f"({column} ->> {self.p(key, 'text')}) ~ '{_PG_DATE_SHAPE}'"
            else:
                test = f"jsonb_typeof({column} -> {self.p(key, 'text')}) = '{_JSON_TYPES[kind]}'"
            return (test, True) if op == "is_set" else (f"NOT COALESCE({test}, FALSE)", False)
        if kind == "number":
            return f"{column} @@ {self.p(_number_path(key, op, value, values), 'jsonpath')}", True
        text = _const(f"({column} ->> {self.p(key, 'text')})")
        if kind == "date":
            sql = self.date_predicate(text, Condition(field=key, operator=op, value=value, values=values, days=days))
            return (
                f"CASE WHEN {sql} THEN ({column} ->> {self.p(key, 'text')}) ~ '{_PG_DATE_SHAPE}' ELSE FALSE END",
                False,
            )
        if kind == "text":
            sql = self.text_predicate(text, op, value, values)
        else:  # list: exact
            sql = self.compare(text, op, value, values, "text")
        wanted = [value] if op in ("equals", "not_equals") else list(values)
        if op in ("equals", "in") and not any(_NOT_A_STRING.fullmatch(fold(v)) for v in wanted):
            return sql, True
        return f"CASE WHEN {sql} THEN jsonb_typeof({column} -> {self.p(key, 'text')}) = 'string' ELSE FALSE END", False

    def containment(self, column: str, key: str, kind: str, op: str, value: Any, values: tuple[Any, ...]) -> str:
        def doc(v: Any) -> str:
            return json.dumps({key: fold(v) if kind == "text" else v}, ensure_ascii=False, separators=(",", ":"))

        if kind == "boolean":
            return f"{column} @> {self.p(doc(value if op == 'equals' else not value), 'jsonb')}"
        if op == "equals":
            return f"{column} @> {self.p(doc(value), 'jsonb')}"
        return f"{column} @> ANY({self.p([doc(v) for v in values], 'jsonb[]')})"

    # JSON on SQLite: the value when its JSON type is the expected one, else NULL

    def sqlite_json_value(self, column: str, key: str, kind: str) -> Callable[[], str]:
        def sqlite() -> str:
            def path() -> str:
                return f"""'$."' || {self.p(key, "text")} || '"'"""

            typeof = f"json_type({column}, {path()})"
            if kind == "number":
                return f"(CASE WHEN {typeof} IN ('integer', 'real') THEN json_extract({column}, {path()}) END)"
            if kind == "boolean":
                return f"(CASE {typeof} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
            if kind == "date":
                shape = f"json_extract({column}, {path()}) GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'"
                return f"(CASE WHEN {typeof} = 'text' AND {shape} THEN json_extract({column}, {path()}) END)"
            return f"(CASE WHEN {typeof} = 'text' THEN json_extract({column}, {path()}) END)"

        return sqlite

    # tags and events

    def tag(self, c: Condition) -> str:
        base = "SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id"
        op = c.operator
        if op in ("is_set", "is_not_set"):
            sql = f"EXISTS ({base})"
        elif op in ("equals", "not_equals"):
            sql = f"EXISTS ({base} AND t.name = {self.p(c.value, 'text')})"
        else:
            listed = ", ".join(self.p(x, "text") for x in c.values)
            sql = f"EXISTS ({base} AND t.name IN ({listed}))"
        return f"NOT {sql}" if op in ("is_not_set", "not_equals", "not_in") else sql

    def event(self, c: Condition) -> str:
        if c.event_count_op == "at_least" and c.count == 0:
            return "TRUE"
        where = f"e.contact_id = c.id AND e.name = {self.p(c.field[len('event.') :], 'text')}"
        if c.days is not None:
            where += f" AND e.occurred_at >= {self.moment(self.now - timedelta(days=c.days))}"
        if c.property is not None:
            where += f" AND {self.property(c)}"
        return self.counted("contact_events e", where, c)

    def counted(self, source: str, where: str, c: Condition) -> str:
        """The rows of `source` matching `where`, counted against the condition's count."""
        assert c.count is not None and c.event_count_op is not None
        op, n = c.event_count_op, c.count
        if (op == "at_least" and n == 1) or (op in ("at_most", "exactly") and n == 0):
            exists = f"EXISTS (SELECT 1 FROM {source} WHERE {where})"  # noqa: S608
            return exists if op == "at_least" else f"NOT {exists}"
        counted = f"(SELECT count(*) FROM {source} WHERE {where})"  # noqa: S608
        return f"{counted} {_COUNT_OP[op]} {self.p(n, 'bigint')}"

    # conversations

    def conversation_count(self, c: Condition) -> str:
        if c.event_count_op == "at_least" and c.count == 0:
            return "TRUE"
        where = "cv.contact_id = c.id"
        if c.status is not None:
            where += f" AND cv.status = {self.p(c.status, 'text')}"
        if c.days is not None:
            where += f" AND cv.created_at >= {self.moment(self.now - timedelta(days=c.days))}"
        return self.counted("conversations cv", where, c)

    def last_conversation(self, c: Condition) -> str:
        """The newest conversation's created_at, as EXISTS tests on the (contact_id,
        created_at) index: "newest >= t" is "one started at or after t"."""

        def since(bound: datetime | None) -> str:
            where = "cv.contact_id = c.id" + ("" if bound is None else f" AND cv.created_at >= {self.moment(bound)}")
            return f"EXISTS (SELECT 1 FROM conversations cv WHERE {where})"  # noqa: S608

        op = c.operator
        if op in ("is_set", "is_not_set"):
            return since(None) if op == "is_set" else f"NOT {since(None)}"
        if op == "after":
            return since(_end(c.value))
        if op == "between":
            return f"({since(_start(c.values[0]))} AND NOT {since(_end(c.values[1]))})"
        assert op == "before" or c.days is not None
        bound = _start(c.value) if op == "before" else self.now - timedelta(days=c.days or 0)
        if op == "within_last_days":
            return since(bound)
        return f"({since(None)} AND NOT {since(bound)})"  # before, more_than_days_ago

    def property(self, c: Condition) -> str:
        op, value = c.property_operator, c.property_value
        assert c.property is not None and op is not None
        kind = "boolean" if isinstance(value, bool) else "text" if isinstance(value, str) else "number"
        if self.pg:
            sql, nullable = self.pg_json("e.properties", c.property, kind, op, value, (), None)
            return f"COALESCE({sql}, FALSE)" if nullable else sql
        v = self.sqlite_json_value("e.properties", c.property, kind)
        if kind == "text":
            sql = self.text_predicate(v, op, value, ())
        else:
            sql = self.compare(v, op, value, (), "numeric" if kind == "number" else "boolean")
        return f"COALESCE({sql}, FALSE)"


_SQL_OP = {
    "equals": "=",
    "not_equals": "<>",
    "greater_than": ">",
    "greater_or_equal": ">=",
    "less_than": "<",
    "less_or_equal": "<=",
}
_COUNT_OP = {"at_least": ">=", "at_most": "<=", "exactly": "="}
_JSON_TYPES = {"text": "string", "list": "string", "number": "number", "boolean": "boolean"}
_PG_DATE_SHAPE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# What `->>` gives for a JSON number (PostgreSQL prints numerics without exponent), boolean,
# array or object; null gives SQL NULL. A text value outside this set cannot come from them.
_NOT_A_STRING = re.compile(r"-?[0-9]+(\.[0-9]+)?|true|false|[\[{].*", re.DOTALL)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_NEGATIVE_OPS = frozenset({"not_equals", "not_in", "not_contains"})


def _contained(kind: str, op: str, value: Any, values: tuple[Any, ...]) -> bool:
    """Whether a JSON condition is exactly a containment test (see `_Compiler.pg_json`)."""
    if kind == "boolean":
        return op in ("equals", "not_equals")
    if kind in ("number", "list"):
        return op in ("equals", "in")
    if kind == "text" and op in ("equals", "in"):
        return not any(_ASCII_LETTER.search(v) for v in ([value] if op == "equals" else values))
    return False


def _filter_rank(item: Condition | Group) -> int | None:
    """For a custom-attribute condition compiled to a filter (not a containment test): its
    rough cost per row on PostgreSQL, cheapest 0. None for anything else."""
    if not isinstance(item, Condition) or not item.field.startswith("attribute."):
        return None
    if _contained(item.kind, item.operator, item.value, item.values):
        return None
    if item.operator in ("is_set", "is_not_set") or item.operator in _NEGATIVE_OPS:
        return 3  # jsonb_typeof on (nearly) every row
    return {"text": 0, "list": 0, "date": 1}.get(item.kind, 2)  # numbers: jsonpath


def _number_path(key: str, op: str, value: Any, values: tuple[Any, ...]) -> str:
    """A strict jsonpath predicate on a number (`key` is a checked attribute key or event
    property name: letters, digits, _ and -, nothing to escape)."""
    k = f'$."{key}"'
    if op == "between":
        return f"strict {k} >= {_path_number(values[0])} && {k} <= {_path_number(values[1])}"
    if op in ("not_equals", "not_in"):
        differs = " && ".join(f"{k} != {_path_number(v)}" for v in ([value] if op == "not_equals" else values))
        return f'strict {k}.type() == "number" && {differs}'
    return f"strict {k} {_PATH_OP[op]} {_path_number(value)}"


def _path_number(value: int | float) -> str:
    """The number as a jsonpath literal: plain decimal digits, exactly the value written."""
    if isinstance(value, int):
        return str(value)
    return format(Decimal(repr(value)), "f")


_PATH_OP = {"greater_than": ">", "greater_or_equal": ">=", "less_than": "<", "less_or_equal": "<="}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str) -> str:
    """Case folding as the databases do it here: ASCII letters only."""
    return text.translate(_ASCII_LOWER)


def like_escape(text: str) -> str:
    """`text` as a literal inside a LIKE pattern with ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _const(sql: str) -> Callable[[], str]:
    return lambda: sql


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _start(value: date | datetime) -> datetime:
    """The first instant a before/between bound covers."""
    return value if isinstance(value, datetime) else _day_start(value)


def _end(value: date | datetime) -> datetime:
    """The first instant after an after/between bound: the next day, or the next microsecond."""
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    return _day_start(value) + timedelta(days=1)
