"""Routing jobs: `reassign_offline`, a cron sweep every minute (services/routing.py) that
moves the open conversations of agents offline past the timeout and hands waiting ones to
agents with room. Idempotent: a second run finds nothing left to move."""

from __future__ import annotations

import logging
from typing import Any

from jobs.conversations import outbox
from services import routing

log = logging.getLogger("parley.jobs.routing")


async def reassign_offline(ctx: dict[str, Any]) -> int:
    moved = await routing.reassign_offline(outbox(ctx), ctx["redis"])
    if moved:
        log.info("routing moved %d conversations", moved)
    return moved
