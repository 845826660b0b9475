"""Proactive-message rules, checked and compiled once, evaluated per page view in plain
Python (no database: the resolver gathers the visitor's context first).

    >>> rules = {"match": "all", "conditions": [
    ...     {"field": "page_url", "operator": "matches", "value": "https://shop.example/*/checkout"},
    ...     {"field": "time_on_page", "operator": "greater_or_equal", "value": 30}]}
    >>> check = compile_rules(validate_rules(rules))
    >>> check(Visitor(url="https://shop.example/fr/checkout", time_on_page=45))
    True
    >>> check(Visitor(url="https://shop.example/fr/cart", time_on_page=45))
    False

A rule tree is `{"match": "all" | "any", "conditions": [...], "groups": [...]}`; groups are
rule trees again. As in the source product, a message with at most two conditions cannot
nest groups. A condition is `{"field", "operator", "value"}` (or `"values"` for IN and
NOT_IN):

- page_url, page_title, referrer (text): equals, not_equals, contains, not_contains,
  starts_with, ends_with, matches (a wildcard: `*` is any run of characters, the whole
  URL must match; at most MAX_WILDCARDS stars, matched in linear time), is_set, is_not_set;
  text compares case-insensitively.
- time_on_page (seconds), visit_count (number): equals, greater_than, greater_or_equal,
  less_than, less_or_equal.
- visitor: equals "new" (first visit) or "returning".
- language (e.g. "fr" or "fr-CA"; "fr" also matches "fr-CA"), country (ISO 3166 alpha-2),
  device (desktop, mobile, tablet): equals, not_equals, in, not_in.
- event: equals, in — the custom event reported with this page view.
- segment: member_of, not_member_of — value is the segment's id (materialised membership).
- attribute.<key>: equals, not_equals, contains, greater_than, less_than, is_set,
  is_not_set — the contact's custom attribute.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

MAX_DEPTH = 3  # the root and two levels of groups
MAX_CONDITIONS = 30
MAX_VALUES = 50
MAX_VALUE_LENGTH = 500  # MATCHES patterns included
MAX_WILDCARDS = 10  # `*` in one MATCHES pattern
# Page views further apart than this start a new visit.
VISIT_TIMEOUT = timedelta(minutes=30)

TEXT_OPS = {
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "matches",
    "is_set",
    "is_not_set",
}
NUMBER_OPS = {"equals", "greater_than", "greater_or_equal", "less_than", "less_or_equal"}
CHOICE_OPS = {"equals", "not_equals", "in", "not_in"}
ATTRIBUTE_OPS = {"equals", "not_equals", "contains", "greater_than", "less_than", "is_set", "is_not_set"}
DEVICES = ("desktop", "mobile", "tablet")

FIELDS: dict[str, set[str]] = {
    "page_url": TEXT_OPS,
    "page_title": TEXT_OPS,
    "referrer": TEXT_OPS,
    "time_on_page": NUMBER_OPS,
    "visit_count": NUMBER_OPS,
    "visitor": {"equals"},
    "language": CHOICE_OPS,
    "country": CHOICE_OPS,
    "device": CHOICE_OPS,
    "event": {"equals", "in"},
    "segment": {"member_of", "not_member_of"},
}
NO_VALUE = {"is_set", "is_not_set"}
LIST_OPS = {"in", "not_in"}


class RuleError(ValueError):
    """A rule problem, with its path in the input: ["groups", "0", "conditions", "1", "value"]."""

    def __init__(self, path: list[str], code: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.code = code
        self.message = message


@dataclass
class Visitor:
    """What the server knows about the visitor at one page view."""

    url: str = ""
    title: str = ""
    referrer: str = ""
    time_on_page: float = 0
    visit_count: int = 1
    language: str = ""
    country: str = ""
    device: str = ""
    event: str | None = None
    segment_ids: frozenset[int] = frozenset()
    attributes: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Visitor], bool]


# -- validation ---------------------------------------------------------------------------


def count_conditions(rules: dict[str, Any]) -> int:
    return len(rules.get("conditions") or []) + sum(
        count_conditions(g) for g in rules.get("groups") or [] if isinstance(g, dict)
    )


def validate_rules(rules: Any) -> dict[str, Any]:
    """The rule tree, normalised (text lower-cased where it compares so); raises RuleError."""
    if not isinstance(rules, dict):
        raise RuleError([], "INVALID", "Rules are an object: {match, conditions, groups}.")
    total = _count_bounded(rules, 1)
    if rules.get("groups") and total <= 2:
        raise RuleError(
            ["groups"],
            "INVALID",
            "Nested groups need more than two conditions in all; with one or two, use match ALL or ANY.",
        )
    return _validate_group(rules, [], 1)


def _count_bounded(rules: dict[str, Any], depth: int) -> int:
    """Count conditions, refusing deep or huge trees before looking at anything else."""
    if depth > MAX_DEPTH:
        raise RuleError(["groups"], "TOO_DEEP", f"Rules nest at most {MAX_DEPTH - 1} levels of groups.")
    conditions, groups = rules.get("conditions") or [], rules.get("groups") or []
    if not isinstance(conditions, list) or not isinstance(groups, list):
        raise RuleError([], "INVALID", "conditions and groups are lists.")
    total = len(conditions)
    if total > MAX_CONDITIONS or len(groups) > MAX_CONDITIONS:
        raise RuleError(["conditions"], "TOO_MANY_CONDITIONS", f"At most {MAX_CONDITIONS} conditions in all.")
    for g in groups:
        if isinstance(g, dict):
            total += _count_bounded(g, depth + 1)
        if total > MAX_CONDITIONS:
            raise RuleError(["conditions"], "TOO_MANY_CONDITIONS", f"At most {MAX_CONDITIONS} conditions in all.")
    return total


def _validate_group(rules: dict[str, Any], path: list[str], depth: int) -> dict[str, Any]:
    match = rules.get("match", "all")
    if match not in ("all", "any"):
        raise RuleError([*path, "match"], "INVALID", "match is ALL or ANY.")
    conditions = [
        _validate_condition(c, [*path, "conditions", str(i)]) for i, c in enumerate(rules.get("conditions") or [])
    ]
    groups = []
    for i, g in enumerate(rules.get("groups") or []):
        if not isinstance(g, dict):
            raise RuleError([*path, "groups", str(i)], "INVALID", "A group is a rule tree.")
        sub = _validate_group(g, [*path, "groups", str(i)], depth + 1)
        if not sub["conditions"] and not sub["groups"]:
            raise RuleError([*path, "groups", str(i)], "INVALID", "A group needs at least one condition.")
        groups.append(sub)
    return {"match": match, "conditions": conditions, "groups": groups}


def _validate_condition(c: Any, path: list[str]) -> dict[str, Any]:
    if not isinstance(c, dict):
        raise RuleError(path, "INVALID", "A condition is {field, operator, value}.")
    name, op = c.get("field"), c.get("operator")
    if not isinstance(name, str):
        raise RuleError([*path, "field"], "UNKNOWN_FIELD", "A condition needs a field.")
    if name.startswith("attribute."):
        key = name[len("attribute.") :]
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", key):
            raise RuleError(
                [*path, "field"], "UNKNOWN_FIELD", f"{name!r}: an attribute key has lower-case letters, digits and _."
            )
        ops = ATTRIBUTE_OPS
    elif name in FIELDS:
        ops = FIELDS[name]
    else:
        raise RuleError(
            [*path, "field"], "UNKNOWN_FIELD", f"Unknown field {name!r}; one of {', '.join(FIELDS)} or attribute.<key>."
        )
    if op not in ops:
        raise RuleError(
            [*path, "operator"], "INVALID_OPERATOR", f"{name} takes {', '.join(sorted(o.upper() for o in ops))}."
        )
    out: dict[str, Any] = {"field": name, "operator": op}
    if op in NO_VALUE:
        return out
    if op in LIST_OPS:
        values = c.get("values")
        if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
            raise RuleError([*path, "values"], "INVALID_VALUE", f"{op.upper()} takes 1 to {MAX_VALUES} values.")
        out["values"] = [_value(name, op, v, [*path, "values", str(i)]) for i, v in enumerate(values)]
        return out
    out["value"] = _value(name, op, c.get("value"), [*path, "value"])
    return out


def _value(name: str, op: str, v: Any, path: list[str]) -> Any:
    if name in ("time_on_page", "visit_count"):
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v > 10**9:
            raise RuleError(
                path,
                "INVALID_VALUE",
                f"{name} compares with a number of {'seconds' if name == 'time_on_page' else 'visits'} (0 or more).",
            )
        return v
    if name == "segment":
        if isinstance(v, bool) or not isinstance(v, int):
            raise RuleError(path, "INVALID_VALUE", "segment takes a segment id.")
        return v
    if name.startswith("attribute."):
        if op in ("greater_than", "less_than"):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise RuleError(path, "INVALID_VALUE", f"{op.upper()} compares with a number.")
            return v
        if isinstance(v, str):
            return _text(v, path)
        if v is None or not isinstance(v, int | float | bool):
            raise RuleError(path, "INVALID_VALUE", "An attribute compares with text, a number or a boolean.")
        return v
    if not isinstance(v, str):
        raise RuleError(path, "INVALID_VALUE", f"{name} compares with text.")
    text = _text(v, path).lower()
    if op == "matches" and text.count("*") > MAX_WILDCARDS:
        raise RuleError(path, "INVALID_VALUE", f"A MATCHES pattern has at most {MAX_WILDCARDS} * wildcards.")
    if name == "visitor" and text not in ("new", "returning"):
        raise RuleError(path, "INVALID_VALUE", 'visitor is "new" or "returning".')
    if name == "device" and text not in DEVICES:
        raise RuleError(path, "INVALID_VALUE", f"device is one of {', '.join(DEVICES)}.")
    if name == "country" and not re.fullmatch(r"[a-z]{2}", text):
        raise RuleError(path, "INVALID_VALUE", "country is an ISO 3166 alpha-2 code, e.g. FR.")
    if name == "language" and not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", text):
        raise RuleError(path, "INVALID_VALUE", "language is a language tag, e.g. fr or fr-CA.")
    return text


def _text(v: str, path: list[str]) -> str:
    text = v.strip()
    if not text:
        raise RuleError(path, "INVALID_VALUE", "The value is empty.")
    if len(text) > MAX_VALUE_LENGTH:
        raise RuleError(path, "INVALID_VALUE", f"A value has at most {MAX_VALUE_LENGTH} characters.")
    return text


def segment_ids(rules: dict[str, Any]) -> set[int]:
    """The segments a (validated) rule tree refers to."""
    found = {c["value"] for c in rules.get("conditions", []) if c["field"] == "segment"}
    for g in rules.get("groups", []):
        found |= segment_ids(g)
    return found


# -- compilation --------------------------------------------------------------------------


def wildcard(pattern: str) -> Callable[[str], bool]:
    """A test of whole texts against `pattern`, where `*` is any run of characters (none
    included) and everything else is literal. Callers fold case on both sides first.

    Linear in the text, whatever the pattern: the parts between the stars are looked for
    in order with str.find, leftmost first, and never retried (a regex would backtrack,
    and `*a*a*a…b` over a long URL took seconds).

    >>> checkout = wildcard("https://shop.example/*/checkout*")
    >>> checkout("https://shop.example/fr/checkout?step=2"), checkout("https://shop.example/fr/cart")
    (True, False)
    >>> wildcard("*.example/fr")("https://shop.example/fr/checkout")  # the whole text must match
    False
    >>> wildcard("a*a")("a"), wildcard("a*a")("aa"), wildcard("**")("")
    (False, True, True)
    """
    if "*" not in pattern:
        return lambda text: text == pattern
    first, *middle, last = pattern.split("*")
    shortest = len(first) + len(last)

    def matches(text: str) -> bool:
        if len(text) < shortest or not text.startswith(first) or not text.endswith(last):
            return False
        at, end = len(first), len(text) - len(last)
        for part in middle:
            found = text.find(part, at, end)
            if found < 0:
                return False
            at = found + len(part)
        return True

    return matches


def compile_rules(rules: dict[str, Any]) -> Check:
    """A predicate over a Visitor, from validated rules. No conditions match everyone."""
    parts = [_compile_condition(c) for c in rules.get("conditions", [])] + [
        compile_rules(g) for g in rules.get("groups", [])
    ]
    if not parts:
        return lambda v: True
    if len(parts) == 1:
        return parts[0]
    if rules.get("match") == "any":
        return lambda v: any(p(v) for p in parts)
    return lambda v: all(p(v) for p in parts)


_READ: dict[str, Callable[[Visitor], Any]] = {
    "page_url": lambda v: v.url,
    "page_title": lambda v: v.title,
    "referrer": lambda v: v.referrer,
    "time_on_page": lambda v: v.time_on_page,
    "visit_count": lambda v: v.visit_count,
    "visitor": lambda v: "new" if v.visit_count <= 1 else "returning",
    "language": lambda v: v.language,
    "country": lambda v: v.country,
    "device": lambda v: v.device,
    "event": lambda v: v.event,
}


def _compile_condition(c: dict[str, Any]) -> Check:
    name, op = c["field"], c["operator"]
    if name == "segment":
        wanted = c["value"]
        if op == "member_of":
            return lambda v: wanted in v.segment_ids
        return lambda v: wanted not in v.segment_ids
    if name.startswith("attribute."):
        return _attribute(name[len("attribute.") :], op, c.get("value"))
    read = _READ[name]
    if name in ("time_on_page", "visit_count"):
        return _number(read, op, c["value"])
    if name == "language":
        langs = c.get("values") or [c["value"]]

        def hit(v: Visitor) -> bool:
            lang = v.language.lower()
            return any(lang == w or lang.startswith(w + "-") for w in langs)

        return hit if op in ("equals", "in") else (lambda v: not hit(v))
    if name in ("country", "device", "event", "visitor"):
        choices = frozenset(str(x).lower() for x in (c.get("values") or [c["value"]]))
        if op in ("equals", "in"):
            return lambda v: (read(v) or "").lower() in choices
        return lambda v: (read(v) or "").lower() not in choices
    return _text_check(lambda v: (read(v) or "").lower(), op, c.get("value"))


def _number(read: Callable[[Visitor], Any], op: str, value: float) -> Check:
    return {
        "equals": lambda v: read(v) == value,
        "greater_than": lambda v: read(v) > value,
        "greater_or_equal": lambda v: read(v) >= value,
        "less_than": lambda v: read(v) < value,
        "less_or_equal": lambda v: read(v) <= value,
    }[op]


def _text_check(read: Callable[[Visitor], str], op: str, value: str | None) -> Check:
    if op == "is_set":
        return lambda v: bool(read(v))
    if op == "is_not_set":
        return lambda v: not read(v)
    assert value is not None
    w = value.lower()
    if op == "matches":
        test = wildcard(w)
        return lambda v: test(read(v))
    return {
        "equals": lambda v: read(v) == w,
        "not_equals": lambda v: read(v) != w,
        "contains": lambda v: w in read(v),
        "not_contains": lambda v: w not in read(v),
        "starts_with": lambda v: read(v).startswith(w),
        "ends_with": lambda v: read(v).endswith(w),
    }[op]


def _attribute(key: str, op: str, value: Any) -> Check:
    def get(v: Visitor) -> Any:
        return v.attributes.get(key)

    if op == "is_set":
        return lambda v: get(v) not in (None, "", [])
    if op == "is_not_set":
        return lambda v: get(v) in (None, "", [])
    if op in ("greater_than", "less_than"):

        def compare(v: Visitor) -> bool:
            got = get(v)
            if isinstance(got, bool) or not isinstance(got, int | float):
                return False
            return bool(got > value if op == "greater_than" else got < value)

        return compare
    if op == "contains":
        w = str(value).lower()

        def contains(v: Visitor) -> bool:
            got = get(v)
            if isinstance(got, list):
                return w in [str(x).lower() for x in got]
            return isinstance(got, str) and w in got.lower()

        return contains

    def same(v: Visitor) -> bool:
        got = get(v)
        if isinstance(value, str):
            return isinstance(got, str) and got.lower() == value.lower()
        if isinstance(value, bool):
            return got is value
        return isinstance(got, int | float) and not isinstance(got, bool) and got == value

    return same if op == "equals" else (lambda v: not same(v))


# -- message content ----------------------------------------------------------------------

_EMOJI_RANGES = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x2300, 0x23FF), (0xE0020, 0xE007F))


def find_emoji(text: str) -> str | None:
    """The first emoji in `text`, or None. Letters, digits, punctuation and symbols such as
    © or € are fine; pictographs, dingbats, flags and emoji modifiers are not."""
    for ch in text:
        o = ord(ch)
        if ch in "\u200d\ufe0f\u20e3\u3030\u303d" or any(lo <= o <= hi for lo, hi in _EMOJI_RANGES):
            return ch
        if unicodedata.category(ch) == "So" and unicodedata.east_asian_width(ch) == "W":
            return ch
    return None


def in_window(window: str, business_hours: Any, at: datetime) -> bool:
    """May a message with this sending window go out at `at`? `business_hours` is a
    domain.schedule.BusinessHours or None (a channel without hours is always open)."""
    if window == "any_time" or business_hours is None:
        return True
    return bool(business_hours.is_open(at))


def frequency_allows(frequency: str, previous: list[tuple[int | None, int]], visit_id: int, page_view: int) -> bool:
    """May the message go to this contact now, given its earlier deliveries of it to the
    contact as (visit id, page view) pairs? Dismissing does not count: it comes back when
    the frequency allows."""
    if frequency == "once_per_contact":
        return not previous
    if frequency == "once_per_visit":
        return all(v != visit_id for v, _ in previous)
    return all((v, p) != (visit_id, page_view) for v, p in previous)


@dataclass(frozen=True)
class LiveMessage:
    """A live message of a channel, compiled: what evaluation needs, and what is pushed."""

    id: int
    frequency: str
    window: str
    check: Check
    needs_segments: bool
    push: dict[str, Any]


def compile_message(
    message_id: int, rules: dict[str, Any], frequency: str, window: str, push: dict[str, Any]
) -> LiveMessage:
    clean = validate_rules(rules)
    return LiveMessage(message_id, frequency, window, compile_rules(clean), bool(segment_ids(clean)), push)


def matching(messages: list[LiveMessage], visitor: Visitor, at: datetime, business_hours: Any) -> list[LiveMessage]:
    """The messages whose window is open and whose rules the visitor meets, in order."""
    open_now = in_window("business_hours", business_hours, at)
    return [m for m in messages if (open_now or m.window == "any_time") and m.check(visitor)]


def dedupe_key(frequency: str, message_id: int, contact_id: int, visit_id: int, page_view: int) -> str:
    """What the frequency allows one delivery of: unique among deliveries."""
    key = f"{message_id}:c{contact_id}"
    if frequency == "once_per_contact":
        return key
    if frequency == "once_per_visit":
        return f"{key}:v{visit_id}"
    return f"{key}:v{visit_id}:p{page_view}"
