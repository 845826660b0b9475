"""Who is online, kept in Redis with expiry: agents (an open inbox subscription) and
contacts (an open `myMessages` subscription). Each live subscription holds a member of its
own, so one socket closing does not take a person offline while another is open.

    async with present(redis, workspace_id, "agent", agent_id):
        ...  # online while inside; refreshed every REFRESH seconds; gone within TTL if killed
    await online_ids(redis, workspace_id, "agent")   # {7, 12}
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from core import keys

TTL = 60.0
REFRESH = 20.0


@contextlib.asynccontextmanager
async def present(redis: Any, workspace_id: int, kind: str, member_id: int) -> AsyncIterator[None]:
    key = keys.presence(workspace_id, kind)
    member = f"{member_id}:{secrets.token_hex(6)}"

    async def keep_alive() -> None:
        while True:
            await redis.zadd(key, {member: time.time() + TTL})
            await redis.expire(key, int(TTL * 2))
            await asyncio.sleep(REFRESH)

    await redis.zadd(key, {member: time.time() + TTL})
    task = asyncio.create_task(keep_alive())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(Exception):
            await redis.zrem(key, member)


async def forget(redis: Any, workspace_id: int, kind: str, member_id: int) -> int:
    """Drop every presence entry of one person (a deleted contact); how many there were."""
    key = keys.presence(workspace_id, kind)
    members = [m async for m, _ in redis.zscan_iter(key, match=f"{member_id}:*")]
    return int(await redis.zrem(key, *members)) if members else 0


async def online_ids(redis: Any, workspace_id: int, kind: str) -> set[int]:
    key = keys.presence(workspace_id, kind)
    now = time.time()
    await redis.zremrangebyscore(key, "-inf", now)
    members = await redis.zrangebyscore(key, now, "+inf")
    return {int((m.decode() if isinstance(m, bytes) else m).split(":", 1)[0]) for m in members}


async def is_online(redis: Any, workspace_id: int, kind: str, member_id: int) -> bool:
    return member_id in await online_ids(redis, workspace_id, kind)
