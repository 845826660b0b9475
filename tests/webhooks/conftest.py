"""Webhook tests: endpoints registered through the API, deliveries run by the real job
code (in this process, or by a real arq worker), received by a real HTTP server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from arq import Retry

from tests.conftest import Tenant

CREATE_ENDPOINT = """mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) {
  endpoint { id url eventTypes enabled } secret userErrors { field code message }
} }"""


@dataclass
class Endpoint:
    id: str
    secret: str


async def register(tenant: Tenant, url: str, event_types: list[str], token: str | None = None) -> Endpoint:
    payload = (
        await tenant.api(
            CREATE_ENDPOINT, {"i": {"url": url, "eventTypes": event_types}}, token=token or tenant.owner_token
        )
    )["createWebhookEndpoint"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return Endpoint(payload["endpoint"]["id"], payload["secret"])


async def drain(workspace_id: int, timeout: float = 10) -> list[str]:
    """Run deliver_webhook for the workspace's due deliveries, as the worker would, until
    none is waiting (retries come due after their backoff)."""
    from jobs.webhooks import deliver_webhook
    from models.webhooks import DeliveryStatus, WebhookDelivery

    outcomes: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        pending = await WebhookDelivery.filter(workspace_id=workspace_id, status=DeliveryStatus.PENDING).order_by("id")
        if not pending:
            return outcomes
        due = [d for d in pending if d.next_attempt_at is None or d.next_attempt_at <= datetime.now(UTC)]
        for delivery in due:
            try:
                outcomes.append(await deliver_webhook({"hub": None}, delivery.id))
            except Retry:
                outcomes.append("retry")
        if time.monotonic() > deadline:
            raise TimeoutError(f"deliveries still pending after {timeout}s: {[d.id for d in pending]}")
        if not due:
            await asyncio.sleep(0.02)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> Any:
    from core.config import settings

    monkeypatch.setattr(settings, "webhook_retry_base_seconds", 0.05)
    return settings
