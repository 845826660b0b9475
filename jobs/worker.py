"""arq worker settings: `arq jobs.worker.WorkerSettings` (REDIS_URL and DATABASE_URL from
the environment)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry, cron, func
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Function
from tortoise import Tortoise

from core import keys
from core.config import settings
from core.db import tortoise_config
from core.errors import DatabaseBusy
from core.hub import Hub
from core.logs import setup_logging, start_log_fields
from core.metrics import observe_job, serve
from core.tracing import SpanKind, setup_tracing, shutdown_tracing, span
from jobs.attachments import prune_uploads
from jobs.bulk import resume_bulk_actions, run_bulk_action
from jobs.campaigns import CAMPAIGN_TIMEOUT, resume_campaigns, send_campaign
from jobs.conversations import wake_conversation, wake_snoozed
from jobs.crm import crm_lookup
from jobs.exports import EXPORT_TIMEOUT, export_contact_data, export_contacts, prune_exports
from jobs.inbox import notify_mentions, prune_inbox_events
from jobs.push import ARQ_TRIES as PUSH_TRIES
from jobs.push import deliver_push, prune_push_attempts, push_conversation
from jobs.routing import reassign_offline
from jobs.segments import refresh_all_segments, refresh_dirty_contacts, refresh_segment
from jobs.sending import DELIVERY_TRIES, check_missed_chat, deliver_message, notify_new_message
from jobs.sync import prune_contact_changes, prune_sync_requests
from jobs.webhooks import ARQ_TRIES, deliver_webhook, dispatch_webhooks, prune_webhook_deliveries

log = logging.getLogger("parley.jobs")

Task = Callable[..., Awaitable[Any]]


def retry_when_busy(task: Task) -> Task:
    """A job that found the embedded database locked too long wrote nothing: run it again
    a little later (arq's Retry, within the function's max_tries) rather than fail it.
    Each run is counted and timed by function and outcome (core/metrics.py), and its log
    lines name it (core/logs.py)."""

    @functools.wraps(task)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # Each job runs in a task of its own: the fields are its alone.
        start_log_fields().update(job=task.__name__, job_id=ctx.get("job_id"))
        started, outcome = time.perf_counter(), "failed"
        attributes = {
            "parley.job.function": task.__name__,
            "parley.job.id": str(ctx.get("job_id")),
            "parley.job.try": ctx.get("job_try", 1),
        }
        with span(f"job {task.__name__}", kind=SpanKind.CONSUMER, **attributes) as traced:
            try:
                result = await task(ctx, *args, **kwargs)
                outcome = "ok"
                return result
            except DatabaseBusy as exc:
                outcome = "retried"
                defer = min(2 * ctx.get("job_try", 1), 30)
                log.warning("%s: %s; retrying in %d s", task.__name__, exc, defer)
                raise Retry(defer=defer) from exc
            except Retry:
                outcome = "retried"
                raise
            finally:
                observe_job(task.__name__, outcome, time.perf_counter() - started)
                if traced is not None:
                    traced.set_attribute("parley.outcome", outcome)

    return run


def _retrying_when_busy(jobs: list[Any]) -> list[Any]:
    """Each job wrapped by retry_when_busy. Cron jobs get tries for it too: arq gives them
    one, and a retry past a job's tries is a failure ("max retries exceeded")."""
    wrapped = []
    for job in jobs:
        if isinstance(job, CronJob):
            wrapped.append(
                dataclasses.replace(job, coroutine=retry_when_busy(job.coroutine), max_tries=max(job.max_tries or 1, 5))
            )
        elif isinstance(job, Function):
            wrapped.append(dataclasses.replace(job, coroutine=retry_when_busy(job.coroutine)))
        else:
            wrapped.append(func(retry_when_busy(job)))
    return wrapped


async def startup(ctx: dict[str, Any]) -> None:
    # arq configured its own logger after importing these settings: hand it to ours.
    setup_logging()
    setup_tracing()
    if settings.worker_metrics_port:
        serve(settings.worker_metrics_port)
    # Jobs run longer statements than requests (WORKER_STATEMENT_TIMEOUT_SECONDS).
    config = tortoise_config(statement_timeout=settings.worker_statement_timeout_seconds)
    await Tortoise.init(config=config, _enable_global_fallback=True)
    # Publishing only (jobs never subscribe): events reach every API process's sockets.
    ctx["hub"] = Hub(settings.redis_url or "redis://127.0.0.1:6379/0")


async def shutdown(ctx: dict[str, Any]) -> None:
    shutdown_tracing()
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
        func(export_contacts, timeout=EXPORT_TIMEOUT, max_tries=3),
        func(export_contact_data, timeout=EXPORT_TIMEOUT, max_tries=3),
        prune_exports,
        # Attempts are counted in the database; arq's tries only bound a deferred job.
        func(deliver_webhook, max_tries=ARQ_TRIES, keep_result=0),
        func(dispatch_webhooks, keep_result=0),
        prune_webhook_deliveries,
        prune_sync_requests,
        # Runs are idempotent and keyed; a lost or dead one is queued again by the sweep.
        func(send_campaign, timeout=CAMPAIGN_TIMEOUT, max_tries=3),
        func(resume_campaigns, keep_result=0),
        # Keyed per conversation and deferred (the grace period, quiet hours): no result
        # kept, or the next reply's job would be refused for an hour.
        func(push_conversation, max_tries=PUSH_TRIES, keep_result=0),
        func(deliver_push, max_tries=PUSH_TRIES, keep_result=0),
        prune_push_attempts,
        func(reassign_offline, keep_result=0),
        # Batches commit with their high-water mark: a re-run goes on from the last one.
        func(run_bulk_action, timeout=24 * 3600, max_tries=3),
        func(resume_bulk_actions, keep_result=0),
        # Its tries are counted by arq (job_try); a lookup is once per conversation.
        func(crm_lookup, max_tries=settings.crm_lookup_tries),
        func(notify_mentions, max_tries=DELIVERY_TRIES),
        prune_inbox_events,
        prune_uploads,
    ]
    cron_jobs = [
        cron(prune_contact_changes, hour={3}, minute={17}, run_at_startup=False),
        # Time-relative rules ("seen in the last 7 days") change membership with no write.
        cron(refresh_all_segments, minute=set(range(0, 60, 10)), run_at_startup=False),
        # Catches snoozed conversations whose deferred wake-up job was lost.
        cron(wake_snoozed, second={30}, run_at_startup=True),
        cron(prune_exports, minute={41}, run_at_startup=False),
        # Queues webhook deliveries with no job: segment events, bulk syncs, lost jobs.
        cron(dispatch_webhooks, second=set(range(0, 60, 10)), run_at_startup=True),
        cron(prune_webhook_deliveries, hour={3}, minute={27}, run_at_startup=False),
        cron(prune_sync_requests, hour={3}, minute={37}, run_at_startup=False),
        # Scheduled campaigns due, recipients whose quiet hours ended, runs whose worker died.
        cron(resume_campaigns, second=set(range(5, 60, 10)), run_at_startup=True),
        cron(prune_push_attempts, hour={3}, minute={47}, run_at_startup=False),
        # Conversations of agents offline past the routing timeout, and waiting ones.
        cron(reassign_offline, second={45}, run_at_startup=False),
        # Bulk actions whose worker died (no batch for BULK_STALE_SECONDS).
        cron(resume_bulk_actions, second=set(range(3, 60, 10)), run_at_startup=True),
        cron(prune_inbox_events, hour={3}, minute={57}, run_at_startup=False),
        # Direct uploads no message took within a day: rows and files.
        cron(prune_uploads, minute={7}, run_at_startup=False),
    ]
    functions = _retrying_when_busy(functions)
    cron_jobs = _retrying_when_busy(cron_jobs)
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(settings.redis_url or "redis://127.0.0.1:6379/0")
    queue_name = keys.arq_queue()
    # arq's defaults (0.5 s poll, hourly health check) are slow for short jobs and
    # liveness probes. arq takes at most queue_read_limit (100) jobs a poll, so a 0.5 s poll
    # caps a worker near 200 jobs/s. With a 0.01 s poll one worker ran 610–820 no-op jobs/s
    # on this kind of machine (`python -m bench.jobs`; then the worker's own CPU, ~1.2 ms a
    # job in arq and redis-py, is the limit) and started a job ~10 ms after its enqueue
    # (p50; ~300 ms at 0.5 s), for ~100 Redis commands/s and ~7% of a core when idle. The
    # health-check key (`arq --check` reads it) is rewritten every 10 s with an 11 s TTL: a
    # liveness probe fails within 11 s of the worker hanging (an hour with arq's default).
    poll_delay = 0.01
    health_check_interval = 10
    max_jobs = 20
    job_timeout = 600
    keep_result = 3600
