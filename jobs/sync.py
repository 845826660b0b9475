"""Housekeeping of what CRM sync keeps: the contact change log that `contactsChangedSince`
pages through, and the idempotency keys of `syncContacts`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.functions import Max
from tortoise.queryset import QuerySet

from models.contacts import ContactChange
from models.sync import ContactChangeHorizon, ContactSyncRequest

log = logging.getLogger("parley.jobs.contacts")

# Integrators pulling changes incrementally must come back within this window.
CHANGE_LOG_RETENTION = timedelta(days=90)
# syncContacts replays a call by its idempotency key for this long.
IDEMPOTENCY_RETENTION = timedelta(days=7)
PRUNE_BATCH = 2000


async def prune_contact_changes(ctx: dict[str, Any], *, older_than: timedelta = CHANGE_LOG_RETENTION) -> int:
    """Delete change-log rows older than the retention window (idempotent), and remember
    per workspace the newest change pruned: contactsChangedSince refuses cursors older
    than that (CURSOR_EXPIRED) instead of silently skipping what was pruned. The horizon
    is written first, then the rows go PRUNE_BATCH per statement (SQLite's one writer is
    never held long); a run that dies halfway leaves rows the horizon already refuses."""
    cutoff = datetime.now(UTC) - older_than
    horizons = (
        await ContactChange.filter(at__lt=cutoff)
        .group_by("workspace_id")
        .annotate(last=Max("id"))
        .values("workspace_id", "last")
    )
    if not horizons:
        return 0
    await ContactChangeHorizon.bulk_create(
        [
            ContactChangeHorizon(workspace_id=h["workspace_id"], pruned_through=h["last"], pruned_at=datetime.now(UTC))
            for h in horizons
        ],
        on_conflict=["workspace_id"],
        update_fields=["pruned_through", "pruned_at"],
    )
    deleted = await _delete_in_batches(ContactChange.filter(at__lt=cutoff, id__lte=max(h["last"] for h in horizons)))
    log.info("pruned %d contact changes older than %s", deleted, cutoff.isoformat())
    return deleted


async def prune_sync_requests(ctx: dict[str, Any]) -> int:
    """Forget syncContacts idempotency keys older than IDEMPOTENCY_RETENTION."""
    cutoff = datetime.now(UTC) - IDEMPOTENCY_RETENTION
    deleted = await _delete_in_batches(ContactSyncRequest.filter(created_at__lt=cutoff))
    log.info("pruned %d syncContacts idempotency keys older than %s", deleted, cutoff.isoformat())
    return deleted


async def _delete_in_batches(rows: QuerySet[Any]) -> int:
    """Delete what `rows` selects, PRUNE_BATCH rows a statement, oldest first."""
    deleted = 0
    while True:
        ids = await rows.order_by("id").limit(PRUNE_BATCH).values_list("id", flat=True)
        if not ids:
            return deleted
        deleted += await rows.model.filter(id__in=list(ids)).delete()
