"""Export benchmark: the export job on a large workspace beside a raw-SQL baseline.

    .venv/bin/python -m bench.exports                       # 1,000,000 contacts on PostgreSQL
    .venv/bin/python -m bench.exports --contacts 200000 --sqlite

Creates a database of its own (parley_bench_<random> beside BENCH_DATABASE_URL, default
postgres://root@127.0.0.1:5432/test; or a temporary SQLite file), migrates, seeds one
workspace in SQL (contacts with eleven columns' worth of data, a tag on one in five, two
custom attributes), then exports every contact with the same twelve columns three ways:

- the job: `export_contacts`, the arq task exportContacts queues, run in this process
  (job record, count, keyset batches, formula neutralisation, progress writes, rename);
- the job again under tracemalloc, for the peak of Python memory it allocates;
- the baseline: the same SELECT (same formatting expressions) streamed by the database
  itself, `COPY (SELECT …) TO STDOUT WITH CSV HEADER` through asyncpg's
  `copy_from_query` on PostgreSQL, or the sqlite3 module's cursor into csv.writer on
  SQLite. Neither neutralises formulas nor writes global ids: it is the floor.

Prints rows/s, seconds, file size and peak memory as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from bench.segments import _bind, _sqlite_seed

COLUMNS = [
    "id",
    "name",
    "email",
    "phone",
    "country",
    "city",
    "vip",
    "tags",
    "last_seen_at",
    "created_at",
    "attribute.plan",
    "attribute.seats",
]

SEED_SQL = [
    """INSERT INTO contacts (workspace_id, name, email, phone, country, city, vip, blocked, gdpr_consent, sms_consent,
         attributes, first_seen_at, last_seen_at, created_at, updated_at)
       SELECT :ws, 'Contact ' || g, 'c' || g || '@example.com', '+3361234' || lpad((g % 10000)::text, 4, '0'),
         (ARRAY['PT','ES','FR','DE','GB','US','BR','IN','JP','HU'])[1 + g % 10], 'City ' || (g % 500),
         g % 20 = 0, false, g % 3 = 0, 'never',
         jsonb_build_object('plan', (ARRAY['free','pro','enterprise'])[1 + g % 3], 'seats', g % 50),
         :now - (g % 365) * interval '1 day' - interval '400 days',
         :now - (g % 365) * interval '1 day' - (g % 86400) * interval '1 second',
         :now, :now
       FROM generate_series(1, :n) AS g""",
    """INSERT INTO contact_tags (workspace_id, contact_id, name, created_at)
       SELECT :ws, id, 'trial', :now FROM contacts WHERE workspace_id = :ws AND id % 5 = 0""",
    "ANALYZE",
]


def _sqlite(statement: str) -> str | None:
    s = _sqlite_seed(statement)
    if s is None:
        return None
    return s.replace(
        "'+3361234' || lpad((g % 10000)::text, 4, '0')", "'+3361234' || substr('0000' || (g % 10000), -4, 4)"
    )


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


async def main(contacts: int, sqlite: bool, batch: int, keep: bool, repeat: int) -> None:
    from core.scratch_db import ScratchDatabase

    scratch = None
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-exports-"))
    if sqlite:
        url = f"sqlite://{workdir}/bench.sqlite3"
    else:
        base = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test")
        scratch = ScratchDatabase.beside(base, prefix="parley_bench")
        await scratch.create()
        url = scratch.url
    os.environ["DATABASE_URL"] = url
    os.environ["EXPORT_DIR"] = str(workdir / "exports")
    os.environ["EXPORT_BATCH_SIZE"] = str(batch)
    try:
        await _run(contacts, sqlite, url, workdir, repeat)
    finally:
        if keep:
            print(f"\nkept the database: {url}")
        else:
            if scratch is not None:
                await scratch.drop()
            shutil.rmtree(workdir, ignore_errors=True)


async def _run(contacts: int, sqlite: bool, url: str, workdir: Path, repeat: int) -> None:
    from tortoise import Tortoise, connections

    from core.config import settings
    from core.db import migrate, tortoise_config
    from domain import exports as ex
    from jobs.exports import batch_query, export_contacts
    from models.contacts import AttributeDefinition
    from models.job_records import Job, JobKind
    from resolvers.workspaces import create_workspace
    from services.exports import export_path
    from services.job_records import create_job

    await migrate()
    await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
    conn = connections.get("default")
    boot = await create_workspace("Bench", "owner@example.com", "correct horse battery")
    ws = boot.workspace.id
    await AttributeDefinition.create(workspace_id=ws, key="plan", label="Plan", type="text")
    await AttributeDefinition.create(workspace_id=ws, key="seats", label="Seats", type="number")
    now = datetime.now(UTC)
    started = time.perf_counter()
    for statement in SEED_SQL:
        if sqlite:
            statement = _sqlite(statement)
            if statement is None:
                continue
        values = {"ws": ws, "now": now if not sqlite else now.isoformat(" ", timespec="microseconds"), "n": contacts}
        sql, params = _bind(statement, values, not sqlite)
        await conn.execute_query(sql, params)
    database = "SQLite" if sqlite else "PostgreSQL"
    print(
        f"seeded {contacts:,} contacts in {time.perf_counter() - started:.1f} s ({database}); "
        f"export batch {settings.export_batch_size:,}\n"
    )

    async def job_run(traced: bool) -> tuple[float, int, int]:
        job = await create_job(ws, JobKind.EXPORT, params={"columns": COLUMNS, "segment_id": None, "email_to": []})
        if traced:
            tracemalloc.start()
        start = time.perf_counter()
        try:
            result = await export_contacts({"hub": None}, job.id)
        finally:
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] if traced else 0
            tracemalloc.stop()
        assert result is not None and result["rows"] == contacts, result
        assert (await Job.get(id=job.id)).processed == contacts
        path = export_path(ws, job.id)
        size = path.stat().st_size
        path.unlink()
        return elapsed, size, peak

    # The baseline: the same SELECT, whole, streamed to CSV by the database's own means.
    columns, errors = ex.parse_columns(COLUMNS, ["plan", "seats"])
    assert not errors
    sql, params = batch_query(columns, ws, None, 0, contacts + 1)
    out = workdir / "baseline.csv"

    async def baseline_run() -> tuple[float, int]:
        start = time.perf_counter()
        if sqlite:
            import sqlite3

            raw = sqlite3.connect(url.removeprefix("sqlite://"))
            with out.open("w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                cursor = raw.execute(sql, params)
                writer.writerow(["_id", *COLUMNS])
                while rows := cursor.fetchmany(5000):
                    writer.writerows(rows)
            raw.close()
        else:
            import asyncpg

            raw = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
            try:
                await raw.copy_from_query(sql, *params, output=str(out), format="csv", header=True)
            finally:
                await raw.close()
        return time.perf_counter() - start, out.stat().st_size

    baseline = "sqlite3 cursor → csv.writer" if sqlite else "COPY (SELECT …) TO STDOUT (asyncpg copy_from_query)"
    load_before = os.getloadavg()[0]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    job_times, base_times = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine
        job_s, job_bytes, _ = await job_run(traced=False)
        job_times.append(job_s)
        base_s, base_bytes = await baseline_run()
        base_times.append(base_s)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced_s, _, traced_peak = await job_run(traced=True)
    load_after = os.getloadavg()[0]

    def figures(times: list[float]) -> str:
        med, best = statistics.median(times), min(times)
        return f"{contacts / med:,.0f} (best {contacts / best:,.0f}) | {med:.2f} s"

    print(
        f"machine: {machine()}; load average {load_before:.1f} before, {load_after:.1f} after; "
        f"median of {repeat} interleaved runs\n"
    )
    print(f"| {database}, {contacts:,} contacts, {len(COLUMNS)} columns | rows/s | time | file | peak memory |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| export job (exportContacts' task) | {figures(job_times)} | {job_bytes / 1e6:.0f} MB "
        f"| {traced_peak / 1e6:.1f} MB traced by tracemalloc (that run: {traced_s:.0f} s); "
        f"max RSS grew {max(0, rss_after - rss_before) / 1024:.0f} MB |"
    )
    print(f"| baseline: {baseline} | {figures(base_times)} | {base_bytes / 1e6:.0f} MB | – |")
    print(f"\njob / baseline time (medians): {statistics.median(job_times) / statistics.median(base_times):.2f}×")
    await Tortoise.close_connections()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--batch", type=int, default=5000, help="EXPORT_BATCH_SIZE")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of the job and the baseline")
    args = parser.parse_args()
    asyncio.run(main(args.contacts, args.sqlite, args.batch, args.keep, args.repeat))
