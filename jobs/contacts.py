"""Contact housekeeping jobs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from models.contacts import ContactChange

log = logging.getLogger("parley.jobs.contacts")

# Integrators pulling changes incrementally must come back within this window.
CHANGE_LOG_RETENTION = timedelta(days=90)


async def prune_contact_changes(ctx: dict[str, Any]) -> int:
    """Delete change-log rows older than the retention window (idempotent)."""
    cutoff = datetime.now(UTC) - CHANGE_LOG_RETENTION
    deleted = await ContactChange.filter(at__lt=cutoff).delete()
    log.info("pruned %d contact changes older than %s", deleted, cutoff.isoformat())
    return int(deleted)
