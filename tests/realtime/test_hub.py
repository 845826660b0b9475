"""The hub, in-process, against this test run's real Redis: reference-counted channels,
slow subscribers dropped, and the outbox publishing only what was committed."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.config import settings
from core.events import Outbox, atomic
from core.hub import Hub, SubscriberTooSlow

TIMEOUT = 10  # turns a hang into a failure; never a measurement


def new_channel() -> str:
    return f"{settings.redis_prefix}:test:{uuid.uuid4().hex}"


@pytest.fixture
async def probe() -> AsyncIterator[aioredis.Redis]:
    """A separate Redis connection, to see what the hub asked Redis for."""
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    yield client
    await client.aclose()


async def numsub(probe: aioredis.Redis, channel: str) -> int:
    [(_, count)] = await probe.pubsub_numsub(channel)
    return int(count)


async def until_numsub(probe: aioredis.Redis, channel: str, expected: int) -> None:
    async def wait() -> None:
        while await numsub(probe, channel) != expected:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), TIMEOUT)


async def start_hub(**kwargs: Any) -> Hub:
    hub = Hub(os.environ["REDIS_URL"], **kwargs)
    await hub.start()
    await asyncio.wait_for(hub.connected.wait(), TIMEOUT)
    return hub


async def receive(events: Any) -> dict[str, Any]:
    return await asyncio.wait_for(anext(events), TIMEOUT)  # type: ignore[no-any-return]


async def test_local_subscribers_share_one_reference_counted_redis_subscription(probe: aioredis.Redis) -> None:
    hub = await start_hub()
    channel, barrier = new_channel(), new_channel()
    try:
        async with hub.subscribe(channel) as first:
            async with hub.subscribe(channel) as second:
                await until_numsub(probe, channel, 1)
                assert hub.subscriber_count(channel) == 2

                await hub.publish([(channel, {"n": 1}), (channel, {"n": 2})])
                assert [await receive(first), await receive(first)] == [{"n": 1}, {"n": 2}]
                assert [await receive(second), await receive(second)] == [{"n": 1}, {"n": 2}]

            # One of two left: the channel must stay subscribed for the other. Let any
            # UNSUBSCRIBE the hub scheduled go out first, then push a SUBSCRIBE through the
            # same connection behind it: once Redis has that, it has seen the UNSUBSCRIBE.
            await asyncio.sleep(0)
            async with hub.subscribe(barrier):
                await until_numsub(probe, barrier, 1)
                assert await numsub(probe, channel) == 1
            assert hub.subscriber_count(channel) == 1

            await hub.publish([(channel, {"n": 3})])
            assert await receive(first) == {"n": 3}

        # The last one left: the hub unsubscribes.
        assert hub.subscriber_count() == 0
        await until_numsub(probe, channel, 0)
        assert hub.channels == []
    finally:
        await hub.stop()


async def test_a_subscriber_that_falls_behind_is_dropped(probe: aioredis.Redis) -> None:
    hub = await start_hub(queue_size=2)
    channel = new_channel()
    try:
        async with hub.subscribe(channel) as slow:
            await until_numsub(probe, channel, 1)
            await hub.publish((channel, {"n": n}) for n in range(10))

            async def dropped() -> None:
                while hub.dropped_subscribers == 0:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(dropped(), TIMEOUT)
            with pytest.raises(SubscriberTooSlow):
                await receive(slow)
            assert hub.subscriber_count() == 0
            assert hub.dropped_subscribers == 1
            # Its channel had no one else: Redis is told, memory is freed.
            await until_numsub(probe, channel, 0)
            assert hub.channels == []
    finally:
        await hub.stop()


async def test_a_fast_subscriber_keeps_receiving_when_a_slow_one_is_dropped(probe: aioredis.Redis) -> None:
    hub = await start_hub(queue_size=2)
    channel = new_channel()
    try:
        async with hub.subscribe(channel) as slow, hub.subscribe(channel) as fast:
            await until_numsub(probe, channel, 1)
            # One event at a time: the fast subscriber reads each before the next is
            # published (a burst larger than the queue would overflow it too); the slow
            # one never reads and overflows on the third.
            for n in range(10):
                await hub.publish([(channel, {"n": n})])
                assert await receive(fast) == {"n": n}
            assert hub.dropped_subscribers == 1
            assert hub.subscriber_count(channel) == 1
            with pytest.raises(SubscriberTooSlow):
                await receive(slow)

            await hub.publish([(channel, {"n": 10})])
            assert await receive(fast) == {"n": 10}
            assert await numsub(probe, channel) == 1
        assert hub.subscriber_count() == 0
    finally:
        await hub.stop()


async def test_outbox_publishes_once_after_commit_and_never_on_rollback(app: Any, probe: aioredis.Redis) -> None:
    # `app` registers Tortoise: atomic() opens a real database transaction.
    hub = await start_hub()
    channel = new_channel()
    outbox = Outbox(hub)
    try:
        async with hub.subscribe(channel) as events:
            await until_numsub(probe, channel, 1)

            with pytest.raises(RuntimeError):
                async with atomic(outbox):
                    outbox.add(channel, {"n": "rolled back"})
                    raise RuntimeError("boom")
            assert outbox.pending == []

            async with atomic(outbox):
                outbox.add(channel, {"n": "committed"})
                # Published directly while the block is still open: it must come first.
                await hub.publish([(channel, {"n": "inside"})])
            # The same outbox again (a WebSocket's context keeps one): only the new event.
            async with atomic(outbox):
                outbox.add(channel, {"n": "second"})
            await hub.publish([(channel, {"n": "after"})])

            received = [await receive(events) for _ in range(4)]
            assert received == [{"n": "inside"}, {"n": "committed"}, {"n": "second"}, {"n": "after"}]
    finally:
        await hub.stop()


async def test_a_watcher_hears_every_event_and_is_no_subscriber(probe: aioredis.Redis) -> None:
    hub = await start_hub()
    channel = new_channel()
    heard: list[dict[str, Any]] = []
    try:
        await hub.watch(channel, heard.append)
        await until_numsub(probe, channel, 1)
        assert hub.subscriber_count() == 0
        # A subscriber of the same channel comes and goes: the watcher keeps it subscribed.
        async with hub.subscribe(channel) as events:
            await hub.publish([(channel, {"n": 1})])
            assert await receive(events) == {"n": 1}
        await hub.publish([(channel, {"n": 2})])

        async def both() -> None:
            while len(heard) < 2:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(both(), TIMEOUT)
        assert heard == [{"n": 1}, {"n": 2}]
        assert await numsub(probe, channel) == 1
    finally:
        await hub.stop()
