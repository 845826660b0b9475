"""Proactive-message benchmark: evaluating a channel's 100 live messages against one page
view, beside the whole reportPageView mutation that does it.

    .venv/bin/python -m bench.proactive                   # SQLite in a temporary directory
    .venv/bin/python -m bench.proactive --postgres        # a scratch database beside BENCH_DATABASE_URL
    .venv/bin/python -m bench.proactive --messages 1000 --views 20000

1. Evaluation alone (domain.proactive.matching, the code reportPageView runs on the cached
   compiled messages): 100 messages with rules of every kind (wildcard and contains URLs,
   time on page, new/returning, language, country, device, segment membership, custom
   attributes, nested groups), against page views cycling through visitors that match
   none, a few or many of them. Per page view: median and p99 over --views views,
   after a warm-up. Also: compiling the 100 messages (what a cache miss costs).
2. The mutation (reportPageView through the app in process — Starlette, Strawberry,
   Tortoise, the real database and a private Redis; no HTTP socket): a contact session
   reports page views of a page no message matches (visit bookkeeping, page-view event,
   evaluation) and of a page one EVERY_TIME message matches (plus the delivery: its row,
   the counter, the receipt and the push). Median and p95 of sequential calls.

Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import machine_facts

DEFAULT_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test")


def rules_for(i: int) -> dict[str, Any]:
    """One of ten rule shapes, varied by i, as an admin would write them."""
    n = i % 10
    c = [
        [{"field": "page_url", "operator": "matches", "value": f"https://shop.example/*/product-{i}*"}],
        [
            {"field": "page_url", "operator": "contains", "value": f"/section-{i}/"},
            {"field": "time_on_page", "operator": "greater_or_equal", "value": 30},
        ],
        [
            {"field": "visitor", "operator": "equals", "value": "returning"},
            {"field": "page_url", "operator": "starts_with", "value": f"https://shop.example/pricing/{i}"},
        ],
        [
            {"field": "language", "operator": "in", "values": ["fr", "de", "pt"]},
            {"field": "country", "operator": "in", "values": ["FR", "DE", "PT", "BR"]},
            {"field": "page_title", "operator": "contains", "value": f"offer {i}"},
        ],
        [
            {"field": "device", "operator": "equals", "value": "mobile"},
            {"field": "referrer", "operator": "contains", "value": f"campaign-{i}"},
        ],
        [
            {"field": "segment", "operator": "member_of", "value": 1000 + i},
            {"field": "page_url", "operator": "contains", "value": "/checkout"},
        ],
        [
            {"field": "attribute.plan", "operator": "equals", "value": f"plan-{i}"},
            {"field": "visit_count", "operator": "greater_than", "value": 3},
        ],
        [{"field": "event", "operator": "equals", "value": f"event_{i}"}],
        [
            {"field": "page_url", "operator": "matches", "value": f"*/blog/*-{i}"},
            {"field": "attribute.seats", "operator": "greater_than", "value": 50},
        ],
        [{"field": "time_on_page", "operator": "greater_than", "value": 120}],
    ][n]
    if n == 3:  # nested: title AND (language any of … OR country any of …)
        return {"match": "all", "conditions": [c[2]], "groups": [{"match": "any", "conditions": c[:2]}]}
    return {"match": "any" if n == 4 else "all", "conditions": c}


def visitors(messages: int) -> list[Any]:
    from domain.proactive import Visitor

    rng = random.Random(7)
    found = []
    for k in range(64):
        i = rng.randrange(messages)
        found.append(
            Visitor(
                url=rng.choice(
                    [
                        f"https://shop.example/fr/product-{i}?ref=x",
                        f"https://shop.example/section-{i}/page",
                        "https://shop.example/",
                        f"https://shop.example/blog/post-{i}",
                        "https://shop.example/fr/checkout",
                    ]
                ),
                title=rng.choice(["Home", f"Special offer {i}", "Checkout"]),
                referrer=rng.choice(["", f"https://ads.example/campaign-{i}"]),
                time_on_page=rng.choice([0, 10, 45, 200]),
                visit_count=rng.choice([1, 2, 5]),
                language=rng.choice(["en-US", "fr-FR", "pt-BR"]),
                country=rng.choice(["US", "FR", "BR"]),
                device=rng.choice(["desktop", "mobile"]),
                event=rng.choice([None, f"event_{i}"]),
                segment_ids=frozenset(rng.sample(range(1000, 1000 + messages), 3)),
                attributes={"plan": f"plan-{rng.randrange(messages)}", "seats": rng.choice([5, 80])},
            )
        )
    return found


def bench_evaluation(messages: int, views: int) -> dict[str, float]:
    from domain.proactive import compile_message, matching
    from domain.schedule import BusinessHours

    started = time.perf_counter()
    compiled = [
        compile_message(i, rules_for(i), "every_time", "business_hours" if i % 2 else "any_time", {"messageId": i})
        for i in range(messages)
    ]
    compile_ms = (time.perf_counter() - started) * 1000
    hours = BusinessHours.parse(
        {
            "timeZone": "Europe/Paris",
            "days": {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        }
    )
    people = visitors(messages)
    at = datetime.now(UTC)
    hits = 0
    for v in people * 20:  # warm-up
        hits += len(matching(compiled, v, at, hours))
    samples = []
    hits = 0
    for k in range(views):
        v = people[k % len(people)]
        t = time.perf_counter_ns()
        hits += len(matching(compiled, v, at, hours))
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    return {
        "compile_ms": compile_ms,
        "median_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_matches": hits / views,
    }


async def bench_mutation(database_url: str, redis_url: str, messages: int, calls: int) -> dict[str, dict[str, float]]:
    import httpx

    from core.db import migrate

    await migrate(database_url)
    from asgi import app
    from resolvers.proactive import live_cache

    results: dict[str, dict[str, float]] = {}
    async with app.router.lifespan_context(app):
        from models.proactive import ProactiveMessage, ProactiveStatus
        from resolvers.workspaces import create_workspace

        boot = await create_workspace(
            "Bench", "owner@example.com", "correct horse battery", identity_verification=False
        )
        await ProactiveMessage.bulk_create(
            [
                ProactiveMessage(
                    workspace_id=boot.workspace.id,
                    channel_id=boot.channel.id,
                    name=f"m{i}",
                    text="Can we help?",
                    status=ProactiveStatus.LIVE,
                    rules=rules_for(i),
                    frequency="every_time",
                )
                for i in range(messages)
            ]
        )
        await ProactiveMessage.create(
            workspace_id=boot.workspace.id,
            channel_id=boot.channel.id,
            name="hit",
            text="Hello",
            status=ProactiveStatus.LIVE,
            frequency="every_time",
            rules={
                "match": "all",
                "conditions": [{"field": "page_url", "operator": "contains", "value": "/deliver-here"}],
            },
        )
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.bench") as http:
            started = await http.post(
                "/graphql",
                json={
                    "query": "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }",
                    "variables": {"i": {"channelKey": boot.channel.public_key, "externalId": "bench"}},
                },
            )
            token = started.json()["data"]["startContactSession"]["token"]
            doc = (
                "mutation($i: ReportPageViewInput!) { reportPageView(input: $i) { delivery { id } "
                "userErrors { code } } }"
            )
            for label, url in (
                ("no message matches", "https://shop.example/nothing"),
                ("one message delivered", "https://shop.example/deliver-here"),
            ):
                samples = []
                for k in range(calls + 50):
                    t = time.perf_counter()
                    body = (
                        await http.post(
                            "/graphql",
                            json={"query": doc, "variables": {"i": {"url": url}}},
                            headers={"authorization": f"Bearer {token}"},
                        )
                    ).json()
                    elapsed = time.perf_counter() - t
                    assert not body.get("errors") and body["data"]["reportPageView"]["userErrors"] == [], body
                    delivered = body["data"]["reportPageView"]["delivery"] is not None
                    assert delivered == (label == "one message delivered"), body
                    if k >= 50:
                        samples.append(elapsed * 1000)
                samples.sort()
                results[label] = {"median_ms": statistics.median(samples), "p95_ms": samples[int(len(samples) * 0.95)]}
        results["cache"] = {"compilations": float(live_cache.compilations)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--views", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    ev = bench_evaluation(args.messages, args.views)
    tmp = tempfile.mkdtemp(prefix="parley-bench-proactive-")
    from core.embedded_redis import PrivateRedis

    redis = PrivateRedis(workdir=tmp).start()
    scratch = None
    if args.postgres:
        from core.scratch_db import ScratchDatabase

        scratch = ScratchDatabase.beside(DEFAULT_DATABASE_URL, prefix="parley_bench")
        asyncio.run(scratch.create())
        database_url = scratch.url
    else:
        database_url = f"sqlite://{tmp}/bench.sqlite3"
    os.environ.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis.url,
        REDIS_PREFIX=f"parley-bench-{secrets.token_hex(4)}",
        SECRET_KEY=os.environ.get("SECRET_KEY", secrets.token_hex(32)),
        ENV="prod",
    )
    try:
        mutation = asyncio.run(bench_mutation(database_url, redis.url, args.messages, args.calls))
    finally:
        redis.close()
        if scratch is not None:
            asyncio.run(scratch.drop())
    facts = machine_facts()
    print(
        f"Machine: {facts['cpus']} CPUs ({facts['cpu model']}), {facts['memory']}, Python {facts['python']}; "
        f"database {'PostgreSQL' if args.postgres else 'SQLite'}.\n"
    )
    print(f"| {args.messages} live messages, one page view | median | p99 |")
    print("| --- | ---: | ---: |")
    print(f"| evaluation (compiled rules, window) | {ev['median_us']:.1f} µs | {ev['p99_us']:.1f} µs |")
    print(
        f"\nCompiling the {args.messages} messages (a cache miss): {ev['compile_ms']:.1f} ms; "
        f"{ev['mean_matches']:.2f} messages matched per page view on average.\n"
    )
    print("| reportPageView, in process, sequential | median | p95 |")
    print("| --- | ---: | ---: |")
    for label, figures in mutation.items():
        if label != "cache":
            print(f"| {label} | {figures['median_ms']:.2f} ms | {figures['p95_ms']:.2f} ms |")
    print(
        f"\nCompilations during the run: {int(mutation['cache']['compilations'])} "
        "(the first page view; then the cache)."
    )


if __name__ == "__main__":
    main()
