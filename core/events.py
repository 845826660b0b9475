"""Events leave the process only after the transaction that caused them commits.

async with atomic(ctx.outbox):
    contact.name = "Ada"
    await contact.save()
    ctx.outbox.add(keys.contact_channel(ws, contact.id), {...})
# published here, once, after COMMIT; nothing is published on rollback
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from tortoise.transactions import in_transaction

from core.hub import Hub

log = logging.getLogger("parley.events")


class Outbox:
    def __init__(self, hub: Hub | None, jobs: Any = None) -> None:
        self.hub = hub
        self.jobs = jobs  # the arq pool, for work to queue after the commit
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.callbacks: list[Callable[[], Awaitable[None]]] = []
        self.depth = 0

    def add(self, channel: str, payload: dict[str, Any]) -> None:
        self.pending.append((channel, payload))

    def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` once the transaction commits (e.g. enqueue a job)."""
        self.callbacks.append(callback)

    def checkpoint(self) -> tuple[int, int]:
        """Where the outbox stands, for `rollback_to` after a savepoint rolled back."""
        return len(self.pending), len(self.callbacks)

    def rollback_to(self, checkpoint: tuple[int, int]) -> None:
        """Forget what was added since `checkpoint`: its writes were rolled back."""
        del self.pending[checkpoint[0] :]
        del self.callbacks[checkpoint[1] :]

    def discard(self) -> None:
        self.pending.clear()
        self.callbacks.clear()

    async def flush(self) -> None:
        events, self.pending = self.pending, []
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                log.exception("after-commit callback failed")
        if not events or self.hub is None:
            return
        try:
            await self.hub.publish(events)
        except Exception:
            # The change is committed; a lost notification is caught up by cursor.
            log.exception("could not publish %d events", len(events))


@contextlib.asynccontextmanager
async def atomic(outbox: Outbox) -> AsyncIterator[None]:
    outbox.depth += 1
    try:
        async with in_transaction():
            yield
    except BaseException:
        if outbox.depth == 1:
            outbox.discard()
        raise
    finally:
        outbox.depth -= 1
    if outbox.depth == 0:
        await outbox.flush()
