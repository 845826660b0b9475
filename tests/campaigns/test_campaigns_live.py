"""Campaigns on real processes: a uvicorn server takes createCampaign, arq workers send,
a graphql-transport-ws subscriber follows `jobProgress`; and a worker killed with SIGKILL
in the middle of a campaign, then another started, still sends exactly one message per
contact."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from models.attribution import Receipt
from models.campaigns import Campaign, CampaignRecipient
from models.conversations import Conversation, Message
from models.job_records import Job
from tests.campaigns.helpers import CREATE, contact, create, gid, read
from tests.conftest import Tenant, pk, start_server, start_worker, stop_process
from tests.realtime.wsclient import GraphQLWs

PROGRESS = "subscription($id: ID!) { jobProgress(jobId: $id) { id status processed total cursor } }"


async def wait_for(check: Any, timeout: float = 60, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(every)


async def test_a_scheduled_campaign_runs_at_its_time_in_a_worker_and_reports_progress(
    tenant: Tenant, tmp_path: Path
) -> None:
    people = [await contact(tenant, name=f"Subscriber {i}") for i in range(30)]
    server = start_server(tmp_path)
    worker = start_worker(tmp_path, env={"CAMPAIGN_BATCH_SIZE": "5"})
    try:
        at = datetime.now(UTC) + timedelta(seconds=3)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            body = (
                await http.post(
                    "/graphql",
                    headers={"authorization": f"Bearer {tenant.owner_token}"},
                    json={
                        "query": CREATE,
                        "variables": {
                            "i": {
                                "name": "Soon",
                                "channelId": gid("Channel", tenant.channel.id),
                                "body": "It is time",
                                "contactIds": [gid("Contact", p.id) for p in people],
                                "scheduledAt": at.isoformat(),
                            }
                        },
                    },
                )
            ).json()
        campaign = body["data"]["createCampaign"]["campaign"]
        assert campaign["status"] == "SCHEDULED"
        async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
            sub = await ws.subscribe(PROGRESS, {"id": campaign["job"]["id"]})
            events = [(await sub.next_data())["jobProgress"]]
            while events[-1]["status"] in ("QUEUED", "RUNNING"):
                events.append((await sub.next_data(timeout=30))["jobProgress"])
            assert (await sub.receive())["type"] == "complete"
        statuses = [e["status"] for e in events]
        assert statuses[0] == "QUEUED" and statuses[-1] == "SUCCEEDED" and "RUNNING" in statuses, statuses
        assert events[-1]["processed"] == 30 and events[-1]["total"] == 30
        cursors = [int(e["cursor"]) for e in events]
        assert cursors == sorted(set(cursors))
        shown = await read(tenant, campaign["id"])
        assert shown["status"] == "COMPLETED" and shown["stats"]["sent"] == 30
        assert datetime.fromisoformat(shown["startedAt"]) >= at
        assert await Message.filter(conversation__contact_id__in=[p.id for p in people]).count() == 30
    finally:
        stop_process(worker)
        server.stop()


async def test_a_worker_killed_mid_campaign_and_another_started_sends_once_per_contact(
    app: Any, tenant: Tenant, tmp_path: Path
) -> None:
    count = 300
    people = [await contact(tenant, name=f"Reader {i}") for i in range(count)]
    # Small slow batches, so the kill lands mid-run; a silent run is stale after 1 s.
    env = {"CAMPAIGN_BATCH_SIZE": "10", "CAMPAIGN_BATCH_PAUSE": "0.05", "CAMPAIGN_STALE_SECONDS": "1"}
    first = start_worker(tmp_path, env=env, name="worker-1")
    second = None
    try:
        campaign = await create(
            tenant,
            name="Big",
            channelId=gid("Channel", tenant.channel.id),
            body="Once only",
            contactIds=[gid("Contact", p.id) for p in people],
        )
        campaign_id = pk(campaign["id"])
        await wait_for(lambda: Campaign.filter(id=campaign_id, sent__gte=50).exists())
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = (await Campaign.get(id=campaign_id)).sent
        assert 50 <= killed_at < count, killed_at
        assert (await Campaign.get(id=campaign_id)).status.value == "running"
        await asyncio.sleep(1.5)  # its heartbeat goes stale
        second = start_worker(tmp_path, env=env, name="worker-2")
        await wait_for(lambda: Campaign.filter(id=campaign_id, status="completed").exists(), timeout=90)
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
    ids = [p.id for p in people]
    per_contact = await Conversation.filter(contact_id__in=ids).values_list("contact_id", flat=True)
    assert sorted(per_contact) == sorted(ids)  # one conversation each, no more
    assert await Message.filter(conversation__contact_id__in=ids).count() == count
    assert (
        await CampaignRecipient.filter(campaign_id=campaign_id, status="sent", message_id__isnull=False).count()
        == count
    )
    assert await Receipt.filter(source=f"campaign:{campaign_id}").count() == count
    shown = await read(tenant, campaign["id"])
    assert shown["stats"]["sent"] == count and shown["stats"]["recipients"] == count
    # The campaign and its job record finish in one transaction.
    job = await Job.get(id=pk(campaign["job"]["id"]))
    assert job.status.value == "succeeded" and job.attempts >= 2 and job.processed == count
