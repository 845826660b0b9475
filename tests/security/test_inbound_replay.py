"""A signed inbound delivery without a provider message id cannot be replayed: inside its
signature's window the same signed body answers as a retried `messageId` does (200,
`duplicate: true`, the first message's ids) and stores nothing more."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from core.config import settings
from core.signing import SIGNATURE_HEADER, SIGNATURE_TOLERANCE, signature
from models.channels import Channel, ChannelKind
from models.conversations import Direction, Message
from resolvers.channels import create_channel
from tests.conftest import Tenant

PHONE = "+14155550100"


async def sms_channel(tenant: Tenant) -> Channel:
    return await create_channel(tenant.workspace.id, ChannelKind.SMS, "Texts")


def signed(channel: Channel, payload: dict[str, Any], at: float | None = None) -> tuple[bytes, str]:
    body = json.dumps(payload).encode()
    return body, signature(channel.secret, body, int(time.time() if at is None else at))


async def post(client: httpx.AsyncClient, channel: Channel, body: bytes, header: str) -> dict[str, Any]:
    response = await client.post(
        f"/hooks/channels/{channel.public_key}/inbound",
        content=body,
        headers={"content-type": "application/json", SIGNATURE_HEADER: header},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def inbound_texts(channel: Channel) -> list[str]:
    rows = Message.filter(conversation__channel_id=channel.id, direction=Direction.INBOUND).order_by("id")
    return [m.body for m in await rows]


async def test_a_replayed_delivery_answers_as_a_duplicate_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await sms_channel(tenant)
    body, header = signed(channel, {"from": PHONE, "text": "Refund me"})
    first = await post(client, channel, body, header)
    assert first["duplicate"] is False
    for replay in (header, header.replace(",v1=", ",v1=00,v1="), f"{header},v1={'0' * 64}"):
        again = await post(client, channel, body, replay)
        assert again == {**first, "duplicate": True}, replay
    assert await inbound_texts(channel) == ["Refund me"]


async def test_concurrent_replays_store_one_message(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await sms_channel(tenant)
    body, header = signed(channel, {"from": PHONE, "text": "Once"})
    answers = await asyncio.gather(*(post(client, channel, body, header) for _ in range(5)))
    assert sorted(a["duplicate"] for a in answers) == [False, True, True, True, True]
    assert len({a["messageId"] for a in answers}) == 1
    assert await inbound_texts(channel) == ["Once"]


async def test_the_same_text_signed_again_later_is_a_new_message(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await sms_channel(tenant)
    now = time.time()
    for at in (now - 5, now):
        assert (await post(client, channel, *signed(channel, {"from": PHONE, "text": "yes"}, at)))["duplicate"] is False
    assert await inbound_texts(channel) == ["yes", "yes"]


async def test_the_guard_lives_under_the_app_prefix_for_the_signature_window(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await sms_channel(tenant)
    redis = app.state.hub.redis
    pattern = f"{settings.redis_prefix}:channel:{channel.id}:*"
    assert [k async for k in redis.scan_iter(match=pattern)] == []
    await post(client, channel, *signed(channel, {"from": PHONE, "text": "old"}, time.time() - 200))
    [key] = [
        k async for k in redis.scan_iter(match=f"{settings.redis_prefix}:channel:{channel.id}:inbound-signature:*")
    ]
    assert 0 < await redis.ttl(key) <= SIGNATURE_TOLERANCE - 200 + 2


async def test_deliveries_with_a_message_id_keep_their_own_dedupe(client: httpx.AsyncClient, tenant: Tenant) -> None:
    channel = await sms_channel(tenant)
    first = await post(
        client, channel, *signed(channel, {"from": PHONE, "text": "Hi", "messageId": "SM1"}, time.time() - 10)
    )
    # A provider's retry is signed anew: still the same message.
    again = await post(client, channel, *signed(channel, {"from": PHONE, "text": "Hi", "messageId": "SM1"}))
    assert again == {**first, "duplicate": True}
    assert await inbound_texts(channel) == ["Hi"]
