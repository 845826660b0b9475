"""services/job_records.py against the real database and Redis: each write is committed, then
published on the job's channel; progress is throttled; cancelled jobs stop their task."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from core import keys
from models.job_records import Job, JobKind, JobStatus
from services.job_records import JobCancelled, JobTracker, cancel_job, create_job


class Listener:
    """A plain Redis subscriber to one job's channel."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    async def events(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    got.append(json.loads(message["data"]))
        return got

    async def nothing_more(self) -> bool:
        return await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None


@pytest.fixture
async def job(tenant: Any) -> Job:
    return await create_job(tenant.workspace.id, JobKind.EXPORT, params={"columns": ["email"]})


@pytest.fixture
async def listener(job: Job) -> AsyncIterator[Listener]:
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.job_channel(job.workspace_id, job.id))
    try:
        yield Listener(pubsub)
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_a_job_runs_reports_progress_and_succeeds(app: Any, job: Job, listener: Listener) -> None:
    hub = app.state.hub
    assert (job.status, job.processed, job.total, job.seq) == (JobStatus.QUEUED, 0, None, 0)
    tracker = await JobTracker.begin(job.id, hub, total=300, interval=3600)
    assert tracker is not None
    for done in range(1, 301):
        await tracker.progress(done)  # throttled away: the interval has not passed
    await tracker.progress(150, force=True)
    await tracker.succeed({"rows": 300})
    events = await listener.events(3)
    assert [(e["status"], e["processed"], e["total"], e["cursor"]) for e in events] == [
        ("running", 0, 300, "1"),
        ("running", 150, 300, "2"),
        ("succeeded", 300, 300, "3"),
    ]
    assert await listener.nothing_more()
    row = await Job.get(id=job.id)
    assert (row.status, row.processed, row.total, row.result, row.seq, row.attempts) == (
        JobStatus.SUCCEEDED,
        300,
        300,
        {"rows": 300},
        3,
        1,
    )
    assert row.started_at is not None and row.finished_at is not None and row.finished_at >= row.started_at
    # A retried task (arq is at-least-once) finds the job finished and does nothing.
    assert await JobTracker.begin(job.id, hub) is None


async def test_progress_is_written_at_most_once_per_interval(app: Any, job: Job, listener: Listener) -> None:
    tracker = await JobTracker.begin(job.id, app.state.hub, interval=0.05)
    assert tracker is not None
    for done in range(1, 2001):
        await tracker.progress(done)
        if done % 100 == 0:
            await asyncio.sleep(0.01)
    # 2,000 calls over about 0.2 s: a handful of writes, never one per call.
    written = (await Job.get(id=job.id)).seq - 1
    assert 1 <= written <= 50
    events = await listener.events(written + 1)
    assert [int(e["cursor"]) for e in events] == list(range(1, written + 2))


async def test_a_cancelled_job_stops_its_task(app: Any, job: Job, listener: Listener) -> None:
    tracker = await JobTracker.begin(job.id, app.state.hub, interval=0)
    assert tracker is not None
    assert await cancel_job(job, app.state.hub)
    with pytest.raises(JobCancelled):
        await tracker.progress(10)
    with pytest.raises(JobCancelled):
        await tracker.succeed({})
    assert await cancel_job(job, app.state.hub) is False  # already finished
    row = await Job.get(id=job.id)
    assert row.status is JobStatus.CANCELLED and row.finished_at is not None and row.result is None
    assert [e["status"] for e in await listener.events(2)] == ["running", "cancelled"]
    assert await listener.nothing_more()


async def test_a_failed_attempt_can_wait_for_a_retry(app: Any, job: Job) -> None:
    tracker = await JobTracker.begin(job.id, None)
    assert tracker is not None
    await tracker.retry_later("receiver answered 503")
    row = await Job.get(id=job.id)
    assert (row.status, row.error, row.attempts) == (JobStatus.QUEUED, "receiver answered 503", 1)
    tracker = await JobTracker.begin(job.id, None)
    assert tracker is not None
    await tracker.fail("x" * 5000)
    row = await Job.get(id=job.id)
    assert (row.status, len(row.error or ""), row.attempts) == (JobStatus.FAILED, 2000, 2)


async def test_the_starter_is_recorded(tenant: Any) -> None:
    from core.permissions import Principal, PrincipalKind

    agent = Principal(kind=PrincipalKind.AGENT, workspace_id=tenant.workspace.id, agent_id=tenant.owner.id)
    job = await create_job(tenant.workspace.id, JobKind.SYNC, principal=agent)
    assert (job.agent_id, job.api_key_id) == (tenant.owner.id, None)
    system = await create_job(tenant.workspace.id, JobKind.SEGMENT_REFRESH)
    assert (system.agent_id, system.api_key_id) == (None, None)
