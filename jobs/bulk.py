"""`run_bulk_action(action_id)`: a bulk action, keyset batch by keyset batch.

Each batch is one transaction: lock the action's row, check its job is still RUNNING
(cancelBulkAction stops it before the next batch), read the next BULK_BATCH_SIZE contacts
after the high-water mark, apply the action (services/bulk.py), and move the mark and the
counts. The mark and the batch's effects commit together, so every contact is handled
exactly once: a worker killed mid-batch rolls the batch back, and whichever run takes the
row next (arq's retry, or the sweep's) starts after the last committed batch. Two runs side
by side take turns on the row lock; the second finds the mark moved and goes on from it.
A batch that raises is rolled back to its savepoint and done again one contact at a time:
the contacts that still raise count as failed, and the action goes on (_apply).

`resume_bulk_actions` (every 10 s) queues a run for each RUNNING action with no batch for
BULK_STALE_SECONDS: its worker died.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import F, Q, Subquery
from tortoise.transactions import in_transaction

from core import keys
from core.config import settings
from core.errors import DatabaseBusy
from core.events import Outbox
from core.queue import enqueue
from models.bulk import BulkAction
from models.job_records import Job, JobStatus
from services.bulk import BatchResult, apply_batch, erased_after_commit, next_ids
from services.job_records import JobCancelled, JobTracker

log = logging.getLogger("parley.jobs.bulk")


def _processed(action: BulkAction) -> int:
    return int(action.done + action.skipped + action.failed)


async def _batch(outbox: Outbox, action_id: int, size: int) -> tuple[BulkAction, BatchResult, list[int]] | None:
    """One batch in one transaction; None when the action has nothing left (or was cancelled)."""
    async with in_transaction():
        action = await BulkAction.select_for_update().get(id=action_id)
        status = await Job.filter(id=action.job_id).values_list("status", flat=True)
        if not status or JobStatus(status[0]) is not JobStatus.RUNNING:
            raise JobCancelled(action.job_id)
        ids, mark = await next_ids(action, size)
        if mark is None:
            return None
        result = await _apply(outbox, action, ids)
        missing = 0 if "ids" not in action.target else _named_between(action, mark) - len(ids)
        result.skipped += missing
        await BulkAction.filter(id=action_id).update(
            high_water=mark,
            done=F("done") + result.done,
            skipped=F("skipped") + result.skipped,
            failed=F("failed") + result.failed,
            heartbeat_at=datetime.now(UTC),
        )
        await action.refresh_from_db()
    return action, result, ids


async def _apply(outbox: Outbox, action: BulkAction, ids: list[int]) -> BatchResult:
    """The batch in a savepoint; should it raise, each contact in a savepoint of its own,
    and the contacts that still raise count as failed (logged): one bad contact does not
    stop the action, and the others' effects stay exactly once."""
    checkpoint = outbox.checkpoint()
    try:
        async with in_transaction():
            return await apply_batch(outbox, action, ids)
    except DatabaseBusy:
        raise
    except Exception:
        log.exception("bulk action %s: a batch failed; retrying its contacts one by one", action.id)
        outbox.rollback_to(checkpoint)
    result = BatchResult()
    for contact_id in ids:
        checkpoint = outbox.checkpoint()
        try:
            async with in_transaction():
                one = await apply_batch(outbox, action, [contact_id])
        except DatabaseBusy:
            raise
        except Exception:
            log.exception("bulk action %s: contact %s failed", action.id, contact_id)
            outbox.rollback_to(checkpoint)
            result.failed += 1
            continue
        result.done += one.done
        result.skipped += one.skipped
        result.erased += one.erased
    return result


def _named_between(action: BulkAction, mark: int) -> int:
    """How many of the named ids lie in (high_water, mark]: the batch's share."""
    return sum(1 for i in action.target["ids"] if action.high_water < i <= mark)


async def run_bulk_action(ctx: dict[str, Any], action_id: int) -> dict[str, int] | None:
    action = await BulkAction.get_or_none(id=action_id)
    if action is None:
        return None
    hub = ctx.get("hub")
    tracker = await JobTracker.begin(action.job_id, hub, total=action.total)
    if tracker is None:
        return None  # cancelled, or finished by another run
    size = settings.bulk_batch_size
    outbox = Outbox(hub, ctx.get("redis"))
    try:
        await tracker.progress(_processed(action), force=True)
        while True:
            step = await _batch(outbox, action_id, size)
            await outbox.flush()
            if step is None:
                break
            action, result, ids = step
            await erased_after_commit(hub, action.workspace_id, result.erased, ids)
            await tracker.progress(_processed(action))
            if settings.bulk_batch_pause:
                await asyncio.sleep(settings.bulk_batch_pause)
    except JobCancelled:
        log.info("bulk action %s cancelled", action_id)
        return None
    except DatabaseBusy:
        raise  # arq runs it again from the last committed batch
    except Exception:
        log.exception("bulk action %s failed", action_id)
        await tracker.fail("The bulk action failed unexpectedly (the error is logged); what it did so far stays done.")
        return None
    action = await BulkAction.get(id=action_id)
    counts = {"done": int(action.done), "skipped": int(action.skipped), "failed": int(action.failed)}
    try:
        await tracker.progress(_processed(action))
        await tracker.succeed(dict(counts))
    except JobCancelled:
        return None
    log.info("bulk action %s finished: %s", action_id, counts)
    return counts


async def resume_bulk_actions(ctx: dict[str, Any]) -> int:
    """Queue a run of each running action whose worker went silent. Queuing a run that
    exists is harmless: arq refuses the same job id, and runs side by side take turns."""
    stale = datetime.now(UTC) - timedelta(seconds=settings.bulk_stale_seconds)
    running = Subquery(Job.filter(status=JobStatus.RUNNING).values("id"))
    silent = Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale)
    rows = await BulkAction.filter(silent, job_id__in=running).values_list("id", "heartbeat_at")
    queued = 0
    for action_id, heartbeat in rows:
        at = int(heartbeat.timestamp()) if heartbeat else 0
        queued += await enqueue(ctx.get("redis"), "run_bulk_action", action_id, job_id=keys.bulk_job(action_id, at))
    if queued:
        log.info("resumed %d bulk actions", queued)
    return queued
