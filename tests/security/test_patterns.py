"""Patterns a hostile admin writes, against text a hostile visitor sends: proactive MATCHES
wildcards in linear time (the server keeps answering while a pathological pattern meets a
long URL), their limits at save time, and search text that stays literal in SQL."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from domain import proactive as p
from tests.conftest import LiveServer, Tenant, gql, start_server
from tests.proactive.helpers import ACTION, CREATE, ERRORS, REPORT, SESSION, channel_id, errors

# 10 stars, the most a pattern may have: as a regex (.*a.*a…b), a 2,000-character URL of
# a's would take longer than anyone would wait.
PATHOLOGICAL = "*a" * 9 + "*b"
LONG_URL = "https://shop.example/" + "a" * 2000


def matches_rule(pattern: str) -> dict:
    return {"match": "ALL", "conditions": [{"field": "PAGE_URL", "operator": "MATCHES", "value": {"text": pattern}}]}


# -- the matcher ---------------------------------------------------------------------------


def reference(pattern: str, text: str) -> bool:
    """What MATCHES meant when it was a regex (fine for short texts)."""
    regex = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern))
    return re.fullmatch(regex, text, re.DOTALL) is not None


def test_the_wildcard_matcher_means_what_the_regex_meant() -> None:
    rng = random.Random(21)
    for _ in range(20_000):
        pattern = "".join(rng.choice("ab*.?") for _ in range(rng.randint(0, 7)))
        text = "".join(rng.choice("ab.?") for _ in range(rng.randint(0, 9)))
        assert p.wildcard(pattern)(text) is reference(pattern, text), (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (PATHOLOGICAL, [False, False, True]),
        ("*a*a*a*a*a*a*a*a*a*a*a*a*b", [False, False, True]),
        ("*" + "a*" * 250 + "b", [False, False, True]),
        ("a" * 250 + "*" + "a" * 249, [False, True, False]),
    ],
)
def test_a_pathological_pattern_over_a_long_text_answers_at_once(pattern: str, expected: list[bool]) -> None:
    test = p.wildcard(pattern)
    started = time.perf_counter()
    assert [test(text) for text in (LONG_URL, "a" * 100_000, "a" * 100_000 + "b")] == expected
    assert time.perf_counter() - started < 0.5


def test_rules_keep_case_insensitive_whole_url_matching() -> None:
    check = p.compile_rules(
        p.validate_rules(
            {
                "match": "all",
                "conditions": [
                    {"field": "page_url", "operator": "matches", "value": "HTTPS://Shop.Example/*/Checkout*"}
                ],
            }
        )
    )
    assert check(p.Visitor(url="https://shop.example/fr/checkout?step=2"))
    assert check(p.Visitor(url="HTTPS://SHOP.EXAMPLE/FR/CHECKOUT"))
    assert not check(p.Visitor(url="https://shop.example/fr/cart"))
    assert not check(p.Visitor(url="https://www.shop.example/fr/checkout"))  # the whole URL


# -- limits when a rule is saved -----------------------------------------------------------


async def test_too_many_wildcards_or_too_long_a_pattern_is_refused_naming_the_condition(tenant: Tenant) -> None:
    base = {"name": "Greedy", "text": "Hi", "channelId": await channel_id(tenant)}
    for pattern in ("*a" * 11, "https://shop.example/" + "x" * 500 + "*"):
        found = await errors(
            tenant.api,
            CREATE,
            {"i": {**base, "rules": matches_rule(pattern)}},
            tenant.owner_token,
            "createProactiveMessage",
        )
        assert found == [(["rules", "conditions", "0", "value"], "INVALID_VALUE")], pattern
    nested = {
        "match": "ANY",
        "conditions": [],
        "groups": [
            {
                "match": "ALL",
                "conditions": [
                    {"field": "REFERRER", "operator": "IS_SET"},
                    {"field": "TIME_ON_PAGE", "operator": "GREATER_THAN", "value": {"number": 1}},
                ],
            },
            {
                "match": "ALL",
                "conditions": [{"field": "PAGE_TITLE", "operator": "MATCHES", "value": {"text": "*x" * 11}}],
            },
        ],
    }
    found = await errors(
        tenant.api, CREATE, {"i": {**base, "rules": nested}}, tenant.owner_token, "createProactiveMessage"
    )
    assert found == [(["rules", "groups", "1", "conditions", "0", "value"], "INVALID_VALUE")]
    # Ten stars, and other operators with stars, are fine.
    for rules in (
        matches_rule(PATHOLOGICAL),
        {"match": "ALL", "conditions": [{"field": "PAGE_URL", "operator": "CONTAINS", "value": {"text": "*" * 40}}]},
    ):
        assert (
            await errors(
                tenant.api, CREATE, {"i": {**base, "rules": rules}}, tenant.owner_token, "createProactiveMessage"
            )
            == []
        )


async def test_the_refusal_message_says_what_the_limit_is(tenant: Tenant) -> None:
    data = await tenant.api(
        CREATE,
        {
            "i": {
                "name": "Greedy",
                "text": "Hi",
                "channelId": await channel_id(tenant),
                "rules": matches_rule("*a" * 11),
            }
        },
        token=tenant.owner_token,
    )
    [error] = data["createProactiveMessage"]["userErrors"]
    assert "at most 10" in error["message"]


# -- a live server stays responsive ----------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    s = start_server(tmp_path, name="patterns-server")
    yield s
    s.stop()


async def test_a_pathological_pattern_does_not_stall_the_server(server: LiveServer, tenant: Tenant) -> None:
    _, admin = await tenant.agent("admin")
    created = (
        await gql(
            server,
            CREATE,
            {
                "i": {
                    "name": "Backtracker",
                    "text": "Hello",
                    "channelId": await channel_id(tenant),
                    "rules": matches_rule(PATHOLOGICAL),
                    "sendWindow": "ANY_TIME",
                    "frequency": "EVERY_TIME",
                }
            },
            admin,
        )
    )["createProactiveMessage"]
    assert created["userErrors"] == []
    published = (
        await gql(
            server,
            ACTION.format(name="publishProactiveMessage", errors=ERRORS),
            {"i": {"id": created["proactiveMessage"]["id"]}},
            admin,
        )
    )["publishProactiveMessage"]
    assert published["proactiveMessage"]["status"] == "LIVE"
    session = (
        await gql(server, SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": "hostile"}}, "")
    )["startContactSession"]
    contact = session["token"]
    # Warm up: the process compiles the channel's live messages on its first page view.
    first = (await gql(server, REPORT, {"i": {"url": "https://shop.example/" + "a" * 9 + "b"}}, contact))[
        "reportPageView"
    ]
    assert first["delivery"] is not None  # the pattern does match what it should

    probes: list[float] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

        async def view() -> tuple[dict, float]:
            started = time.perf_counter()
            body = (
                await http.post(
                    "/graphql",
                    json={"query": REPORT, "variables": {"i": {"url": LONG_URL}}},
                    headers={"authorization": f"Bearer {contact}"},
                )
            ).json()
            return body, time.perf_counter() - started

        async def probe_health(done: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as own:
                deadline = time.perf_counter() + 1.0
                while not done.is_set() or time.perf_counter() < deadline:
                    started = time.perf_counter()
                    assert (await own.get("/healthz")).text == "ok"
                    probes.append(time.perf_counter() - started)
                    await asyncio.sleep(0.05)

        done = asyncio.Event()
        prober = asyncio.create_task(probe_health(done))
        await asyncio.sleep(0.1)
        results = await asyncio.gather(view(), view(), view())
        done.set()
        await prober

    for body, took in results:
        assert body.get("errors") is None and body["data"]["reportPageView"]["userErrors"] == []
        assert body["data"]["reportPageView"]["delivery"] is None
        assert took < 2.0, f"reportPageView took {took:.2f} s"
    assert len(probes) >= 10
    assert max(probes) < 0.2, f"/healthz took up to {max(probes) * 1000:.0f} ms"


# -- search text is literal in SQL -----------------------------------------------------------


async def test_search_text_with_like_wildcards_matches_itself_only(tenant: Tenant) -> None:
    for name in ("100% Sure", "Under_score", "Plain Name"):
        await tenant.contact(name=name)
    query = "query($s: String) { contacts(first: 10, search: $s) { edges { node { name } } } }"

    async def found(term: str) -> set[str]:
        data = await tenant.api(query, {"s": term}, token=tenant.owner_token)
        return {e["node"]["name"] for e in data["contacts"]["edges"]}

    assert await found("%") == {"100% Sure"}
    assert await found("_") == {"Under_score"}
    assert await found("0%") == {"100% Sure"}
    rules = {"match": "ALL", "conditions": [{"field": "name", "operator": "CONTAINS", "value": {"text": "_"}}]}
    data = await tenant.api(
        "query($r: SegmentRulesInput!) { previewSegment(rules: $r, first: 10) { count } }",
        {"r": rules},
        token=tenant.owner_token,
    )
    assert data["previewSegment"]["count"] == 1
