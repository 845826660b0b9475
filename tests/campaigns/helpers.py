"""What the campaign tests share: creating campaigns through the API, reading them back,
and running the real job in this process at a chosen time."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from jobs.campaigns import run_campaign
from models.channels import Channel
from models.contacts import Contact
from tests.conftest import Tenant, pk

CREATE = """mutation($i: CreateCampaignInput!) { createCampaign(input: $i) {
  campaign { id status scheduledAt job { id status } } userErrors { field code message } } }"""
CANCEL = (
    "mutation($i: CancelCampaignInput!) { cancelCampaign(input: $i) { "
    "campaign { id status } userErrors { field code message } } }"
)
CAMPAIGN = """query($id: ID!) { campaign(id: $id) {
  id name status body subject scheduledAt startedAt finishedAt
  stats { recipients sent skipped failed waiting replied } skipReasons { reason count }
  job { id status processed total } channel { id } segment { id } createdBy { id } } }"""


def gid(type_name: str, key: int) -> str:
    from core.scoping import encode_global_id

    return encode_global_id(type_name, key)


async def channel(tenant: Tenant, kind: str) -> Channel:
    return await Channel.create(
        workspace_id=tenant.workspace.id,
        kind=kind,
        name=f"{kind} channel",
        public_key=secrets.token_hex(12),
        secret=secrets.token_hex(16),
    )


def daytime_zone() -> str:
    """A time zone where it is about noon now: e-mail, SMS and messenger campaigns wait out
    the contact's quiet hours (08:00–20:00 there), which a test run at night would hit."""
    offset = 12 - datetime.now(UTC).hour  # -11 … +12, all real zones; Etc/GMT signs are inverted
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


async def contact(tenant: Tenant, **fields: Any) -> Contact:
    now = datetime.now(UTC)
    return await Contact.create(workspace_id=tenant.workspace.id, last_seen_at=now, first_seen_at=now, **fields)


async def create(tenant: Tenant, token: str | None = None, **input: Any) -> dict[str, Any]:
    payload = (await tenant.api(CREATE, {"i": input}, token=token or tenant.owner_token))["createCampaign"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload["campaign"]  # type: ignore[no-any-return]


async def errors_of(tenant: Tenant, token: str | None = None, **input: Any) -> list[tuple[list[str], str]]:
    payload = (await tenant.api(CREATE, {"i": input}, token=token or tenant.owner_token))["createCampaign"]
    assert payload["campaign"] is None
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def read(tenant: Tenant, campaign_gid: str) -> dict[str, Any]:
    return (await tenant.api(CAMPAIGN, {"id": campaign_gid}, token=tenant.owner_token))["campaign"]  # type: ignore[no-any-return]


async def run(app: Any, campaign_gid: str, at: datetime | None = None, **options: Any) -> dict[str, Any] | None:
    """The worker's run of the campaign, here, with the clock stopped at `at`."""
    clock = (lambda: at) if at is not None else (lambda: datetime.now(UTC))
    return await run_campaign(pk(campaign_gid), app.state.hub, None, clock=clock, **options)
