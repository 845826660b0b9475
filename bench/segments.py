"""Segment benchmark: compiled rules against hand-written SQL on a large workspace.

    .venv/bin/python -m bench.segments                      # 1,000,000 contacts on PostgreSQL
    .venv/bin/python -m bench.segments --contacts 200000 --sqlite
    .venv/bin/python -m bench.segments --keep               # keep the seeded database, then
    .venv/bin/python -m bench.segments --reuse postgres://root@127.0.0.1:5432/parley_bench_1a2b3c4d

Creates a database of its own (parley_bench_<random> beside BENCH_DATABASE_URL, default
postgres://root@127.0.0.1:5432/test; or a temporary SQLite file), migrates, seeds one
workspace with contacts, tags and events in SQL, then for six representative segments
times the COUNT and the first page (50, most recent first) through the compiler — the code
previewSegment and Segment.count run — beside a hand-written query for the same set, a
full membership refresh (the first, which inserts every member, and a second, which finds
nothing to change), and Segment.contacts' pages from the membership (the resolver's code)
beside a hand-written query and beside the way it paged before (walking the contacts).
Compiled and hand-written queries run in alternation, and each figure is the median of
--repeat runs. Prints Markdown tables for BENCHMARKS.md.

--reuse skips the seeding (about a minute for 1,000,000 contacts) and runs on a database
kept by an earlier --keep run, migrating it first. Its refresh figures are not those of a
fresh database: the earlier run's memberships are still there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

SEGMENTS: list[tuple[str, dict[str, Any], str]] = [
    (
        "simple: country = PT",
        {"match": "all", "conditions": [{"field": "country", "operator": "equals", "value": "PT"}]},
        "lower(c.country) = 'pt'",
    ),
    (
        "nested: PT or ES, or (VIP and seen in 30 days)",
        {
            "match": "any",
            "conditions": [{"field": "country", "operator": "in", "values": ["PT", "ES"]}],
            "groups": [
                {
                    "match": "all",
                    "conditions": [
                        {"field": "vip", "operator": "equals", "value": True},
                        {"field": "last_seen_at", "operator": "within_last_days", "days": 30},
                    ],
                }
            ],
        },
        "(lower(c.country) IN ('pt', 'es') OR (c.vip AND c.last_seen_at >= :now - interval '30 days'))",
    ),
    (
        "custom attribute: plan = pro and seats >= 10",
        {
            "match": "all",
            "conditions": [
                {"field": "attribute.plan", "operator": "equals", "value": "pro"},
                {"field": "attribute.seats", "operator": "greater_or_equal", "value": 10},
            ],
        },
        "c.attributes->>'plan' = 'pro' AND (c.attributes->>'seats')::numeric >= 10",
    ),
    (
        "custom attribute, selective: account = 12345",
        {"match": "all", "conditions": [{"field": "attribute.account", "operator": "equals", "value": 12345}]},
        # By hand, with the GIN index in mind (`(c.attributes->>'account')::numeric = 12345`
        # scans every contact: see BENCHMARKS.md).
        "c.attributes @> '{\"account\": 12345}'",
    ),
    (
        "events: purchase at least 2 times in 90 days",
        {
            "match": "all",
            "conditions": [{"field": "event.purchase", "event_count_op": "at_least", "count": 2, "days": 90}],
        },
        "(SELECT count(*) FROM contact_events e WHERE e.contact_id = c.id AND e.name = 'purchase' "
        "AND e.occurred_at >= :now - interval '90 days') >= 2",
    ),
    (
        "tag: trial, not seen for 60 days",
        {
            "match": "all",
            "conditions": [
                {"field": "tag", "operator": "equals", "value": "trial"},
                {"field": "last_seen_at", "operator": "more_than_days_ago", "days": 60},
            ],
        },
        "EXISTS (SELECT 1 FROM contact_tags t WHERE t.contact_id = c.id AND t.name = 'trial') "
        "AND c.last_seen_at < :now - interval '60 days'",
    ),
]

SEED_SQL = [
    # Contacts: countries, VIPs, a year of last-seen times, plan, seats and account attributes.
    """INSERT INTO contacts (workspace_id, name, email, country, vip, blocked, gdpr_consent, sms_consent,
         attributes, first_seen_at, last_seen_at, created_at, updated_at)
       SELECT :ws, 'Contact ' || g, 'c' || g || '@example.com',
         (ARRAY['PT','ES','FR','DE','GB','US','BR','IN','JP','HU'])[1 + g % 10],
         g % 20 = 0, false, g % 3 = 0, 'never',
         jsonb_build_object('plan', (ARRAY['free','pro','enterprise'])[1 + g % 3], 'seats', g % 50, 'account', g),
         :now - (g % 365) * interval '1 day' - interval '400 days',
         :now - (g % 365) * interval '1 day' - (g % 86400) * interval '1 second',
         :now, :now
       FROM generate_series(1, :n) AS g""",
    # 20% of contacts carry the "trial" tag.
    """INSERT INTO contact_tags (workspace_id, contact_id, name, created_at)
       SELECT :ws, id, 'trial', :now FROM contacts WHERE workspace_id = :ws AND id % 5 = 0""",
    # Three events per contact over 180 days, two in three of them purchases.
    """INSERT INTO contact_events (workspace_id, contact_id, kind, name, properties, occurred_at, created_at)
       SELECT :ws, c.id, 'event', (ARRAY['login','purchase','purchase'])[1 + (c.id + k) % 3], '{}'::jsonb,
              :now - ((c.id * 7 + k * 13) % 180) * interval '1 day', :now
       FROM contacts c, generate_series(1, 3) AS k WHERE c.workspace_id = :ws""",
    "ANALYZE",
]


def _bind(sql: str, values: dict[str, Any], postgres: bool) -> tuple[str, list[Any]]:
    """:name placeholders to the dialect's, in order of appearance."""
    import re

    params: list[Any] = []

    def repl(m: re.Match[str]) -> str:
        value = values[m.group(1)]
        params.append(value)
        if not postgres:
            return "?"
        return f"${len(params)}::timestamptz" if isinstance(value, datetime) else f"${len(params)}"

    return re.sub(r"(?<!:):([a-z]+)\b", repl, sql), params


async def _timed(conn: Any, sql: str, params: list[Any], repeat: int) -> float:
    """Median milliseconds of `repeat` runs, after one warm-up run."""
    return (await _timed_side_by_side(conn, [(sql, params)], repeat))[0]


async def _timed_side_by_side(conn: Any, queries: list[tuple[str, list[Any]]], repeat: int) -> list[float]:
    """Median milliseconds of each query over `repeat` rounds that run each once in turn,
    after one warm-up round: a change of load on the machine then weighs on all alike."""
    samples: list[list[float]] = [[] for _ in queries]
    for round_ in range(repeat + 1):
        for (sql, params), times in zip(queries, samples, strict=True):
            start = time.perf_counter()
            await conn.execute_query_dict(sql, params)
            if round_:
                times.append((time.perf_counter() - start) * 1000)
    return [statistics.median(times) for times in samples]


async def main(
    contacts: int, sqlite: bool, repeat: int, keep: bool = False, reuse: str | None = None, refresh: bool = True
) -> None:
    from core.scratch_db import ScratchDatabase

    scratch = None
    if reuse:
        os.environ["DATABASE_URL"] = reuse
        await _run(contacts, reuse.startswith("sqlite"), repeat, seed=False, refresh=refresh)
        return
    if sqlite:
        url = f"sqlite://{tempfile.mkdtemp(prefix='parley-bench-')}/bench.sqlite3"
    else:
        base = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
        scratch = ScratchDatabase.beside(base, prefix="parley_bench")
        await scratch.create()
        url = scratch.url
    os.environ["DATABASE_URL"] = url
    try:
        await _run(contacts, sqlite, repeat, refresh=refresh)
    finally:
        if keep:
            print(f"\nkept the database: {url}")
        elif scratch is not None:
            await scratch.drop()


async def _run(contacts: int, sqlite: bool, repeat: int, seed: bool = True, refresh: bool = True) -> None:
    from tortoise import Tortoise, connections

    from core.db import migrate, tortoise_config
    from models.contacts import Contact
    from models.workspaces import Workspace

    await migrate()
    await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
    conn = connections.get("default")
    now = datetime.now(UTC)
    if not seed:
        bench = await Workspace.filter(name="Bench").order_by("id").first()
        assert bench is not None, "no Bench workspace in this database: keep one with --keep"
        ws = bench.id
        print(
            f"reusing {await Contact.filter(workspace_id=ws).count():,} contacts "
            f"({'SQLite' if sqlite else 'PostgreSQL'})\n"
        )
    else:
        ws = await _seed(conn, contacts, sqlite, now)
    await _measure(conn, ws, sqlite, repeat, now, refresh)
    await Tortoise.close_connections()


async def _seed(conn: Any, contacts: int, sqlite: bool, now: datetime) -> int:
    from models.contacts import AttributeDefinition
    from resolvers.workspaces import create_workspace

    boot = await create_workspace("Bench", "owner@example.com", "correct horse battery")
    ws = boot.workspace.id
    await AttributeDefinition.create(workspace_id=ws, key="plan", label="Plan", type="text")
    await AttributeDefinition.create(workspace_id=ws, key="seats", label="Seats", type="number")
    await AttributeDefinition.create(workspace_id=ws, key="account", label="Account", type="number")
    started = time.perf_counter()
    for statement in SEED_SQL:
        if sqlite:
            statement = _sqlite_seed(statement)
            if statement is None:
                continue
        sql, params = _bind(
            statement,
            {"ws": ws, "now": now if not sqlite else now.isoformat(" ", timespec="microseconds"), "n": contacts},
            not sqlite,
        )
        await conn.execute_query(sql, params)
    print(
        f"seeded {contacts:,} contacts in {time.perf_counter() - started:.1f} s "
        f"({'SQLite' if sqlite else 'PostgreSQL'})\n"
    )
    return int(ws)


async def _measure(conn: Any, ws: int, sqlite: bool, repeat: int, now: datetime, with_refresh: bool) -> None:
    from domain import segments as rules_lang
    from jobs.segments import refresh
    from models.segments import Segment
    from services.segments import matching_sql

    types = {"plan": "text", "seats": "number", "account": "number"}
    rows = [
        "| segment | members | count: compiled | count: hand SQL | ratio "
        "| first page: compiled | first page: hand SQL | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, rules, hand in SEGMENTS:
        group = rules_lang.parse(rules, types)
        where, params = matching_sql(group, ws, now=now)
        hand_where, hand_params = (
            _bind(f"c.workspace_id = :ws AND ({hand})", {"ws": ws, "now": now}, not sqlite)
            if not sqlite
            else (None, None)
        )
        count_sql = f"SELECT count(*) AS n FROM contacts c WHERE {where}"
        page_sql = f"SELECT c.id FROM contacts c WHERE {where} ORDER BY c.last_seen_at DESC, c.id DESC LIMIT 50"
        members = (await conn.execute_query_dict(count_sql, params))[0]["n"]
        if hand_where is not None:
            hand_count = f"SELECT count(*) AS n FROM contacts c WHERE {hand_where}"
            hand_page = (
                f"SELECT c.id FROM contacts c WHERE {hand_where} ORDER BY c.last_seen_at DESC, c.id DESC LIMIT 50"
            )
            hand_members = (await conn.execute_query_dict(hand_count, hand_params))[0]["n"]
            assert hand_members == members, (label, hand_members, members, where, params)
            count_ms, hand_count_ms = await _timed_side_by_side(
                conn, [(count_sql, params), (hand_count, hand_params)], repeat
            )
            page_ms, hand_page_ms = await _timed_side_by_side(
                conn, [(page_sql, params), (hand_page, hand_params)], repeat
            )
            rows.append(
                f"| {label} | {members:,} | {count_ms:.1f} ms | {hand_count_ms:.1f} ms "
                f"| {count_ms / hand_count_ms:.2f}× | {page_ms:.1f} ms | {hand_page_ms:.1f} ms "
                f"| {page_ms / hand_page_ms:.2f}× |"
            )
        else:
            count_ms = await _timed(conn, count_sql, params, repeat)
            page_ms = await _timed(conn, page_sql, params, repeat)
            rows.append(f"| {label} | {members:,} | {count_ms:.1f} ms | – | – | {page_ms:.1f} ms | – | – |")
    print("\n".join(rows))
    if not with_refresh:
        return

    print(
        "\n| full refresh, then Segment.contacts | members | first refresh (all join) | second (no change) "
        "| first page (50) | page 50 from the middle | hand SQL, first page | before: walk the contacts |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    ctx = _bench_context(ws)
    for label, rules, _ in SEGMENTS:
        segment = await Segment.create(workspace_id=ws, name=label, rules=rules)
        start = time.perf_counter()
        first = await refresh(segment)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        await refresh(segment)
        second_s = time.perf_counter() - start
        segment = await Segment.get(id=segment.id)
        print(
            f"| {label} | {first['members']:,} | {first_s:.2f} s | {second_s:.2f} s | "
            + " | ".join(f"{ms:.1f} ms" for ms in await _member_pages(conn, ctx, segment, repeat))
            + " |"
        )


def _bench_context(ws: int) -> Any:
    """A resolver context for the bench workspace: an API key that may read contacts."""
    from core.context import Context
    from core.permissions import Permission, Principal, PrincipalKind

    principal = Principal(PrincipalKind.API_KEY, ws, frozenset({Permission.CONTACTS_READ}))
    return Context(request=None, response=None, hub=None, principal=principal, request_id="bench")


async def _member_pages(conn: Any, ctx: Any, segment: Any, repeat: int) -> list[float]:
    """Median milliseconds, in alternation, of: Segment.contacts' first page and a page
    from the middle of the membership (resolvers.segments.list_members, the code the API
    runs, contacts loaded); the first page by hand in SQL; and the first page the way
    Segment.contacts read it before (contacts by last-seen time, probing the membership:
    what contacts(segmentId:) still does)."""
    from core.db import SqlBuilder
    from resolvers.contacts import CONTACT_ORDER
    from resolvers.pagination import _encode, paginate
    from resolvers.segments import list_members, members_query

    q = SqlBuilder()
    middle = await conn.execute_query_dict(
        f"SELECT last_seen_at, contact_id FROM segment_memberships WHERE segment_id = {q.param(segment.id)} "
        f"ORDER BY last_seen_at DESC, contact_id DESC LIMIT 1 OFFSET {segment.member_count // 2}",
        q.params,
    )
    cursor = _encode([middle[0]["last_seen_at"], middle[0]["contact_id"]]) if middle else None
    h = SqlBuilder()
    hand = (
        "SELECT c.* FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id "
        f"WHERE m.segment_id = {h.param(segment.id)} "
        "ORDER BY m.last_seen_at DESC, m.contact_id DESC LIMIT 50"
    )

    async def before() -> Any:
        return await paginate(await members_query(ctx, segment), CONTACT_ORDER, first=50)

    calls = [
        lambda: list_members(ctx, segment, first=50, after=None),
        lambda: list_members(ctx, segment, first=50, after=cursor),
        lambda: conn.execute_query_dict(hand, h.params),
        before,
    ]
    samples: list[list[float]] = [[] for _ in calls]
    for round_ in range(repeat + 1):
        for call, times in zip(calls, samples, strict=True):
            start = time.perf_counter()
            await call()
            if round_:
                times.append((time.perf_counter() - start) * 1000)
    return [statistics.median(times) for times in samples]


def _sqlite_seed(statement: str) -> str | None:
    if statement == "ANALYZE":
        return "ANALYZE"
    s = statement.replace("jsonb_build_object", "json_object").replace("'{}'::jsonb", "'{}'")
    s = s.replace(
        "FROM generate_series(1, :n) AS g",
        "FROM (WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) SELECT g FROM s)",
    )
    s = s.replace("generate_series(1, 3) AS k", "(SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3)")
    s = s.replace(
        "(ARRAY['PT','ES','FR','DE','GB','US','BR','IN','JP','HU'])[1 + g % 10]",
        "substr('PTESFRDEGBUSBRINJPHU', 1 + 2 * (g % 10), 2)",
    )
    s = s.replace(
        "(ARRAY['free','pro','enterprise'])[1 + g % 3]",
        "CASE g % 3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'enterprise' END",
    )
    s = s.replace(
        "(ARRAY['login','purchase','purchase'])[1 + (c.id + k) % 3]",
        "CASE (c.id + k) % 3 WHEN 0 THEN 'login' ELSE 'purchase' END",
    )
    s = s.replace("g % 20 = 0", "(g % 20 = 0)").replace("g % 3 = 0", "(g % 3 = 0)")
    s = s.replace(
        ":now - (g % 365) * interval '1 day' - interval '400 days'",
        "strftime('%Y-%m-%d %H:%M:%f000+00:00', :now, '-' || (g % 365 + 400) || ' days')",
    )
    s = s.replace(
        ":now - (g % 365) * interval '1 day' - (g % 86400) * interval '1 second'",
        "strftime('%Y-%m-%d %H:%M:%f000+00:00', :now, '-' || (g % 365) || ' days', '-' || (g % 86400) || ' seconds')",
    )
    s = s.replace(
        ":now - ((c.id * 7 + k * 13) % 180) * interval '1 day'",
        "strftime('%Y-%m-%d %H:%M:%f000+00:00', :now, '-' || ((c.id * 7 + k * 13) % 180) || ' days')",
    )
    return s


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database (for EXPLAIN, or --reuse)")
    parser.add_argument("--reuse", metavar="DATABASE_URL", help="measure on a database kept by --keep, without seeding")
    parser.add_argument("--no-refresh", action="store_true", help="counts and first pages only")
    args = parser.parse_args()
    asyncio.run(main(args.contacts, args.sqlite, args.repeat, args.keep, args.reuse, not args.no_refresh))
