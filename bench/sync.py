"""CRM sync benchmark: syncContacts through the real server against a raw-SQL upsert of the
same rows, in the same run.

    .venv/bin/python -m bench.sync                       # 100,000 contacts on PostgreSQL
    .venv/bin/python -m bench.sync --sqlite
    .venv/bin/python -m bench.sync --contacts 20000 --batch 500

A scratch database (parley_bench_<random> beside BENCH_DATABASE_URL, default
postgres://root@127.0.0.1:5432/test — never that database itself; or a temporary SQLite
file), a private Redis, and one uvicorn process pinned to one core. One client sends
`syncContacts` calls of --batch rows, one after another, each with its idempotency key:

- create: every row new (externalId, name, e-mail, city, country, two custom attributes);
- update: the same rows, each with a new city and a new attribute value;
- unchanged: the same rows again (everything is read and compared, nothing is written).

Baseline: `INSERT … ON CONFLICT (workspace_id, external_id) DO UPDATE` of the same rows in
statements of --batch rows, from this process, into a second workspace: the cost of
getting the rows into the table and nothing else. syncContacts does more for each row:
validation and normalisation, matching by external id or e-mail, per-row results, the
change log, contactUpdated events, segment re-evaluation marks, webhook fan-out, the
idempotency record, and the GraphQL request and response.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import CoreLayout, HttpPool, cpu_seconds, machine_facts, markdown_table, scratch_stack, start_server

SYNC = """mutation($i: SyncContactsInput!) { syncContacts(input: $i) {
  created updated unchanged failed userErrors { code message }
} }"""
CITIES = ["Lisbon", "Porto", "Madrid", "Paris", "Lyon", "Berlin", "Munich", "Rome"]
COUNTRIES = ["PT", "PT", "ES", "FR", "FR", "DE", "DE", "IT"]
PLANS = ["free", "pro", "team"]


def row(i: int, round_: int) -> dict[str, Any]:
    return {
        "externalId": f"crm-{i:07d}",
        "name": f"Contact {i}",
        "email": f"contact{i}@example.com",
        "city": CITIES[(i + round_) % len(CITIES)],
        "country": COUNTRIES[i % len(COUNTRIES)],
        "attributes": [{"key": "plan", "value": PLANS[i % 3]}, {"key": "seats", "value": (i + round_) % 50}],
    }


async def run_sync(
    http: HttpPool, token: str, contacts: int, batch: int, round_: int, label: str, server_pid: int
) -> dict[str, Any]:
    expected = {"create": "created", "update": "updated", "unchanged": "unchanged"}[label]
    latencies: list[float] = []
    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    for start in range(0, contacts, batch):
        rows = [row(i, round_) for i in range(start, min(start + batch, contacts))]
        t = time.perf_counter()
        data = await http.graphql(SYNC, {"i": {"contacts": rows, "idempotencyKey": f"{label}-{start}"}}, token=token)
        latencies.append(time.perf_counter() - t)
        payload = data["syncContacts"]
        if payload["userErrors"] or payload["failed"] or payload[expected] != len(rows):
            raise RuntimeError(f"{label}: unexpected answer {payload}")
    elapsed = time.perf_counter() - started
    return {
        "label": f"syncContacts, {label}",
        "seconds": elapsed,
        "rows_per_s": contacts / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
        "server_cpu_s": cpu_seconds(server_pid) - cpu_before,
    }


async def run_baseline(workspace_id: int, contacts: int, batch: int, round_: int, label: str) -> dict[str, Any]:
    from tortoise import connections

    from core.db import SqlBuilder, bind_datetime

    conn = connections.get("default")
    columns = [
        "workspace_id",
        "external_id",
        "name",
        "email",
        "city",
        "country",
        "attributes",
        "gdpr_consent",
        "sms_consent",
        "vip",
        "blocked",
        "first_seen_at",
        "last_seen_at",
        "created_at",
        "updated_at",
    ]
    latencies: list[float] = []
    started = time.perf_counter()
    for start in range(0, contacts, batch):
        q = SqlBuilder()
        stamp = bind_datetime(datetime.now(UTC))
        values = []
        for i in range(start, min(start + batch, contacts)):
            r = row(i, round_)
            attributes = json.dumps({a["key"]: a["value"] for a in r["attributes"]}, separators=(",", ":"))
            cells = [
                workspace_id,
                r["externalId"],
                r["name"],
                r["email"],
                r["city"],
                r["country"],
                attributes,
                False,
                "never",
                False,
                False,
                stamp,
                stamp,
                stamp,
                stamp,
            ]
            values.append("(" + ", ".join(q.param(c) for c in cells) + ")")
        sql = (
            f"INSERT INTO contacts ({', '.join(columns)}) VALUES {', '.join(values)} "
            "ON CONFLICT (workspace_id, external_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, "
            "city = EXCLUDED.city, country = EXCLUDED.country, attributes = EXCLUDED.attributes, "
            "updated_at = EXCLUDED.updated_at"
        )
        t = time.perf_counter()
        await conn.execute_query(sql, q.params)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    return {
        "label": f"raw INSERT … ON CONFLICT, {label}",
        "seconds": elapsed,
        "rows_per_s": contacts / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
        "server_cpu_s": None,
    }


# On SQLite, migration 0002 (an AlterField on contacts.last_seen_at) rebuilds the contacts
# table without its unique (workspace_id, external_id) constraint and its three indexes.
# Both sides of this benchmark need them (the baseline's ON CONFLICT cannot run without the
# unique index), so they are put back here, as the fix proposed for the migrations does.
SQLITE_CONTACT_INDEXES = (
    'CREATE UNIQUE INDEX IF NOT EXISTS "uid_contacts_workspa_d5ce11" ON "contacts" ("workspace_id", "external_id")',
    'CREATE INDEX IF NOT EXISTS "idx_contacts_workspa_14e3c0" ON "contacts" ("workspace_id", "last_seen_at", "id")',
    'CREATE INDEX IF NOT EXISTS "idx_contacts_workspa_667af9" ON "contacts" ("workspace_id", "email")',
    'CREATE INDEX IF NOT EXISTS "idx_contacts_workspa_e59a89" ON "contacts" ("workspace_id", "phone")',
)


async def restore_sqlite_contact_indexes() -> None:
    from tortoise import connections

    conn = connections.get("default")
    missing = not await conn.execute_query_dict(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'contacts' AND sql LIKE '%UNIQUE%'"
    )
    for statement in SQLITE_CONTACT_INDEXES:
        await conn.execute_script(statement)
    if missing:
        print("note: restored the contacts indexes migration 0002 drops on SQLite (see SQLITE_CONTACT_INDEXES)")


async def main(contacts: int, batch: int, sqlite: bool) -> None:
    layout = CoreLayout.split()
    async with scratch_stack(sqlite=sqlite, database_url=None, redis_url=None) as stack:
        from tortoise import Tortoise

        from core.db import migrate, tortoise_config
        from models.contacts import AttributeDefinition, AttributeType
        from resolvers.workspaces import create_workspace

        await migrate()
        await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
        if sqlite:
            await restore_sqlite_contact_indexes()
        workspaces = []
        for name in ("Sync bench", "Baseline"):
            boot = await create_workspace(name, "owner@example.com", "correct horse battery")
            await AttributeDefinition.create(
                workspace_id=boot.workspace.id, key="plan", label="Plan", type=AttributeType.TEXT
            )
            await AttributeDefinition.create(
                workspace_id=boot.workspace.id, key="seats", label="Seats", type=AttributeType.NUMBER
            )
            workspaces.append(boot)
        synced, baseline = workspaces
        server = await start_server(stack.env, core=layout.server_core, log_dir=stack.workdir)
        layout.pin_this_process()
        http = HttpPool("127.0.0.1", server.port, size=1)
        results = []
        try:
            for round_, label in ((0, "create"), (1, "update"), (1, "unchanged")):
                results.append(await run_sync(http, synced.api_key, contacts, batch, round_, label, server.pid))
                print(f"{results[-1]['label']}: {results[-1]['rows_per_s']:,.0f} rows/s", flush=True)
                if label != "unchanged":
                    results.append(await run_baseline(baseline.workspace.id, contacts, batch, round_, label))
                    print(f"{results[-1]['label']}: {results[-1]['rows_per_s']:,.0f} rows/s", flush=True)
        finally:
            http.close()
            server.stop()
            await Tortoise.close_connections()

        database = "SQLite" if sqlite else "PostgreSQL"
        print(f"\n{contacts:,} contacts in calls of {batch:,} rows, {database}; {layout.describe()}")
        print(", ".join(f"{k}: {v}" for k, v in machine_facts().items()))
        print()
        # Rows per second of the server's own CPU: what one core would sustain with nothing
        # else on it (on a busy machine the wall-clock figure also counts time the server
        # was runnable but not running).
        print(
            markdown_table(
                [
                    "what",
                    "rows/s",
                    "total s",
                    "p50 per call ms",
                    "max per call ms",
                    "server CPU s",
                    "rows per server CPU s",
                ],
                [
                    [
                        r["label"],
                        f"{r['rows_per_s']:,.0f}",
                        f"{r['seconds']:.1f}",
                        f"{r['p50_ms']:.0f}",
                        f"{r['max_ms']:.0f}",
                        "" if r["server_cpu_s"] is None else f"{r['server_cpu_s']:.1f}",
                        "" if r["server_cpu_s"] is None else f"{contacts / r['server_cpu_s']:,.0f}",
                    ]
                    for r in results
                ],
            )
        )
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        by_label = {r["label"]: r["rows_per_s"] for r in results}
        for label in ("create", "update"):
            ratio = by_label[f"raw INSERT … ON CONFLICT, {label}"] / by_label[f"syncContacts, {label}"]
            print(f"\n{label}: the raw upsert is {ratio:.1f}× syncContacts", end="")
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.contacts, args.batch, args.sqlite))
