"""Conversation jobs: snoozed conversations wake up (a deferred job at the snooze time,
and a cron sweep every minute that catches any the deferred job missed — both idempotent)."""

from __future__ import annotations

import logging
from typing import Any

from core.events import Outbox
from services.conversations import wake_due

log = logging.getLogger("parley.jobs.conversations")


def outbox(ctx: dict[str, Any]) -> Outbox:
    """An outbox for a job: events go out through the worker's hub after each commit."""
    return Outbox(ctx.get("hub"), ctx.get("redis"))


async def wake_conversation(ctx: dict[str, Any], conversation_id: int) -> int:
    return await wake_due(outbox(ctx), conversation_id)


async def wake_snoozed(ctx: dict[str, Any]) -> int:
    woken = await wake_due(outbox(ctx))
    if woken:
        log.info("woke %d snoozed conversations", woken)
    return woken
