"""Outbound webhooks: endpoints (owners, admins and keys with webhooks:manage) and their
delivery log. The events the rest of the code emits are services/webhooks.py.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from core import outbound
from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.permissions import Permission, Principal
from core.queue import enqueue
from core.scoping import encode_global_id
from models.job_records import Job
from models.webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEventType
from resolvers.job_records import can_see_job
from resolvers.pagination import Order, Page, paginate
from services.webhooks import deliver_job_id, envelope, new_event_id, now

MAX_ENDPOINTS = 20
MAX_URL = 2048
MAX_DESCRIPTION = 200
# Types an endpoint may subscribe to (pings go to the endpoint they test only).
SUBSCRIBABLE = tuple(t for t in WebhookEventType if t is not WebhookEventType.PING)
NEWEST_FIRST = Order(("id",), descending=True)
BY_ID = Order(("id",), descending=False)


def new_secret() -> str:
    return f"whsec_{secrets.token_hex(24)}"


# -- endpoints -----------------------------------------------------------------------------


def _clean_url(value: str | None, errors: list[UserError]) -> str | None:
    url = (value or "").strip()
    parts = urlsplit(url)
    if not url or len(url) > MAX_URL:
        errors.append(UserError(["url"], Code.INVALID, "url must be an http(s) URL of at most 2048 characters."))
        return None
    problem = outbound.url_problem(url)
    if problem is not None:
        errors.append(UserError(["url"], Code.INVALID, f"url {problem}"))
        return None
    if parts.username or parts.password:
        errors.append(UserError(["url"], Code.INVALID, "url must not carry credentials: check the signature instead."))
        return None
    return url


def _clean_event_types(values: list[str] | None, errors: list[UserError]) -> list[str]:
    clean = sorted({WebhookEventType(v).value for v in values or []})
    if not clean:
        errors.append(UserError(["eventTypes"], Code.REQUIRED, "Choose at least one event type."))
    if WebhookEventType.PING.value in clean:
        errors.append(UserError(["eventTypes"], Code.INVALID, "webhook.ping is sent by pingWebhookEndpoint only."))
    return clean


def _clean_description(value: str | None, errors: list[UserError]) -> str | None:
    text = " ".join((value or "").split())
    if len(text) > MAX_DESCRIPTION:
        errors.append(
            UserError(["description"], Code.TOO_LONG, f"description has at most {MAX_DESCRIPTION} characters.")
        )
    return text or None


def payload_refusal(ctx: Context, event_type: str) -> str | None:
    """A payload carries what its event is about: every event but a ping names contacts
    (their details, or their ids), so it needs contacts:read as well; a conversation's
    event conversations:read too. Reading a delivery's payload and subscribing an endpoint
    to its type need the same."""
    if event_type == WebhookEventType.PING.value:
        return None
    refusal = ctx.lacks(Permission.CONTACTS_READ)
    if refusal is None and event_type.startswith("conversation."):
        refusal = ctx.lacks(Permission.CONVERSATIONS_READ)
    return refusal


def _check_subscription(ctx: Context, event_types: list[str], errors: list[UserError]) -> None:
    """Whoever points an endpoint at a URL receives its events' payloads there: creating an
    endpoint, changing its URL or its event types needs the scopes those payloads need (a
    key with webhooks:manage alone could otherwise read contacts through its own URL, or
    re-point an owner's endpoint to it)."""
    refused: dict[str, list[str]] = {}
    for event_type in event_types:
        refusal = payload_refusal(ctx, event_type)
        if refusal is not None:
            refused.setdefault(refusal, []).append(event_type)
    for refusal, types in refused.items():
        names = ", ".join(WebhookEventType(t).name for t in types)
        errors.append(
            UserError(["eventTypes"], Code.FORBIDDEN, f"Subscribing to {names}: {refusal[0].lower()}{refusal[1:]}")
        )


async def list_endpoints(ctx: Context, *, first: int | None, after: str | None) -> Page[WebhookEndpoint]:
    ctx.require(Permission.WEBHOOKS_MANAGE)
    return await paginate(ctx.scope.all(WebhookEndpoint), BY_ID, first=first, after=after)


async def _endpoint_for_write(ctx: Context, gid: str, field: str = "id") -> WebhookEndpoint:
    ctx.require(Permission.WEBHOOKS_MANAGE)
    endpoint = await ctx.scope.by_global_id(gid, "WebhookEndpoint", WebhookEndpoint)
    if endpoint is None:
        raise UserFailure.of(field, Code.NOT_FOUND, "No webhook endpoint with this id.")
    return endpoint


async def create_endpoint(
    ctx: Context, *, url: str, event_types: list[str], description: str | None, enabled: bool
) -> tuple[WebhookEndpoint, str]:
    ctx.require(Permission.WEBHOOKS_MANAGE)
    ws = ctx.scope.workspace_id
    errors: list[UserError] = []
    clean_url = _clean_url(url, errors)
    types = _clean_event_types(event_types, errors)
    _check_subscription(ctx, types, errors)
    text = _clean_description(description, errors)
    if await ctx.scope.all(WebhookEndpoint).count() >= MAX_ENDPOINTS:
        errors.append(UserError(None, Code.NOT_ALLOWED, f"A workspace has at most {MAX_ENDPOINTS} webhook endpoints."))
    if errors:
        raise UserFailure(*errors)
    secret = new_secret()
    endpoint = await WebhookEndpoint.create(
        workspace_id=ws, url=clean_url, event_types=types, description=text, enabled=enabled, secret=secret
    )
    return endpoint, secret


async def update_endpoint(ctx: Context, gid: str, values: dict[str, Any]) -> WebhookEndpoint:
    """Change url, description, eventTypes or enabled. Enabling again clears the failure
    count and the reason the endpoint was disabled."""
    endpoint = await _endpoint_for_write(ctx, gid)
    errors: list[UserError] = []
    if "url" in values:
        endpoint.url = _clean_url(values["url"], errors) or endpoint.url
    if "event_types" in values:
        endpoint.event_types = _clean_event_types(values["event_types"], errors)
    if "url" in values or "event_types" in values:
        _check_subscription(ctx, endpoint.event_types, errors)
    if "description" in values:
        endpoint.description = _clean_description(values["description"], errors)
    if "enabled" in values:
        if values["enabled"] is None:
            errors.append(UserError(["enabled"], Code.INVALID, "enabled cannot be null."))
        elif values["enabled"] and not endpoint.enabled:
            endpoint.enabled = True
            endpoint.consecutive_failures, endpoint.disabled_reason, endpoint.disabled_at = 0, None, None
        elif not values["enabled"] and endpoint.enabled:
            endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, "Disabled by a user.", now()
    if errors:
        raise UserFailure(*errors)
    await endpoint.save()
    return endpoint


async def rotate_secret(ctx: Context, gid: str) -> tuple[WebhookEndpoint, str]:
    endpoint = await _endpoint_for_write(ctx, gid)
    endpoint.secret = new_secret()
    await endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint, endpoint.secret


async def delete_endpoint(ctx: Context, gid: str) -> None:
    """Removes the endpoint and its delivery log; its queued deliveries are dropped."""
    endpoint = await _endpoint_for_write(ctx, gid)
    await endpoint.delete()


async def ping_endpoint(ctx: Context, gid: str) -> WebhookDelivery:
    """Queue a `webhook.ping` to this endpoint alone, enabled or not: a way to check a
    receiver (and its signature check) before turning the endpoint on."""
    endpoint = await _endpoint_for_write(ctx, gid)
    stamp = now()
    event_id = new_event_id()
    delivery = await WebhookDelivery.create(
        workspace_id=endpoint.workspace_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=WebhookEventType.PING.value,
        payload=envelope(
            event_id,
            WebhookEventType.PING,
            endpoint.workspace_id,
            stamp,
            {"endpointId": encode_global_id("WebhookEndpoint", endpoint.id)},
        ),
        status=DeliveryStatus.PENDING,
        next_attempt_at=stamp,
        created_at=stamp,
    )
    await enqueue(ctx.jobs, "deliver_webhook", delivery.id, job_id=deliver_job_id(delivery.id))
    return delivery


# -- the delivery log ----------------------------------------------------------------------


def can_manage_webhooks(principal: Principal, _: Any = None) -> bool:
    return principal.can(Permission.WEBHOOKS_MANAGE)


async def list_deliveries(
    ctx: Context, endpoint_id: int, *, status: DeliveryStatus | None, first: int | None, after: str | None
) -> Page[WebhookDelivery]:
    ctx.require(Permission.WEBHOOKS_MANAGE)
    query = ctx.scope.all(WebhookDelivery).filter(endpoint_id=endpoint_id)
    if status is not None:
        query = query.filter(status=status)
    return await paginate(query, NEWEST_FIRST, first=first, after=after)


async def load_attempts(ctx: Context, delivery_id: int) -> list[WebhookAttempt]:
    async def batch(ids: list[int]) -> list[list[WebhookAttempt]]:
        rows = await ctx.scope.all(WebhookAttempt).filter(delivery_id__in=ids).order_by("attempt", "id")
        by_delivery: dict[int, list[WebhookAttempt]] = {i: [] for i in ids}
        for row in rows:
            by_delivery[row.delivery_id].append(row)
        return [by_delivery[i] for i in ids]

    return await ctx.loader("webhook.attempts", batch).load(delivery_id)  # type: ignore[no-any-return]


async def load_job(ctx: Context, job_id: int | None) -> Job | None:
    if job_id is None:
        return None
    job = await ctx.scope.get(Job, job_id)
    return job if job is not None and can_see_job(ctx.require_principal(), job) else None


async def load_endpoint(ctx: Context, endpoint_id: int) -> WebhookEndpoint | None:
    async def batch(ids: list[int]) -> list[WebhookEndpoint | None]:
        found = await ctx.scope.get_many(WebhookEndpoint, ids)
        return [found.get(i) for i in ids]

    return await ctx.loader("webhook.endpoint", batch).load(endpoint_id)  # type: ignore[no-any-return]
