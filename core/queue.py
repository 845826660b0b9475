"""The arq job queue, as the API process uses it: enqueue, debounced.

    await enqueue(ctx.jobs, "refresh_segment", segment_id, job_id=f"segment:{segment_id}")
    queue_job(ctx.outbox, "deliver_message", message.id)   # once the transaction commits

The only module of the API side that talks to arq (tests/test_architecture.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from core import keys
from core.events import Outbox


async def create_queue(redis_url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=keys.arq_queue())


async def enqueue(
    pool: ArqRedis | None, function: str, *args: Any, job_id: str | None = None, defer: timedelta | None = None
) -> bool:
    """Queue a job. With a job id, a job already queued under it absorbs this one (arq
    refuses duplicates), which debounces bursts of changes into one run."""
    if pool is None:
        return False
    job = await pool.enqueue_job(function, *args, _job_id=job_id, _defer_by=defer)
    return job is not None


def queue_job(
    outbox: Outbox, function: str, *args: Any, job_id: str | None = None, defer: timedelta | None = None
) -> None:
    """`enqueue` after the outbox's transaction commits (nothing if it rolls back)."""

    async def run() -> None:
        await enqueue(outbox.jobs, function, *args, job_id=job_id, defer=defer)

    outbox.after_commit(run)
