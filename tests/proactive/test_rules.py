"""Proactive rules as plain functions: every field and operator, all/any, the nesting rule
of the source product, hostile trees, emoji, window and frequency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import proactive as p
from domain.schedule import BusinessHours


def check(rules: dict, visitor: p.Visitor) -> bool:
    return p.compile_rules(p.validate_rules(rules))(visitor)


def one(field: str, operator: str, value: object = None, **extra: object) -> dict:
    condition = {"field": field, "operator": operator, **extra}
    if value is not None:
        condition["value"] = value
    return {"match": "all", "conditions": [condition]}


V = p.Visitor(
    url="https://Shop.example/fr/checkout?step=2",
    title="Checkout — Shop",
    referrer="https://www.google.com/",
    time_on_page=42,
    visit_count=3,
    language="fr-CA",
    country="FR",
    device="mobile",
    event="added_to_cart",
    segment_ids=frozenset({7}),
    attributes={"plan": "Gold", "seats": 12, "beta": True, "labels": ["a", "b"]},
)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (one("page_url", "equals", "https://shop.example/fr/checkout?step=2"), True),
        (one("page_url", "contains", "/checkout"), True),
        (one("page_url", "not_contains", "/checkout"), False),
        (one("page_url", "matches", "https://shop.example/*/checkout*"), True),
        (one("page_url", "matches", "https://shop.example/*/cart*"), False),
        (one("page_url", "matches", "*.example/fr/checkout"), False),  # the whole URL must match
        (one("page_url", "starts_with", "https://shop"), True),
        (one("page_title", "contains", "checkout"), True),
        (one("referrer", "contains", "google"), True),
        (one("referrer", "is_not_set"), False),
        (one("time_on_page", "greater_or_equal", 42), True),
        (one("time_on_page", "greater_than", 42), False),
        (one("visit_count", "less_than", 5), True),
        (one("visitor", "equals", "returning"), True),
        (one("visitor", "equals", "new"), False),
        (one("language", "equals", "fr"), True),  # fr matches fr-CA
        (one("language", "equals", "fr-fr"), False),
        (one("language", "not_in", None, values=["de", "en"]), True),
        (one("country", "in", None, values=["de", "fr"]), True),
        (one("country", "not_equals", "fr"), False),
        (one("device", "equals", "mobile"), True),
        (one("device", "equals", "desktop"), False),
        (one("event", "equals", "added_to_cart"), True),
        (one("event", "equals", "signed_up"), False),
        (one("segment", "member_of", 7), True),
        (one("segment", "not_member_of", 7), False),
        (one("segment", "member_of", 8), False),
        (one("attribute.plan", "equals", "gold"), True),
        (one("attribute.seats", "greater_than", 10), True),
        (one("attribute.seats", "equals", 12), True),
        (one("attribute.beta", "equals", True), True),
        (one("attribute.beta", "equals", 1), False),
        (one("attribute.labels", "contains", "b"), True),
        (one("attribute.missing", "is_not_set"), True),
        ({"match": "all", "conditions": []}, True),
    ],
)
def test_each_field_and_operator(rules: dict, expected: bool) -> None:
    assert check(rules, V) is expected


def test_all_and_any_and_nested_groups_with_more_than_two_conditions() -> None:
    url = {"field": "page_url", "operator": "contains", "value": "/checkout"}
    desktop = {"field": "device", "operator": "equals", "value": "desktop"}
    new = {"field": "visitor", "operator": "equals", "value": "new"}
    long = {"field": "time_on_page", "operator": "greater_than", "value": 30}
    assert check({"match": "all", "conditions": [url, desktop]}, V) is False
    assert check({"match": "any", "conditions": [url, desktop]}, V) is True
    # url AND (desktop OR long): three conditions, so a nested group is allowed.
    nested = {"match": "all", "conditions": [url], "groups": [{"match": "any", "conditions": [desktop, long]}]}
    assert check(nested, V) is True
    nested["groups"][0]["conditions"] = [desktop, new]
    assert check(nested, V) is False


@pytest.mark.parametrize("count", [1, 2])
def test_nested_groups_with_two_conditions_or_fewer_are_rejected(count: int) -> None:
    url = {"field": "page_url", "operator": "contains", "value": "/checkout"}
    rules = {"match": "all", "conditions": [url] * (count - 1), "groups": [{"match": "any", "conditions": [url]}]}
    with pytest.raises(p.RuleError) as caught:
        p.validate_rules(rules)
    assert caught.value.path == ["groups"]


@pytest.mark.parametrize(
    ("rules", "path", "code"),
    [
        (one("colour", "equals", "red"), ["conditions", "0", "field"], "UNKNOWN_FIELD"),
        (one("page_url", "greater_than", 3), ["conditions", "0", "operator"], "INVALID_OPERATOR"),
        (one("time_on_page", "greater_than", "soon"), ["conditions", "0", "value"], "INVALID_VALUE"),
        (one("device", "equals", "fridge"), ["conditions", "0", "value"], "INVALID_VALUE"),
        (one("country", "equals", "France"), ["conditions", "0", "value"], "INVALID_VALUE"),
        (one("page_url", "contains", "x" * 501), ["conditions", "0", "value"], "INVALID_VALUE"),
        (one("country", "in", None, values=[]), ["conditions", "0", "values"], "INVALID_VALUE"),
        (one("attribute.Bad-Key", "equals", "x"), ["conditions", "0", "field"], "UNKNOWN_FIELD"),
        ({"match": "some"}, ["match"], "INVALID"),
    ],
)
def test_bad_conditions_name_their_path(rules: dict, path: list[str], code: str) -> None:
    with pytest.raises(p.RuleError) as caught:
        p.validate_rules(rules)
    assert (caught.value.path, caught.value.code) == (path, code)


def test_deep_and_huge_trees_are_refused_before_anything_else() -> None:
    leaf = {"field": "page_url", "operator": "contains", "value": "a"}
    deep: dict = {"match": "all", "conditions": [leaf, leaf, leaf]}
    for _ in range(500):
        deep = {"match": "all", "conditions": [leaf], "groups": [deep]}
    with pytest.raises(p.RuleError) as caught:
        p.validate_rules(deep)
    assert caught.value.code == "TOO_DEEP"
    with pytest.raises(p.RuleError) as caught:
        p.validate_rules({"match": "any", "conditions": [leaf] * 10_000})
    assert caught.value.code == "TOO_MANY_CONDITIONS"


def test_emoji_are_found_and_plain_symbols_are_not() -> None:
    assert p.find_emoji("Need help? 👋") == "👋"
    assert p.find_emoji("On sale ☀ today") == "☀"
    assert p.find_emoji("Flag 🇫🇷") is not None
    assert p.find_emoji("Prices in € and © Shop — 50% off, café") is None


def test_window_and_frequency() -> None:
    hours = BusinessHours.parse({"timeZone": "UTC", "days": {"mon": [["09:00", "17:00"]]}})
    monday_noon = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    sunday_noon = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert p.in_window("business_hours", hours, monday_noon)
    assert not p.in_window("business_hours", hours, sunday_noon)
    assert p.in_window("any_time", hours, sunday_noon)
    assert p.in_window("business_hours", None, sunday_noon)  # no hours: always open
    earlier = [(10, 1)]
    assert not p.frequency_allows("once_per_contact", earlier, 11, 1)
    assert not p.frequency_allows("once_per_visit", earlier, 10, 2)
    assert p.frequency_allows("once_per_visit", earlier, 11, 1)
    assert not p.frequency_allows("every_time", earlier, 10, 1)
    assert p.frequency_allows("every_time", earlier, 10, 2)
