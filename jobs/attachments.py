"""Attachments' jobs: remove the direct uploads no message took (services/attachments.py)."""

from __future__ import annotations

import logging
from typing import Any

from services import attachments

log = logging.getLogger("parley.jobs.attachments")


async def prune_uploads(ctx: dict[str, Any]) -> int:
    """Hourly: direct uploads older than a day that no message took, rows and files."""
    pruned = await attachments.prune_uploads()
    if pruned:
        log.info("pruned %d direct uploads no message took", pruned)
    return pruned
