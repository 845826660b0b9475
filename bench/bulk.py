"""Bulk action benchmark: tag every contact of a large workspace with `startBulkAction`'s
job, beside a hand-written `INSERT … SELECT`.

    .venv/bin/python -m bench.bulk                       # 1,000,000 contacts on PostgreSQL
    .venv/bin/python -m bench.bulk --contacts 100000 --batch 2000

Creates a database of its own (parley_bench_<random> beside BENCH_DATABASE_URL, default
postgres://root@127.0.0.1:5432/test), migrates, seeds one workspace in SQL (INSERT …
SELECT generate_series, as bench.exports does), then tags every contact two ways:

- the job: `run_bulk_action`, the arq task startBulkAction queues, run in this process on
  an action whose target is a filter matching every contact: keyset batches by id, each one
  transaction that locks the action, reads the next ids, inserts the tags, stamps the
  contacts, writes one change-log row each (what tagContact writes), looks for webhook
  subscribers, and moves the high-water mark and the counts; progress to the job record;
- the baseline: one `INSERT INTO contact_tags … SELECT … FROM contacts` (no change log,
  no events, no mark: the floor), and the same with the change-log rows in a second
  `INSERT … SELECT`.

Checks that each contact got the tag and one change, prints a Markdown table, and drops
the scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime

from bench.exports import SEED_SQL, machine
from bench.segments import _bind


async def main(contacts: int, batch: int, keep: bool) -> None:
    from core.scratch_db import ScratchDatabase

    base = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
    scratch = ScratchDatabase.beside(base, prefix="parley_bench")
    await scratch.create()
    os.environ["DATABASE_URL"] = scratch.url
    os.environ["BULK_BATCH_SIZE"] = str(batch)
    # Seeding a million rows is one long statement on a busy machine.
    os.environ["DATABASE_STATEMENT_TIMEOUT_SECONDS"] = "0"
    try:
        await _run(contacts)
    finally:
        from tortoise import Tortoise

        await Tortoise.close_connections()
        if keep:
            print(f"\nkept the database: {scratch.url}")
        else:
            await scratch.drop()


async def _run(contacts: int) -> None:
    from tortoise import Tortoise, connections
    from tortoise.transactions import in_transaction

    from core.config import settings
    from core.db import migrate, tortoise_config
    from jobs.bulk import run_bulk_action
    from models.bulk import BulkAction, BulkActionKind
    from models.job_records import JobKind
    from resolvers.workspaces import create_workspace
    from services.bulk import count_target
    from services.job_records import create_job

    await migrate()
    await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
    conn = connections.get("default")
    boot = await create_workspace("Bench", "owner@example.com", "correct horse battery")
    ws = boot.workspace.id
    now = datetime.now(UTC)
    started = time.perf_counter()
    for statement in SEED_SQL:
        sql, params = _bind(statement, {"ws": ws, "now": now, "n": contacts}, True)
        await conn.execute_query(sql, params)
    print(
        f"seeded {contacts:,} contacts in {time.perf_counter() - started:.1f} s; "
        f"bulk batch {settings.bulk_batch_size:,}\n"
    )

    async def counts(tag: str) -> tuple[int, int]:
        tagged = await conn.execute_query_dict(
            "SELECT count(*) AS n FROM contact_tags WHERE workspace_id = $1 AND name = $2", [ws, tag]
        )
        changes = await conn.execute_query_dict(
            "SELECT count(*) AS n FROM contact_changes WHERE workspace_id = $1", [ws]
        )
        return int(tagged[0]["n"]), int(changes[0]["n"])

    # The job, as startBulkAction records and queues it.
    target = {"rules": {"match": "all", "conditions": []}}
    total = await count_target(ws, target, datetime.now(UTC))
    assert total == contacts, total
    job = await create_job(ws, JobKind.BULK_ACTION, params={"action": "tag"}, total=total)
    action = await BulkAction.create(
        workspace_id=ws, job_id=job.id, action=BulkActionKind.TAG, target=target, args={"tags": ["spring"]}, total=total
    )
    _, changes_before = await counts("spring")
    start = time.perf_counter()
    result = await run_bulk_action({"hub": None, "redis": None}, action.id)
    job_seconds = time.perf_counter() - start
    assert result == {"done": contacts, "skipped": 0, "failed": 0}, result
    tagged, changes = await counts("spring")
    assert tagged == contacts and changes - changes_before == contacts, (tagged, changes)

    # The baseline: the tags alone, then the tags and the change log, by hand.
    start = time.perf_counter()
    await conn.execute_query(
        "INSERT INTO contact_tags (workspace_id, contact_id, name, created_at) "
        "SELECT workspace_id, id, 'summer', now() FROM contacts WHERE workspace_id = $1 "
        "ON CONFLICT (contact_id, name) DO NOTHING",
        [ws],
    )
    tags_seconds = time.perf_counter() - start
    start = time.perf_counter()
    async with in_transaction() as tx:
        await tx.execute_query(
            "INSERT INTO contact_tags (workspace_id, contact_id, name, created_at) "
            "SELECT workspace_id, id, 'autumn', now() FROM contacts WHERE workspace_id = $1 "
            "ON CONFLICT (contact_id, name) DO NOTHING",
            [ws],
        )
        await tx.execute_query(
            "INSERT INTO contact_changes (workspace_id, contact_id, kind, at) "
            "SELECT workspace_id, id, 'updated', now() FROM contacts WHERE workspace_id = $1",
            [ws],
        )
    both_seconds = time.perf_counter() - start
    assert (await counts("autumn"))[0] == contacts

    print(f"{machine()}, PostgreSQL\n")
    print("| run | seconds | contacts/s |")
    print("| --- | ---: | ---: |")
    for name, seconds in (
        (f"bulk action job (batch {settings.bulk_batch_size:,}: tags, change log, mark)", job_seconds),
        ("baseline: INSERT … SELECT, tags only", tags_seconds),
        ("baseline: INSERT … SELECT, tags + change log", both_seconds),
    ):
        print(f"| {name} | {seconds:.1f} | {contacts / seconds:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500, help="BULK_BATCH_SIZE (default: the setting's default)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    asyncio.run(main(args.contacts, args.batch, args.keep))
