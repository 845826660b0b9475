"""Delivering outbound webhooks (arq jobs).

- `deliver_webhook(delivery_id)`: one POST of a delivery to its endpoint, signed
  (core/signing.py), and a row in the delivery log for it (status code, error, duration).
  A 2xx answer succeeds. Anything else retries with exponential backoff
  (settings.webhook_retry_base_seconds, doubling, at most an hour; a longer Retry-After
  is honoured) until settings.webhook_max_attempts, then the delivery FAILED. Each
  failed attempt counts against the endpoint: after settings.webhook_disable_after in a
  row (or a 410 Gone) it is disabled and its waiting deliveries are CANCELLED; a success
  resets the count. Every delivery has a job record (kind webhook_delivery).
- `dispatch_webhooks()`: queues the jobs of due deliveries that have none (a bulk sync's
  deliveries, segment events, jobs lost with Redis); every minute, and on demand.

At least once: the attempt is claimed with a conditional UPDATE, so two runs of one job do
not both post, but a worker that dies mid-POST posts again on retry. Receivers deduplicate
by the event id (body `id`, header X-Parley-Event-Id).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Subquery

from core import outbound
from core.clock import now
from core.config import settings
from core.outbound import OutboundError
from core.queue import enqueue
from core.signing import signed_headers
from models.job_records import Job, JobKind, JobStatus
from models.webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEventType
from services.job_records import JobCancelled, JobTracker, cancel_job, create_job
from services.webhooks import deliver_job_id

log = logging.getLogger("parley.jobs.webhooks")

MAX_BACKOFF = 3600.0
MAX_RESPONSE_READ = 1024
USER_AGENT = "Parley-Webhooks/1"
DISPATCH_CHUNK = 500
# arq's own retry count: the database decides when a delivery stops, this only bounds a
# job that keeps being deferred.
ARQ_TRIES = 1000


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the attempt after `attempt` (1-based): WEBHOOK_RETRY_BASE_SECONDS
    doubling, at most an hour (core/outbound.py's retry_delay)."""
    return outbound.retry_delay(settings.webhook_retry_base_seconds, attempt, retry_after, MAX_BACKOFF)


class Outcome:
    def __init__(
        self, status_code: int | None, error: str | None, duration_ms: int, retry_after: float | None = None
    ) -> None:
        self.status_code, self.error, self.duration_ms, self.retry_after = status_code, error, duration_ms, retry_after

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _post(endpoint: WebhookEndpoint, delivery: WebhookDelivery, attempt: int) -> Outcome:
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    headers = {
        **signed_headers(endpoint.secret, body),
        "user-agent": USER_AGENT,
        "x-parley-event-id": delivery.event_id,
        "x-parley-event-type": delivery.event_type,
        "x-parley-delivery-id": str(delivery.id),
        "x-parley-attempt": str(attempt),
    }
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        response = await outbound.post(
            endpoint.url,
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            max_bytes=MAX_RESPONSE_READ,
        )
    except OutboundError as exc:
        return Outcome(None, exc.reason, elapsed())
    if response.ok:
        return Outcome(response.status, None, elapsed())
    # The status only: the receiver's body is not ours to show (it may be an internal
    # service's answer).
    return Outcome(response.status, response.summary, elapsed(), response.retry_after)


async def _tracker(ctx: dict[str, Any], delivery: WebhookDelivery) -> JobTracker | None:
    """The delivery's job record, made at its first attempt, marked running."""
    job_id = delivery.job_id
    if job_id is None:
        job = await create_job(
            delivery.workspace_id,
            JobKind.WEBHOOK_DELIVERY,
            params={
                "deliveryId": delivery.id,
                "endpointId": delivery.endpoint_id,
                "eventType": delivery.event_type,
                "eventId": delivery.event_id,
            },
        )
        if not await WebhookDelivery.filter(id=delivery.id, job_id=None).update(job_id=job.id):
            await job.delete()  # another run made one first
            job_id = (await WebhookDelivery.get(id=delivery.id)).job_id
        else:
            job_id = job.id
    assert job_id is not None
    return await JobTracker.begin(job_id, ctx.get("hub"), total=1)


async def _finish_job(tracker: JobTracker | None, action: str, value: Any = None) -> None:
    if tracker is None:
        return
    with contextlib.suppress(JobCancelled):
        await getattr(tracker, action)(value)


async def deliver_webhook(ctx: dict[str, Any], delivery_id: int) -> str:
    """One attempt at a delivery; raises arq's Retry to come back after the backoff."""
    delivery = await WebhookDelivery.get_or_none(id=delivery_id)
    if delivery is None or delivery.status is not DeliveryStatus.PENDING:
        return "not pending"
    stamp = now()
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > stamp + timedelta(seconds=1):
        # Queued early (a sweep raced a deferred retry, or an attempt in flight): come back.
        raise Retry(defer=delivery.next_attempt_at - stamp)
    attempt = delivery.attempts + 1
    # Claim the attempt; the lease keeps the sweep away while the POST is in flight.
    lease = stamp + timedelta(seconds=settings.webhook_timeout_seconds + 60)
    claimed = await WebhookDelivery.filter(
        id=delivery.id, status=DeliveryStatus.PENDING, attempts=delivery.attempts
    ).update(attempts=attempt, next_attempt_at=lease)
    if not claimed:
        return "claimed elsewhere"
    endpoint = await WebhookEndpoint.get_or_none(id=delivery.endpoint_id)
    if endpoint is None:
        return "endpoint deleted"
    if not endpoint.enabled and delivery.event_type != WebhookEventType.PING.value:
        await _cancel(delivery, "The endpoint is disabled.", ctx)
        return "cancelled"
    tracker = await _tracker(ctx, delivery)

    outcome = await _post(endpoint, delivery, attempt)
    done = now()
    try:
        await WebhookAttempt.create(
            workspace_id=delivery.workspace_id,
            delivery_id=delivery.id,
            attempt=attempt,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            at=done,
        )
    except IntegrityError:
        # deleteContact erased the delivery while it was in flight: nothing left to record.
        await _finish_job(tracker, "succeed", {"statusCode": outcome.status_code, "attempts": attempt, "erased": True})
        return "erased"
    if outcome.ok:
        await WebhookDelivery.filter(id=delivery.id).update(
            status=DeliveryStatus.SUCCEEDED,
            completed_at=done,
            next_attempt_at=None,
            last_status_code=outcome.status_code,
            last_error=None,
        )
        await WebhookEndpoint.filter(id=endpoint.id).update(consecutive_failures=0, last_success_at=done)
        await _finish_job(tracker, "succeed", {"statusCode": outcome.status_code, "attempts": attempt})
        return "succeeded"

    disabled = await _count_failure(endpoint, outcome, done)
    if disabled or attempt >= settings.webhook_max_attempts:
        await WebhookDelivery.filter(id=delivery.id).update(
            status=DeliveryStatus.FAILED,
            completed_at=done,
            next_attempt_at=None,
            last_status_code=outcome.status_code,
            last_error=outcome.error,
        )
        await _finish_job(tracker, "fail", f"Attempt {attempt}: {outcome.error}")
        if disabled:
            await _cancel_waiting(endpoint.id, ctx)
        return "failed"
    delay = backoff(attempt, outcome.retry_after)
    await WebhookDelivery.filter(id=delivery.id).update(
        next_attempt_at=done + timedelta(seconds=delay), last_status_code=outcome.status_code, last_error=outcome.error
    )
    await _finish_job(tracker, "retry_later", f"Attempt {attempt}: {outcome.error}")
    raise Retry(defer=timedelta(seconds=delay))


async def _count_failure(endpoint: WebhookEndpoint, outcome: Outcome, at: datetime) -> bool:
    """One more failure in a row; True when this one disabled the endpoint."""
    await WebhookEndpoint.filter(id=endpoint.id).update(
        consecutive_failures=F("consecutive_failures") + 1, last_failure_at=at
    )
    failures = await WebhookEndpoint.filter(id=endpoint.id).first().values_list("consecutive_failures", flat=True)
    if outcome.status_code == 410:
        reason = "The receiver answered 410 Gone."
    elif failures is not None and failures >= settings.webhook_disable_after:
        reason = f"{failures} failed attempts in a row; the last: {outcome.error}"[:300]
    else:
        return False
    disabled = await WebhookEndpoint.filter(id=endpoint.id, enabled=True).update(
        enabled=False, disabled_reason=reason, disabled_at=at
    )
    if disabled:
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)
    return bool(disabled)


async def _cancel(delivery: WebhookDelivery, reason: str, ctx: dict[str, Any]) -> None:
    await WebhookDelivery.filter(id=delivery.id, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.CANCELLED, completed_at=now(), next_attempt_at=None, last_error=reason
    )
    if delivery.job_id is not None:
        job = await Job.get_or_none(id=delivery.job_id)
        if job is not None:
            await cancel_job(job, ctx.get("hub"))


async def _cancel_waiting(endpoint_id: int, ctx: dict[str, Any]) -> None:
    """A disabled endpoint's waiting deliveries are cancelled, and their job records."""
    stamp = now()
    await (
        WebhookDelivery.filter(endpoint_id=endpoint_id, status=DeliveryStatus.PENDING)
        .exclude(event_type=WebhookEventType.PING.value)
        .update(
            status=DeliveryStatus.CANCELLED,
            completed_at=stamp,
            next_attempt_at=None,
            last_error="The endpoint was disabled.",
        )
    )
    after = 0
    while True:
        jobs = (
            await Job.filter(
                kind=JobKind.WEBHOOK_DELIVERY,
                status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
                id__gt=after,
                id__in=Subquery(
                    WebhookDelivery.filter(endpoint_id=endpoint_id, status=DeliveryStatus.CANCELLED).values("job_id")
                ),
            )
            .order_by("id")
            .limit(DISPATCH_CHUNK)
        )
        if not jobs:
            return
        for job in jobs:
            await cancel_job(job, ctx.get("hub"))
        after = jobs[-1].id


async def dispatch_webhooks(ctx: dict[str, Any]) -> int:
    """Queue a job for every due PENDING delivery; arq refuses the ones already queued."""
    stamp = now()
    queued, after = 0, 0
    while True:
        ids = (
            await WebhookDelivery.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=stamp, id__gt=after)
            .order_by("id")
            .limit(DISPATCH_CHUNK)
            .values_list("id", flat=True)
        )
        if not ids:
            return queued
        for delivery_id in ids:
            queued += await enqueue(ctx["redis"], "deliver_webhook", delivery_id, job_id=deliver_job_id(delivery_id))
        after = ids[-1]


# Finished deliveries (and their attempts) are kept this long in the delivery log.
DELIVERY_RETENTION = timedelta(days=30)


async def prune_webhook_deliveries(ctx: dict[str, Any]) -> int:
    """Delete deliveries finished more than DELIVERY_RETENTION ago, in batches."""
    cutoff = now() - DELIVERY_RETENTION
    deleted = 0
    while True:
        ids = (
            await WebhookDelivery.filter(
                status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED],
                completed_at__lt=cutoff,
            )
            .limit(DISPATCH_CHUNK)
            .values_list("id", flat=True)
        )
        if not ids:
            log.info("pruned %d webhook deliveries finished before %s", deleted, cutoff.isoformat())
            return deleted
        await WebhookAttempt.filter(delivery_id__in=ids).delete()
        deleted += await WebhookDelivery.filter(id__in=ids).delete()
