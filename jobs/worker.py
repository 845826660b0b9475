"""arq worker settings: `arq jobs.worker.WorkerSettings` (REDIS_URL and DATABASE_URL from
the environment)."""

from __future__ import annotations

from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from tortoise import Tortoise

from core import keys
from core.config import settings
from core.db import tortoise_config
from core.hub import Hub
from jobs.contacts import prune_contact_changes
from jobs.conversations import wake_conversation, wake_snoozed
from jobs.delivery import DELIVERY_TRIES, check_missed_chat, deliver_message, notify_new_message
from jobs.segments import refresh_all_segments, refresh_dirty_contacts, refresh_segment


async def startup(ctx: dict[str, Any]) -> None:
    await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
    # Publishing only (jobs never subscribe): events reach every API process's sockets.
    ctx["hub"] = Hub(settings.redis_url or "redis://127.0.0.1:6379/0")


async def shutdown(ctx: dict[str, Any]) -> None:
    await Tortoise.close_connections()
    if "hub" in ctx:
        await ctx["hub"].stop()


class WorkerSettings:
    # Debounced jobs keep no result: arq refuses a job id while its result is kept.
    functions = [
        prune_contact_changes,
        func(refresh_segment, keep_result=0),
        func(refresh_dirty_contacts, keep_result=0),
        refresh_all_segments,
        func(wake_conversation, keep_result=0),
        func(wake_snoozed, keep_result=0),
        func(deliver_message, max_tries=DELIVERY_TRIES),
        func(notify_new_message, max_tries=DELIVERY_TRIES),
        func(check_missed_chat, max_tries=DELIVERY_TRIES),
    ]
    cron_jobs = [
        cron(prune_contact_changes, hour={3}, minute={17}, run_at_startup=False),
        # Time-relative rules ("seen in the last 7 days") change membership with no write.
        cron(refresh_all_segments, minute=set(range(0, 60, 10)), run_at_startup=False),
        # Catches snoozed conversations whose deferred wake-up job was lost.
        cron(wake_snoozed, second={30}, run_at_startup=True),
    ]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(settings.redis_url or "redis://127.0.0.1:6379/0")
    queue_name = keys.arq_queue()
    # arq's defaults (0.5 s poll, hourly health check) are slow for short jobs and
    # liveness probes.
    poll_delay = 0.05
    health_check_interval = 30
    max_jobs = 20
    job_timeout = 600
    keep_result = 3600
