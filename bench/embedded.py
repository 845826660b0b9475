"""A small company's first week, all at once, on one database: the embedded default's test.

    .venv/bin/python -m bench.embedded                 # SQLite, then PostgreSQL; a table for BENCHMARKS.md
    .venv/bin/python -m bench.embedded --sqlite-only --json out.json

A scratch database (a temporary SQLite file, or parley_bench_<random> beside
BENCH_DATABASE_URL), a private Redis, one uvicorn process and one arq worker, as
`make run` starts them. Seeded with --contacts contacts (SQL) and four segments
(createSegment), then, at the same time:

- the mixed load: --sessions new visitor sessions (`startContactSession`, each a new
  contact, so the worker re-evaluates segments) and --replies agent replies
  (`sendMessage`), shuffled, --concurrency at a time;
- a CRM import: --sync-calls `syncContacts` calls of 1,000 new rows, one after another;
- once the import is in, an in-app campaign to every imported contact (`createCampaign`
  with their ids), followed until it completes.

Then it checks what a user would: every request answered without an error, every
acknowledged write readable (each reply by its id, each session's contact, each imported
row), the campaign sent exactly once to each recipient, and no job failed in the worker.
`tests/core/test_embedded_load.py` runs it and asserts exactly that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import (
    HttpPool,
    Stack,
    machine_facts,
    markdown_table,
    percentile,
    scratch_stack,
    spawn,
    start_server,
    stop_process,
)

SESSION = """mutation($i: StartContactSessionInput!) { startContactSession(input: $i) {
  token contact { id } userErrors { field code message } } }"""
START = """mutation($i: StartConversationInput!) { startConversation(input: $i) {
  conversation { id } userErrors { field code message } } }"""
REPLY = (
    "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { field code message } } }"
)
SYNC = """mutation($i: SyncContactsInput!) { syncContacts(input: $i) {
  created failed results { contactId } userErrors { field code message } } }"""
SEGMENT = (
    "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } "
    "userErrors { field code message } } }"
)
CAMPAIGN = (
    "mutation($i: CreateCampaignInput!) { createCampaign(input: $i) { campaign { id } "
    "userErrors { field code message } } }"
)
CAMPAIGN_STATUS = "query($id: ID!) { campaign(id: $id) { status stats { recipients sent skipped failed } } }"
CAMPAIGN_BODY = "Welcome aboard: here is what is new this week."

SEGMENTS = [
    {
        "name": "Example addresses",
        "rules": {
            "match": "ALL",
            "conditions": [{"field": "email", "operator": "ENDS_WITH", "value": {"text": "@example.com"}}],
        },
    },
    {
        "name": "Sevens",
        "rules": {
            "match": "ANY",
            "conditions": [
                {"field": "name", "operator": "CONTAINS", "value": {"text": "7"}},
                {"field": "email", "operator": "STARTS_WITH", "value": {"text": "c7"}},
            ],
        },
    },
    {
        "name": "Imported",
        "rules": {
            "match": "ALL",
            "conditions": [{"field": "tag", "operator": "EQUALS", "value": {"text": "imported"}}],
        },
    },
    {
        "name": "Seen this week",
        "rules": {"match": "ALL", "conditions": [{"field": "last_seen_at", "operator": "WITHIN_LAST_DAYS", "days": 7}]},
    },
]

# arq's log lines for a job that raised, and for one it will run again.
FAILED_JOB = re.compile(r"\d+\.\d+s ! \S+ (failed|max retries)")
RETRIED_JOB = re.compile(r"\d+\.\d+s ↻ ")


@dataclass
class Outcome:
    database: str
    requests: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    failed_jobs: list[str] = field(default_factory=list)
    retried_jobs: int = 0
    server_errors: list[str] = field(default_factory=list)
    lost_writes: list[str] = field(default_factory=list)
    campaign: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        rows = {}
        for op, values in self.latencies_ms.items():
            ordered = sorted(values)
            rows[op] = {"count": len(ordered), "p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99)}
        return rows


def _pk(gid: str) -> int:
    from core.scoping import decode_global_id

    decoded = decode_global_id(gid)
    assert decoded is not None, gid
    return decoded[1]


class Client:
    """Counts every request and records every failure a user would see."""

    def __init__(self, http: HttpPool, outcome: Outcome) -> None:
        self.http = http
        self.outcome = outcome

    async def call(self, op: str, query: str, variables: dict[str, Any], token: str | None) -> dict[str, Any] | None:
        started = time.perf_counter()
        reply = await self.http.post_graphql(query, variables, token=token)
        self.outcome.latencies_ms.setdefault(op, []).append((time.perf_counter() - started) * 1000)
        self.outcome.requests += 1
        try:
            body = reply.json()
        except ValueError:
            body = {"errors": [{"message": reply.body[:200].decode(errors="replace")}]}
        if reply.status != 200 or body.get("errors"):
            self.outcome.errors.append(f"{op}: HTTP {reply.status} {body.get('errors')}")
            return None
        payload = next(iter(body["data"].values()))
        if isinstance(payload, dict) and payload.get("userErrors"):
            self.outcome.errors.append(f"{op}: {payload['userErrors']}")
            return None
        return payload  # type: ignore[no-any-return]


async def seed(stack: Stack, contacts: int) -> tuple[Any, str]:
    """A workspace with `contacts` contacts; its bootstrap and an owner token."""
    from datetime import UTC, datetime

    from tortoise import connections

    from bench.campaigns import _bind, seed_sql
    from core.auth import TokenKind, issue_token
    from core.db import bind_datetime
    from resolvers.workspaces import create_workspace

    boot = await create_workspace(
        "First week", "owner@example.com", "correct horse battery", identity_verification=False
    )
    sql, params = _bind(
        seed_sql(not stack.sqlite, contacts),
        {"ws": boot.workspace.id, "n": contacts, "now": bind_datetime(datetime.now(UTC))},
        not stack.sqlite,
    )
    conn = connections.get("default")
    await conn.execute_query(sql, params)
    token = issue_token(TokenKind.AGENT, workspace_id=boot.workspace.id, subject_id=boot.owner.id)
    return boot, token


async def run(
    stack: Stack,
    *,
    contacts: int,
    sessions: int,
    replies: int,
    concurrency: int,
    sync_calls: int,
    conversations: int = 40,
    logs: str | None = None,
) -> Outcome:
    from tortoise import Tortoise

    from core.db import migrate, tortoise_config
    from core.scoping import encode_global_id

    outcome = Outcome(database="SQLite" if stack.sqlite else "PostgreSQL")
    await migrate()
    await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
    try:
        boot, token = await seed(stack, contacts)
        server = await start_server(stack.env, core=None, log_dir=stack.workdir)
        worker = spawn(
            [sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"],
            env=stack.env,
            core=None,
            log=stack.workdir / "worker.log",
        )
        http = HttpPool("127.0.0.1", server.port, size=concurrency + 4)
        client = Client(http, outcome)
        try:
            for segment in SEGMENTS:
                await client.call("createSegment", SEGMENT, {"i": segment}, token)
            # Conversations for the agents to answer, each opened by a visitor in the widget.
            threads = []
            for i in range(conversations):
                session = await client.call(
                    "startContactSession", SESSION, {"i": {"channelKey": boot.channel.public_key}}, None
                )
                if session:
                    started = await client.call(
                        "startConversation", START, {"i": {"body": f"Hello, I am visitor {i}"}}, session["token"]
                    )
                    if started:
                        threads.append(started["conversation"]["id"])
            if not threads:
                return outcome
            outcome.requests = 0
            outcome.latencies_ms.clear()
            started_at = time.perf_counter()
            acknowledged: dict[str, list[int]] = {"message": [], "contact": [], "imported": []}
            await asyncio.gather(
                mixed_load(
                    client, boot.channel.public_key, token, threads, sessions, replies, concurrency, acknowledged
                ),
                import_and_campaign(
                    client, token, encode_global_id("Channel", boot.channel.id), sync_calls, acknowledged, outcome
                ),
            )
            outcome.seconds = time.perf_counter() - started_at
            await asyncio.sleep(2)  # the worker's last debounced refreshes
        finally:
            http.close()
            stop_process(worker)
            server.stop()
        await verify(boot.workspace.id, acknowledged, outcome)
        worker_log = (stack.workdir / "worker.log").read_text(errors="replace").splitlines()
        outcome.failed_jobs = [line.strip() for line in worker_log if FAILED_JOB.search(line)]
        outcome.retried_jobs = sum(1 for line in worker_log if RETRIED_JOB.search(line))
        if logs:
            import shutil

            for path in (server.log, stack.workdir / "worker.log"):
                shutil.copy(path, f"{logs}/{outcome.database.lower()}-{path.name}")
        server_log = server.log.read_text(errors="replace").splitlines()
        outcome.server_errors = [
            line.strip() for line in server_log if "unexpected error" in line or "database is locked" in line
        ]
        return outcome
    finally:
        await Tortoise.close_connections()


async def mixed_load(
    client: Client,
    channel_key: str,
    token: str,
    threads: list[str],
    sessions: int,
    replies: int,
    concurrency: int,
    acknowledged: dict[str, list[int]],
) -> None:
    ops = ["session"] * sessions + ["reply"] * replies
    random.Random(7).shuffle(ops)
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(ops):
        queue.put_nowait(item)

    async def one_at_a_time() -> None:
        while not queue.empty():
            i, op = queue.get_nowait()
            if op == "session":
                device = {"os": "iOS", "browser": "Safari", "locale": "en-GB"}
                got = await client.call(
                    "startContactSession",
                    SESSION,
                    {
                        "i": {
                            "channelKey": channel_key,
                            "name": f"Visitor {i}",
                            "email": f"visitor{i}@example.org",
                            "device": device,
                        }
                    },
                    None,
                )
                if got:
                    acknowledged["contact"].append(_pk(got["contact"]["id"]))
            else:
                got = await client.call(
                    "sendMessage",
                    REPLY,
                    {"i": {"conversationId": threads[i % len(threads)], "body": f"Reply {i}"}},
                    token,
                )
                if got:
                    acknowledged["message"].append(_pk(got["message"]["id"]))

    await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))


async def import_and_campaign(
    client: Client, token: str, channel_gid: str, sync_calls: int, acknowledged: dict[str, list[int]], outcome: Outcome
) -> None:
    imported: list[str] = []
    for call in range(sync_calls):
        rows = [
            {
                "externalId": f"crm-{call}-{i}",
                "name": f"Imported {call}-{i}",
                "email": f"imported{call}-{i}@example.net",
                "city": "Lisbon",
                "tags": ["imported"],
            }
            for i in range(1000)
        ]
        got = await client.call(
            "syncContacts", SYNC, {"i": {"contacts": rows, "idempotencyKey": f"import-{call}"}}, token
        )
        if got:
            ids = [r["contactId"] for r in got["results"] if r["contactId"]]
            imported.extend(ids)
            acknowledged["imported"].extend(_pk(g) for g in ids)
    if not imported:
        return
    got = await client.call(
        "createCampaign",
        CAMPAIGN,
        {"i": {"name": "Welcome", "channelId": channel_gid, "body": CAMPAIGN_BODY, "contactIds": imported}},
        token,
    )
    if not got:
        return
    campaign_id = got["campaign"]["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        shown = await client.call("campaign", CAMPAIGN_STATUS, {"id": campaign_id}, token)
        if shown and shown["status"] not in ("SCHEDULED", "SENDING", "QUEUED", "RUNNING"):
            outcome.campaign = {"id": _pk(campaign_id), "recipients": len(imported), **shown}
            return
        await asyncio.sleep(0.25)
    outcome.campaign = {"id": _pk(campaign_id), "recipients": len(imported), "status": "TIMED OUT"}


async def verify(workspace_id: int, acknowledged: dict[str, list[int]], outcome: Outcome) -> None:
    """Every acknowledged write is there, and the campaign reached each recipient once."""
    from tortoise import connections

    from core.db import SqlBuilder
    from models.contacts import Contact
    from models.conversations import Message

    for kind, model in (("message", Message), ("contact", Contact), ("imported", Contact)):
        ids = acknowledged[kind]
        found = 0
        for start in range(0, len(ids), 500):
            found += await model.filter(workspace_id=workspace_id, id__in=ids[start : start + 500]).count()
        if found != len(ids):
            outcome.lost_writes.append(f"{kind}: {len(ids) - found} of {len(ids)} acknowledged are missing")
    if not outcome.campaign:
        return
    q = SqlBuilder()
    rows = await connections.get("default").execute_query_dict(
        "SELECT c.contact_id AS contact_id, COUNT(*) AS n "
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        f"WHERE m.workspace_id = {q.param(workspace_id)} AND m.body = {q.param(CAMPAIGN_BODY)} GROUP BY c.contact_id",
        q.params,
    )
    per_contact = Counter(int(r["n"]) for r in rows)
    outcome.campaign["messages_per_recipient"] = {str(k): v for k, v in sorted(per_contact.items())}
    outcome.campaign["recipients_reached"] = len(rows)


def report(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    lines = [
        f"{args.contacts:,} seeded contacts; at the same time {args.sessions} visitor sessions and "
        f"{args.replies} agent replies {args.concurrency} at a time, {args.sync_calls} syncContacts calls of "
        "1,000 rows, then a campaign to the imported contacts; one uvicorn process and one arq worker",
        ", ".join(f"{k}: {v}" for k, v in machine_facts().items()),
        "",
    ]
    rows = []
    for o in outcomes:
        for op, s in o.summary().items():
            rows.append([o.database, op, str(s["count"]), f"{s['p50_ms']:.0f}", f"{s['p99_ms']:.0f}"])
    lines.append(markdown_table(["database", "request", "count", "p50 ms", "p99 ms"], rows, right_from=2))
    lines.append("")
    rows = []
    for o in outcomes:
        rows.append(
            [
                o.database,
                f"{o.requests:,}",
                f"{o.seconds:.1f}",
                f"{o.requests / o.seconds:,.0f}" if o.seconds else "-",
                str(len(o.errors)),
                str(len(o.failed_jobs)),
                str(o.retried_jobs),
                str(len(o.lost_writes)),
                f"{o.campaign.get('status', '-')}, {o.campaign.get('messages_per_recipient', {})}",
            ]
        )
    lines.append(
        markdown_table(
            [
                "database",
                "requests",
                "seconds",
                "requests/s",
                "request errors",
                "failed jobs",
                "jobs retried",
                "lost writes",
                "campaign, messages per recipient",
            ],
            rows,
        )
    )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> list[Outcome]:
    async with scratch_stack(sqlite=not args.postgres_only, database_url=None, redis_url=None) as stack:
        outcome = await run(
            stack,
            contacts=args.contacts,
            sessions=args.sessions,
            replies=args.replies,
            concurrency=args.concurrency,
            sync_calls=args.sync_calls,
            logs=args.logs,
        )
    print(
        f"{outcome.database}: {outcome.requests} requests, {len(outcome.errors)} errors, "
        f"{len(outcome.failed_jobs)} failed jobs, campaign {outcome.campaign}",
        file=sys.stderr,
        flush=True,
    )
    for line in (outcome.errors + outcome.failed_jobs + outcome.server_errors + outcome.lost_writes)[:20]:
        print("  " + line[:300], file=sys.stderr)
    return [outcome]


def each_database(argv: list[str]) -> list[dict[str, Any]]:
    """Each database in a process of its own: the app reads its settings once a process."""
    import subprocess
    import tempfile

    outcomes = []
    for which in ("--sqlite-only", "--postgres-only"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [sys.executable, "-m", "bench.embedded", *argv, which, "--json", out.name],
                stdout=subprocess.DEVNULL,
                check=False,
            )
            outcomes.extend(json.loads(open(out.name).read() or "[]"))
    return outcomes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contacts", type=int, default=20_000)
    p.add_argument("--sessions", type=int, default=300)
    p.add_argument("--replies", type=int, default=600)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--sync-calls", type=int, default=5)
    p.add_argument("--sqlite-only", action="store_true")
    p.add_argument("--postgres-only", action="store_true")
    p.add_argument("--logs", help="copy the server's and the worker's logs into this folder")
    p.add_argument("--json", help="write each database's outcome here")
    return p


def _outcome(data: dict[str, Any]) -> Outcome:
    return Outcome(**{k: v for k, v in data.items() if k != "summary"})


if __name__ == "__main__":
    arguments = parser().parse_args()
    if arguments.sqlite_only or arguments.postgres_only:
        results = asyncio.run(main(arguments))
    else:
        passed = [
            f"--contacts={arguments.contacts}",
            f"--sessions={arguments.sessions}",
            f"--replies={arguments.replies}",
            f"--concurrency={arguments.concurrency}",
            f"--sync-calls={arguments.sync_calls}",
        ]
        if arguments.logs:
            passed.append(f"--logs={arguments.logs}")
        results = [_outcome(d) for d in each_database(passed)]
    print(report(results, arguments))
    if arguments.json:
        with open(arguments.json, "w") as f:
            json.dump([{**asdict(o), "summary": o.summary()} for o in results], f, indent=1)
    sys.exit(0 if all(not (o.errors or o.failed_jobs or o.lost_writes) for o in results) else 1)
