"""Search benchmark: searchConversations' first page over 1,000,000 messages, beside a
hand-written SQL query for the same page.

    .venv/bin/python -m bench.search                          # 1,000,000 messages on PostgreSQL
    .venv/bin/python -m bench.search --messages 100000 --sqlite
    .venv/bin/python -m bench.search --keep                   # keep the seeded database, then
    .venv/bin/python -m bench.search --reuse postgres://root@127.0.0.1:5432/parley_bench_1a2b3c4d

Creates a database of its own (parley_bench_<random> beside BENCH_DATABASE_URL, default
postgres://root@127.0.0.1:5432/test; or a temporary SQLite file), migrates, and seeds one
workspace in SQL: 50,000 contacts, a conversation per 10 messages, each message 12 words
drawn from 5,000 with a skewed frequency (the most common word is in about a fifth of the
messages) plus marker words at fixed rates: `xylophone` in 1 message in 100,000,
`parcel` in 1 in 1,000 (never with `refund`), `refund` in 1 in 100, `invoice` in 1 in 10. The triggers of
migration 0021 index everything as it is written (the GIN index is built after the load,
as a restore would).

For each query it times, in alternation, the first page (20 conversations) through the
GraphQL schema as an owner calls it (the resolver's SQL, the conversations, their
contacts and the highlights), the resolver's page query alone, and a hand-written SQL
query for the same page (best document per conversation by ts_rank, no visibility
subquery, no highlights). Each figure is the median of --repeat rounds. Prints a
Markdown table for BENCHMARKS.md. The scratch database is dropped at the end unless
--keep.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

QUERIES = [
    ("rare word (10 messages)", "xylophone"),
    ("uncommon word (1,000)", "parcel"),
    ("common word (10,000)", "refund"),
    ("very common word (100,000)", "invoice"),
    ("two words (AND)", "refund w3"),
    ("a contact's e-mail", "c42@example.com"),
]
PAGE = 20
VOCABULARY = 5_000
WORDS = 12

GRAPHQL = """query($q: String!, $first: Int) { searchConversations(query: $q, first: $first) {
  edges { cursor node { matchedIn highlight messageId conversation { id subject status contact { name email } } } }
  pageInfo { hasNextPage endCursor } } }"""

# The page by hand: the best document of each conversation, by rank, on PostgreSQL.
BASELINE = """SELECT conversation_id, id, rank FROM (
  SELECT DISTINCT ON (d.conversation_id) d.conversation_id, d.id, ts_rank(d.tsv, q) AS rank
  FROM search_documents d, websearch_to_tsquery('simple', $1) q
  WHERE d.tsv @@ q AND d.workspace_id = $2
  ORDER BY d.conversation_id, rank DESC) best
ORDER BY rank DESC, conversation_id DESC LIMIT 21"""


def seed_sql(postgres: bool) -> list[str]:
    """Contacts, conversations and messages of workspace :ws, :n messages in all."""
    words = f"'w' || floor({VOCABULARY} * power(random(), 3))::int"
    if postgres:
        series = "generate_series(1, {count}) AS s(g)"
        body = (
            f"(SELECT string_agg({words}, ' ') FROM generate_series(1, {WORDS}) w WHERE g > 0)"
            " || CASE WHEN g % 100000 = 7 THEN ' xylophone' ELSE '' END"
            " || CASE WHEN g % 1000 = 3 THEN ' parcel' ELSE '' END"
            " || CASE WHEN g % 100 = 1 THEN ' refund' ELSE '' END"
            " || CASE WHEN g % 10 = 5 THEN ' invoice' ELSE '' END"
        )
    else:
        series = "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {count}) SELECT g FROM s)"
        rnd = "(abs(random()) % 1000000) / 1000000.0"
        word = f"'w' || CAST({VOCABULARY} * {rnd} * {rnd} * {rnd} AS INTEGER)"
        body = (
            " || ' ' || ".join([word] * WORDS) + " || CASE WHEN g % 100000 = 7 THEN ' xylophone' ELSE '' END"
            " || CASE WHEN g % 1000 = 3 THEN ' parcel' ELSE '' END"
            " || CASE WHEN g % 100 = 1 THEN ' refund' ELSE '' END"
            " || CASE WHEN g % 10 = 5 THEN ' invoice' ELSE '' END"
        )
    contacts, conversations = "{contacts}", "{conversations}"
    return [
        "INSERT INTO contacts (workspace_id, name, email, vip, blocked, gdpr_consent, sms_consent, attributes, "
        "first_seen_at, last_seen_at, created_at, updated_at) "
        "SELECT :ws, 'Contact ' || g, 'c' || g || '@example.com', false, false, false, 'never', '{{}}', "
        f":now, :now, :now, :now FROM {series.format(count=contacts)}",
        "INSERT INTO conversations (workspace_id, contact_id, channel_id, status, vip, unread_count, "
        "contact_unread_count, last_message_at, created_at, updated_at) "
        "SELECT :ws, (SELECT min(id) FROM contacts WHERE workspace_id = :ws) + g % "
        f"{contacts}, :channel, 'open', false, 0, 0, :now, :now, :now FROM {series.format(count=conversations)}",
        "INSERT INTO messages (workspace_id, conversation_id, sender_kind, direction, body, delivery_state, "
        "created_at) "
        "SELECT :ws, (SELECT min(id) FROM conversations WHERE workspace_id = :ws) + g % "
        f"{conversations}, 'contact', 'inbound', {body}, 'received', :now "
        f"FROM {series.format(count=':n')}",
    ]


async def _median_ms(runs: list[Callable[[], Awaitable[Any]]], repeat: int) -> list[float]:
    """Median milliseconds of each, over `repeat` rounds that run each once in turn,
    after one warm-up round."""
    samples: list[list[float]] = [[] for _ in runs]
    for round_ in range(repeat + 1):
        for run, times in zip(runs, samples, strict=True):
            start = time.perf_counter()
            await run()
            if round_:
                times.append((time.perf_counter() - start) * 1000)
    return [statistics.median(times) for times in samples]


async def main(messages: int, sqlite: bool, repeat: int, keep: bool, reuse: str | None) -> None:
    from core.scratch_db import ScratchDatabase

    scratch = None
    if reuse:
        url = reuse
    elif sqlite:
        url = f"sqlite://{tempfile.mkdtemp(prefix='parley-bench-')}/bench.sqlite3"
    else:
        base = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
        scratch = ScratchDatabase.beside(base, prefix="parley_bench")
        await scratch.create()
        url = scratch.url
    os.environ["DATABASE_URL"] = url
    try:
        await _run(messages, url.startswith("sqlite"), repeat, seed=reuse is None)
    finally:
        if keep:
            print(f"\nkept the database: {url}")
        elif scratch is not None:
            await scratch.drop()


async def _run(messages: int, sqlite: bool, repeat: int, *, seed: bool) -> None:
    from tortoise import Tortoise, connections

    from core.context import Context
    from core.db import migrate, tortoise_config
    from core.permissions import Permission, Principal, PrincipalKind, Role
    from models.workspaces import Agent, Workspace
    from resolvers.conversations import ConversationFilter, inbox_query
    from resolvers.search import SearchSource, _hits
    from schema import schema

    await migrate()
    # No statement timeout: seeding 1,000,000 messages is one statement.
    await Tortoise.init(config=tortoise_config(statement_timeout=0), _enable_global_fallback=True)
    conn = connections.get("default")
    if seed:
        ws = await _seed(conn, messages, sqlite)
    else:
        found = await Workspace.filter(name="Bench").order_by("id").first()
        assert found is not None, "no Bench workspace in this database: keep one with --keep"
        ws = found.id
    owner = await Agent.filter(workspace_id=ws, role=Role.OWNER).first()
    assert owner is not None
    principal = Principal(PrincipalKind.AGENT, ws, frozenset(Permission), agent_id=owner.id, role=Role.OWNER)

    def context() -> Context:
        return Context(request=None, response=None, hub=None, principal=principal, request_id="bench")

    rows = await conn.execute_query_dict(
        "SELECT (SELECT count(*) FROM messages WHERE workspace_id = $1) AS messages, "
        "(SELECT count(*) FROM search_documents WHERE workspace_id = $1) AS documents".replace(
            "$1", "?" if sqlite else "$1"
        ),
        [ws] if sqlite else [ws],
    )
    print(f"{rows[0]['messages']:,} messages, {rows[0]['documents']:,} search documents\n")
    print("| query | conversations matching | first page through the API | the resolver's page query | by hand (SQL) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, text in QUERIES:

        async def api(text: str = text) -> None:
            result = await schema.execute(GRAPHQL, variable_values={"q": text, "first": PAGE}, context_value=context())
            assert result.errors is None, result.errors
            assert result.data["searchConversations"]["edges"]  # type: ignore[index]

        async def page_query(text: str = text) -> None:
            from core.db import SqlBuilder

            ctx = context()
            q = SqlBuilder()
            visible = await inbox_query(ctx, "all", ConversationFilter())
            hits = _hits(q, text, ws, visible, list(SearchSource))
            sql = (
                "SELECT conversation_id, document_id, rank FROM (SELECT *, row_number() OVER (PARTITION BY "  # noqa: S608
                f"conversation_id ORDER BY rank DESC, document_id DESC) AS n FROM ({hits}) hits) best WHERE n = 1 "
                f"ORDER BY rank DESC, conversation_id DESC LIMIT {PAGE + 1}"
            )
            await conn.execute_query_dict(sql, q.params)

        async def baseline(text: str = text) -> None:
            await conn.execute_query_dict(BASELINE, [text, ws])

        runs: list[Callable[[], Awaitable[Any]]] = [api, page_query] + ([] if sqlite else [baseline])
        timings = await _median_ms(runs, repeat)
        from resolvers.search import search_conversations

        page = await search_conversations(context(), text, view="all", where=ConversationFilter(), first=1, after=None)
        matching = await page.count()
        cells = [f"{ms:.1f} ms" for ms in timings] + ([] if not sqlite else ["–"])
        print(f"| {label}: `{text}` | {matching:,} | " + " | ".join(cells) + " |")
    await Tortoise.close_connections()


async def _seed(conn: Any, messages: int, sqlite: bool) -> int:
    from tortoise.transactions import in_transaction

    from bench.segments import _bind
    from core.db import allow_generic_plans
    from resolvers.workspaces import create_workspace

    boot = await create_workspace("Bench", "owner@example.com", "correct horse battery")
    ws = boot.workspace.id
    now = datetime.now(UTC)
    values = {
        "ws": ws,
        "now": now.isoformat(" ", timespec="microseconds") if sqlite else now,
        "n": messages,
        "channel": boot.channel.id,
    }
    counts = {"contacts": min(50_000, messages), "conversations": max(1, messages // 10)}
    started = time.perf_counter()
    if not sqlite:
        await conn.execute_script("DROP INDEX search_documents_tsv")
    async with in_transaction() as tx:
        # Foreign-key checks with PostgreSQL's cached plans (see core/db.py).
        await allow_generic_plans(tx)
        for statement, what in zip(seed_sql(not sqlite), ("contacts", "conversations", "messages"), strict=True):
            step = time.perf_counter()
            sql, params = _bind(statement.format(**counts), values, not sqlite)
            await tx.execute_query(sql, params)
            print(f"  {what}: {time.perf_counter() - step:.1f} s")
    loaded = time.perf_counter()
    if not sqlite:
        await conn.execute_script(
            "CREATE INDEX search_documents_tsv ON search_documents USING gin (tsv); ANALYZE search_documents; "
            "ANALYZE conversations; ANALYZE messages; ANALYZE contacts"
        )
    print(
        f"seeded {messages:,} messages ({counts['conversations']:,} conversations, {counts['contacts']:,} contacts) "
        f"in {loaded - started:.1f} s, index built in {time.perf_counter() - loaded:.1f} s "
        f"({'SQLite' if sqlite else 'PostgreSQL'})\n"
    )
    return int(ws)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.sqlite, args.repeat, args.keep, args.reuse))


if __name__ == "__main__":
    cli()
