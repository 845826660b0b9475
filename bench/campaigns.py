"""Campaign benchmark: a 100,000-recipient in-app campaign end to end, beside a plain
INSERT … SELECT of the same rows.

    .venv/bin/python -m bench.campaigns                    # PostgreSQL (scratch database)
    .venv/bin/python -m bench.campaigns --sqlite
    .venv/bin/python -m bench.campaigns --recipients 20000 --batch 5000

Creates a database of its own (parley_bench_<random> beside BENCH_DATABASE_URL, default
postgres://root@127.0.0.1:5432/test; or a temporary SQLite file) and a private Redis,
migrates, seeds one workspace with N contacts in SQL and refreshes its "All users" segment
(the real refresh job, not timed). Then:

- end to end: a real `uvicorn asgi:app` and a real arq worker (`jobs.worker.WorkerSettings`)
  as separate processes; the clock starts before `createCampaign` (segment, web widget
  channel) is POSTed and stops when a `campaign(id)` poll (every 50 ms) reads COMPLETED.
  In between: the job freezes the audience (INSERT … SELECT), then per batch decides,
  claims, inserts conversations, messages and receipts, updates counters in one
  transaction, and publishes each message to its contact's `myMessages` channel
  (pipelined). The job's own time (campaign startedAt → finishedAt) and the worker's CPU
  seconds and RSS are reported too. Every message is then counted in the database.
- baseline: the same rows (recipients, resolved conversations, messages, last-message
  links, receipts) written by plain INSERT … SELECT / UPDATE statements in one
  transaction (with PostgreSQL's own plan cache, as the job's batches have), for a second
  campaign on a second widget channel: the floor for these writes on one connection, with
  no batching, no decisions, no publishing and no job machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import (
    cpu_seconds,
    load_average,
    machine_facts,
    markdown_table,
    rss_bytes,
    scratch_stack,
    spawn,
    start_server,
    stop_process,
)

CREATE = (
    "mutation($i: CreateCampaignInput!) { createCampaign(input: $i) { campaign { id } "
    "userErrors { field code message } } }"
)
POLL = "query($id: ID!) { campaign(id: $id) { status startedAt finishedAt stats { recipients sent skipped } } }"


def seed_sql(postgres: bool, n: int) -> str:
    series = "generate_series(1, :n) AS s(g)" if postgres else "s"
    head = "" if postgres else "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
    return (
        f"{head}INSERT INTO contacts (workspace_id, name, email, vip, blocked, gdpr_consent, sms_consent, attributes, "
        "first_seen_at, last_seen_at, created_at, updated_at) "
        f"SELECT :ws, 'Contact ' || g, 'c' || g || '@example.com', false, false, false, 'never', '{{}}', "
        ":now, :now, :now, :now "
        f"FROM {series}"
    )


def _bind(sql: str, values: dict[str, Any], postgres: bool) -> tuple[str, list[Any]]:
    from bench.segments import _bind as bind

    return bind(sql, values, postgres)


BASELINE = [
    """INSERT INTO campaign_recipients (workspace_id, campaign_id, contact_id, status, sent_at)
       SELECT :ws, :campaign, m.contact_id, 'sent', :now FROM segment_memberships m WHERE m.segment_id = :segment""",
    """INSERT INTO conversations (workspace_id, contact_id, channel_id, status, vip, unread_count, contact_unread_count,
         last_message_at, resolved_at, created_at, updated_at)
       SELECT :ws, c.id, :channel, 'resolved', c.vip, 0, 1, :now, :now, :now, :now
       FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id WHERE m.segment_id = :segment""",
    (
        "INSERT INTO messages (workspace_id, conversation_id, sender_kind, agent_id, direction, body, delivery_state, "
        "created_at)\n"
        "       SELECT workspace_id, id, 'agent', :agent, 'outbound', :body, 'received', :now "
        "FROM conversations WHERE channel_id = :channel"
    ),
    """UPDATE conversations SET last_message_id = m.id FROM messages m
       WHERE m.conversation_id = conversations.id AND conversations.channel_id = :channel""",
    (
        "UPDATE campaign_recipients SET message_id = cv.last_message_id FROM conversations cv\n"
        "       WHERE cv.channel_id = :channel AND campaign_recipients.campaign_id = :campaign "
        "AND campaign_recipients.contact_id = cv.contact_id"
    ),
    (
        "INSERT INTO outreach_receipts (workspace_id, contact_id, source, sent_at)\n"
        "       SELECT :ws, contact_id, 'campaign:' || CAST(:campaign AS integer), :now "
        "FROM campaign_recipients WHERE campaign_id = :campaign"
    ),
]


async def run(sqlite: bool, recipients: int, batch: int) -> dict[str, Any]:
    async with scratch_stack(sqlite=sqlite, database_url=None, redis_url=None) as stack:
        os.environ["CAMPAIGN_BATCH_SIZE"] = str(batch)
        stack.env["CAMPAIGN_BATCH_SIZE"] = str(batch)
        from tortoise import Tortoise, connections
        from tortoise.transactions import in_transaction

        from core.auth import TokenKind, issue_token
        from core.db import allow_generic_plans, migrate, tortoise_config
        from core.scoping import decode_global_id, encode_global_id
        from jobs.segments import refresh_segment
        from models.campaigns import Campaign
        from models.channels import Channel, ChannelKind
        from models.segments import Segment
        from resolvers.workspaces import create_workspace

        await migrate()
        await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
        postgres = not stack.sqlite
        conn = connections.get("default")
        boot = await create_workspace("Bench", "owner@example.com", "correct horse battery")
        ws = boot.workspace.id
        now = datetime.now(UTC)
        started = time.perf_counter()
        sql, params = _bind(seed_sql(postgres, recipients), {"ws": ws, "now": now, "n": recipients}, postgres)
        await conn.execute_query(sql, params)
        segment = await Segment.get(workspace_id=ws, predefined_key="all_users")
        await refresh_segment({}, segment.id)
        if postgres:
            await conn.execute_script("ANALYZE")
        seeded = time.perf_counter() - started
        token = issue_token(TokenKind.AGENT, workspace_id=ws, subject_id=boot.owner.id)

        server = await start_server(stack.env, core=None, log_dir=stack.workdir)
        worker = spawn(
            [sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"],
            env=stack.env,
            core=None,
            log=stack.workdir / "worker.log",
        )
        try:
            await asyncio.sleep(2)  # the worker connects and runs its start-up sweeps
            load_before = load_average()
            worker_cpu = cpu_seconds(worker.pid)
            headers = {"authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{server.port}", timeout=30, headers=headers
            ) as http:
                variables = {
                    "i": {
                        "name": "Bench",
                        "channelId": encode_global_id("Channel", boot.channel.id),
                        "body": "Our winter sale starts today: 20% off everything.",
                        "segmentId": encode_global_id("Segment", segment.id),
                    }
                }
                t0 = time.perf_counter()
                body = (await http.post("/graphql", json={"query": CREATE, "variables": variables})).json()
                payload = body["data"]["createCampaign"]
                assert payload["userErrors"] == [], payload
                gid = payload["campaign"]["id"]
                while True:
                    shown = (await http.post("/graphql", json={"query": POLL, "variables": {"id": gid}})).json()[
                        "data"
                    ]["campaign"]
                    if shown["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                        break
                    await asyncio.sleep(0.05)
                end_to_end = time.perf_counter() - t0
            worker_cpu = cpu_seconds(worker.pid) - worker_cpu
            worker_rss = rss_bytes(worker.pid)
            load_after = load_average()
        finally:
            stop_process(worker)
            server.stop()
        assert shown["status"] == "COMPLETED", shown
        job_seconds = (
            datetime.fromisoformat(shown["finishedAt"]) - datetime.fromisoformat(shown["startedAt"])
        ).total_seconds()
        campaign_id = decode_global_id(gid)[1]  # type: ignore[index]
        count_sql, count_params = _bind(
            "SELECT count(*) AS n FROM campaign_recipients r JOIN messages m ON m.id = r.message_id "
            "WHERE r.campaign_id = :c",
            {"c": campaign_id},
            postgres,
        )
        messages = (await conn.execute_query_dict(count_sql, count_params))[0]["n"]
        assert messages == recipients, (messages, recipients)

        # Baseline: the same rows, plain SQL, one transaction.
        second = await Channel.create(
            workspace_id=ws, kind=ChannelKind.WEB_WIDGET, name="Baseline", public_key="bench-baseline", secret="x" * 32
        )
        other = await Campaign.create(
            workspace_id=ws,
            name="Baseline",
            channel_id=second.id,
            body="b",
            scheduled_at=now,
            status="completed",
            segment_id=segment.id,
        )
        values = {
            "ws": ws,
            "campaign": other.id,
            "segment": segment.id,
            "channel": second.id,
            "agent": boot.owner.id,
            "body": "Our winter sale starts today: 20% off everything.",
            "now": now,
        }
        t0 = time.perf_counter()
        async with in_transaction() as tx:
            await allow_generic_plans(tx)  # as the job's batches do: the fair floor
            for statement in BASELINE:
                sql, params = _bind(statement, values, postgres)
                await tx.execute_query(sql, params)
        baseline = time.perf_counter() - t0
        await Tortoise.close_connections()
        return {
            "database": "SQLite" if stack.sqlite else "PostgreSQL",
            "recipients": recipients,
            "batch": batch,
            "seed_s": seeded,
            "end_to_end_s": end_to_end,
            "job_s": job_seconds,
            "baseline_s": baseline,
            "worker_cpu_s": worker_cpu,
            "worker_rss_mib": worker_rss / 2**20,
            "load": f"{load_before} → {load_after}",
            "messages": messages,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000, help="CAMPAIGN_BATCH_SIZE for the worker")
    args = parser.parse_args()
    result = asyncio.run(run(args.sqlite, args.recipients, args.batch))
    facts = machine_facts()
    print(f"machine: {facts['cpus']} CPUs ({facts['cpu model']}), {facts['memory']}, Python {facts['python']}")
    print(f"load average (1/5/15 min) before → after the campaign: {result['load']}")
    print(f"seeded {result['recipients']:,} contacts and the segment in {result['seed_s']:.1f} s")
    rows = [
        [
            result["database"],
            f"{result['recipients']:,}",
            str(result["batch"]),
            f"{result['end_to_end_s']:.2f}",
            f"{result['job_s']:.2f}",
            f"{result['recipients'] / result['end_to_end_s']:,.0f}",
            f"{result['worker_cpu_s']:.1f}",
            f"{result['worker_rss_mib']:.0f}",
            f"{result['baseline_s']:.2f}",
            f"{result['end_to_end_s'] / result['baseline_s']:.1f}×",
        ]
    ]
    print(
        markdown_table(
            [
                "database",
                "recipients",
                "batch",
                "end to end s",
                "job s",
                "recipients/s",
                "worker CPU s",
                "worker RSS MiB",
                "baseline INSERT…SELECT s",
                "vs baseline",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
