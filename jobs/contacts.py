"""Contact housekeeping jobs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.functions import Max
from tortoise.transactions import in_transaction

from models.contacts import ContactChange
from models.sync import ContactChangeHorizon, ContactSyncRequest

log = logging.getLogger("parley.jobs.contacts")

# Integrators pulling changes incrementally must come back within this window.
CHANGE_LOG_RETENTION = timedelta(days=90)
# syncContacts replays a call by its idempotency key for this long.
IDEMPOTENCY_RETENTION = timedelta(days=7)


async def prune_contact_changes(ctx: dict[str, Any], *, older_than: timedelta = CHANGE_LOG_RETENTION) -> int:
    """Delete change-log rows older than the retention window (idempotent), and remember
    per workspace the newest change pruned: contactsChangedSince refuses cursors older
    than that (CURSOR_EXPIRED) instead of silently skipping what was pruned."""
    cutoff = datetime.now(UTC) - older_than
    async with in_transaction():
        horizons = (
            await ContactChange.filter(at__lt=cutoff)
            .group_by("workspace_id")
            .annotate(last=Max("id"))
            .values("workspace_id", "last")
        )
        if horizons:
            await ContactChangeHorizon.bulk_create(
                [ContactChangeHorizon(workspace_id=h["workspace_id"], pruned_through=h["last"], pruned_at=datetime.now(UTC)) for h in horizons],
                on_conflict=["workspace_id"],
                update_fields=["pruned_through", "pruned_at"],
            )
        deleted = await ContactChange.filter(at__lt=cutoff).delete()
    log.info("pruned %d contact changes older than %s", deleted, cutoff.isoformat())
    return int(deleted)


async def prune_sync_requests(ctx: dict[str, Any]) -> int:
    """Forget syncContacts idempotency keys older than IDEMPOTENCY_RETENTION."""
    cutoff = datetime.now(UTC) - IDEMPOTENCY_RETENTION
    deleted = await ContactSyncRequest.filter(created_at__lt=cutoff).delete()
    log.info("pruned %d syncContacts idempotency keys older than %s", deleted, cutoff.isoformat())
    return int(deleted)
