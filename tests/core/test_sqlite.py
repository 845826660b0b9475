"""SQLite with several processes writing (core/sqlite.py): a write waits for another
process's lock instead of failing; one that cannot get it in time answers BUSY (HTTP 503
with Retry-After) and writes nothing; a job that meets it is retried; and tasks of one
process never run inside each other's transactions on its one connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tortoise.transactions import in_transaction

from models.contacts import Contact
from models.job_records import Job
from tests.conftest import Tenant, pk, start_server, start_worker, stop_process

sqlite_only = pytest.mark.skipif(
    not os.environ["DATABASE_URL"].startswith("sqlite://"), reason="PostgreSQL has no database-wide write lock"
)
CREATE = "mutation($i: CreateContactInput!) { createContact(input: $i) { contact { id } userErrors { code } } }"


@contextlib.contextmanager
def write_lock_held() -> Iterator[sqlite3.Connection]:
    """Another process's writer: a connection of its own holding SQLite's write lock."""
    other = sqlite3.connect(os.environ["DATABASE_URL"].removeprefix("sqlite://"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
    finally:
        with contextlib.suppress(sqlite3.Error):
            other.execute("ROLLBACK")
        other.close()


async def create_contact(server_url: str, tenant: Tenant, name: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server_url, timeout=60) as http:
        return await http.post(
            "/graphql",
            json={"query": CREATE, "variables": {"i": {"name": name}}},
            headers={"authorization": f"Bearer {tenant.owner_token}"},
        )


@sqlite_only
async def test_a_request_waits_for_another_processs_write_and_then_writes(tenant: Tenant, tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with write_lock_held():
            request = asyncio.create_task(create_contact(server.url, tenant, "Patient"))
            await asyncio.sleep(1.5)
            assert not request.done()
            # Reads go on meanwhile (WAL): the server is not stuck behind the writer.
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
                assert (await http.get("/readyz")).status_code == 200
        reply = await request
        assert reply.status_code == 200
        body = reply.json()
        assert "errors" not in body and body["data"]["createContact"]["userErrors"] == []
        assert await Contact.filter(id=pk(body["data"]["createContact"]["contact"]["id"]), name="Patient").exists()
    finally:
        server.stop()


@sqlite_only
async def test_a_write_that_cannot_get_the_lock_in_time_answers_busy_and_writes_nothing(
    tenant: Tenant, tmp_path: Path
) -> None:
    server = start_server(tmp_path, env={"SQLITE_WRITE_WAIT_SECONDS": "1"})
    try:
        with write_lock_held():
            started = time.monotonic()
            reply = await create_contact(server.url, tenant, "Refused")
            waited = time.monotonic() - started
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        [error] = reply.json()["errors"]
        assert error["extensions"]["code"] == "BUSY"
        assert error["message"] == "The database is busy and nothing was written; try again in a moment."
        assert error["path"] == ["createContact"]
        assert waited >= 1
        assert not await Contact.filter(workspace_id=tenant.workspace.id, name="Refused").exists()
        # Once the lock is free, the same request goes through.
        again = await create_contact(server.url, tenant, "Refused")
        assert again.status_code == 200 and again.json()["data"]["createContact"]["userErrors"] == []
        assert "unexpected error" not in server.log.read_text()
    finally:
        server.stop()


@sqlite_only
async def test_a_transaction_that_reads_then_writes_is_not_refused_by_another_processs_commit(tenant: Tenant) -> None:
    """Deferred, the transaction would read under a snapshot, the other process commit, and
    its write be refused at once with "database is locked" (no busy timeout can wait that
    out). IMMEDIATE, it holds the write lock from its start and the other process waits."""
    path = os.environ["DATABASE_URL"].removeprefix("sqlite://")

    def other_process_writes() -> None:
        other = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            other.execute("UPDATE contacts SET name = 'Other' WHERE workspace_id = ?", [tenant.workspace.id])
        finally:
            other.close()

    await tenant.contact(name="Mine")
    async with in_transaction():
        contact = await Contact.get(workspace_id=tenant.workspace.id)
        writer = asyncio.create_task(asyncio.to_thread(other_process_writes))
        await asyncio.sleep(0.3)  # the other process commits here, unless it must wait for us
        contact.city = "Lyon"
        await contact.save(update_fields=["city"])
    await writer
    contact = await Contact.get(workspace_id=tenant.workspace.id)
    assert (contact.name, contact.city) == ("Other", "Lyon")


async def test_tasks_of_one_process_never_run_inside_each_others_transactions(tenant: Tenant) -> None:
    """One task's transaction rolls back while another task writes: the other's row stays,
    the rolled-back one is gone (on SQLite both go through the process's one connection)."""
    ws = tenant.workspace.id
    inside = asyncio.Event()
    now = datetime.now(UTC)

    async def rolled_back() -> None:
        with contextlib.suppress(RuntimeError):
            async with in_transaction():
                await Contact.create(workspace_id=ws, name="Rolled back", last_seen_at=now)
                inside.set()
                await asyncio.sleep(0.2)  # the other task runs now, or waits
                raise RuntimeError("abandon")

    async def meanwhile() -> None:
        await inside.wait()
        await Contact.create(workspace_id=ws, name="Kept", last_seen_at=now)

    await asyncio.gather(rolled_back(), meanwhile())
    assert sorted(await Contact.filter(workspace_id=ws).values_list("name", flat=True)) == ["Kept"]


@sqlite_only
async def test_a_job_that_finds_the_database_locked_is_retried_not_failed(tenant: Tenant, tmp_path: Path) -> None:
    made = await tenant.api(
        "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { code } } }",
        {
            "i": {
                "name": "Lyon",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Lyon"}}],
                },
            }
        },
        token=tenant.owner_token,
    )
    segment_id = pk(made["createSegment"]["segment"]["id"])
    [job] = await Job.filter(workspace_id=tenant.workspace.id)
    worker = None
    try:
        with write_lock_held():
            worker = start_worker(tmp_path, env={"SQLITE_WRITE_WAIT_SECONDS": "0.5"})
            log = tmp_path / "worker.log"
            deadline = time.monotonic() + 30
            while "retrying" not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
        for _ in range(300):
            await job.refresh_from_db()
            if job.status == "succeeded":
                break
            await asyncio.sleep(0.1)
        assert job.status == "succeeded", (job.status, job.error)
        text = (tmp_path / "worker.log").read_text(errors="replace")
        # Other tests' queued jobs may run (and fail for their own reasons) in this worker:
        # what matters is that nothing failed on the lock.
        failed = [
            line
            for line in text.splitlines()
            if " ! " in line and ("refresh_" in line or "cron:" in line or "locked" in line)
        ]
        assert "refresh_segment" in text and failed == [], failed
        assert job.result is not None and job.params.get("segment_id", segment_id) == segment_id
    finally:
        if worker is not None:
            stop_process(worker)


async def test_each_connection_is_set_up_for_several_writers(tmp_path: Path) -> None:
    from core.sqlite import Client

    client = Client(str(tmp_path / "check.sqlite3"), connection_name="check")
    await client.create_connection(with_db=True)
    try:
        found = {}
        for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys"):
            found[name] = next(iter((await client.execute_query_dict(f"PRAGMA {name}"))[0].values()))
    finally:
        await client.close()
    # synchronous 1 is NORMAL; busy_timeout is one attempt's wait, in milliseconds.
    assert found == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 200, "foreign_keys": 1}
