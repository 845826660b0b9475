"""Bulk actions on real processes: a uvicorn server takes startBulkAction, an arq worker
runs it, a graphql-transport-ws subscriber follows `jobProgress`; and a worker killed with
SIGKILL in the middle of tagging, then another started, still touches every contact exactly
once (one tag row, one change-log row each), and the job finishes with the right counts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from models.bulk import BulkAction
from models.contacts import ContactChange, ContactTag
from models.job_records import Job
from tests.bulk.test_bulk import START, contact, gid, start
from tests.conftest import Tenant, gql, pk, start_server, start_worker, stop_process
from tests.realtime.wsclient import GraphQLWs

PROGRESS = "subscription($id: ID!) { jobProgress(jobId: $id) { id status processed total cursor } }"


async def wait_for(check: Any, timeout: float = 60, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(every)


async def test_progress_reaches_a_subscriber_until_the_action_finishes(tenant: Tenant, tmp_path: Path) -> None:
    people = [await contact(tenant, name=f"Subscriber {i}") for i in range(40)]
    server = start_server(tmp_path)
    worker = None
    try:
        async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
            data = await gql(
                server,
                START,
                {"i": {"target": {"ids": [gid("Contact", p.id) for p in people]}, "action": "TAG", "tags": ["live"]}},
                tenant.owner_token,
            )
            action = data["startBulkAction"]["bulkAction"]
            sub = await ws.subscribe(PROGRESS, {"id": action["job"]["id"]})
            events = [(await sub.next_data())["jobProgress"]]
            worker = start_worker(tmp_path, env={"BULK_BATCH_SIZE": "5", "BULK_BATCH_PAUSE": "0.1"})
            while events[-1]["status"] in ("QUEUED", "RUNNING"):
                events.append((await sub.next_data(timeout=30))["jobProgress"])
            assert (await sub.receive())["type"] == "complete"
        statuses = [e["status"] for e in events]
        assert statuses[0] == "QUEUED" and statuses[-1] == "SUCCEEDED" and "RUNNING" in statuses, statuses
        assert events[-1]["processed"] == 40 and events[-1]["total"] == 40
        assert 0 < [e["processed"] for e in events if e["status"] == "RUNNING"][-1] <= 40
        cursors = [int(e["cursor"]) for e in events]
        assert cursors == sorted(set(cursors))
    finally:
        if worker is not None:
            stop_process(worker)
        server.stop()
    assert await ContactTag.filter(contact_id__in=[p.id for p in people], name="live").count() == 40


async def test_a_worker_killed_mid_action_and_another_started_tags_each_contact_once(
    app: Any, tenant: Tenant, tmp_path: Path
) -> None:
    count = 300
    people = [await contact(tenant, name=f"Reader {i}") for i in range(count)]
    ids = [p.id for p in people]
    # Small slow batches, so the kill lands mid-run; a silent action is stale after 1 s.
    env = {"BULK_BATCH_SIZE": "10", "BULK_BATCH_PAUSE": "0.05", "BULK_STALE_SECONDS": "1"}
    first = start_worker(tmp_path, env=env, name="worker-1")
    second = None
    try:
        started = await start(tenant, target={"ids": [gid("Contact", i) for i in ids]}, action="TAG", tags=["once"])
        action_id = pk(started["bulkAction"]["id"])
        await wait_for(lambda: BulkAction.filter(id=action_id, done__gte=50).exists())
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = (await BulkAction.get(id=action_id)).done
        assert 50 <= killed_at < count, killed_at
        job_id = (await BulkAction.get(id=action_id)).job_id
        assert (await Job.get(id=job_id)).status.value == "running"
        await asyncio.sleep(1.5)  # its heartbeat goes stale
        second = start_worker(tmp_path, env=env, name="worker-2")
        await wait_for(lambda: Job.filter(id=job_id, status="succeeded").exists(), timeout=90)
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
    action = await BulkAction.get(id=action_id)
    assert (action.done, action.skipped, action.failed) == (count, 0, 0)
    assert sorted(await ContactTag.filter(contact_id__in=ids, name="once").values_list("contact_id", flat=True)) == ids
    changed = await ContactChange.filter(contact_id__in=ids, kind="updated").values_list("contact_id", flat=True)
    assert sorted(changed) == ids  # one change each, no batch applied twice
    job = await Job.get(id=job_id)
    assert job.processed == count and job.attempts >= 2
    assert job.result == {"done": count, "skipped": 0, "failed": 0}
