"""Principals by credential, for a few seconds, in each process: authentication then
costs no query on most requests, and every change to who a credential is or what it may
do reaches every process at once.

    await principal_cache.listen(hub)                 # in the lifespan, once the hub runs
    await principal_cache.get(credential, load)       # load() when not cached
    auth_changed(ctx.outbox)                          # in the transaction of such a change
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from core import keys
from core.events import Outbox
from core.hub import Hub
from core.permissions import Principal


class PrincipalCache:
    """An entry is kept only while this process listens to `auth_changes` (and Redis has
    not dropped it since the entry was filled), so a revoked key, a changed role or a
    deleted contact reach every process at once (`auth_changed`); the TTL bounds what a
    lost message could leave behind. Failed checks are not kept."""

    TTL_SECONDS = 5.0
    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        # credential -> (principal, monotonic deadline, hub reconnects when filled)
        self.entries: dict[str, tuple[Principal, float, int]] = {}
        self.generation = 0
        self.listening: Hub | None = None
        # Told of every invalidation (runtime/socket_guard.py re-checks open sockets).
        self.watchers: list[Callable[[], None]] = []

    def invalidate(self, _event: object = None) -> None:
        self.entries.clear()
        self.generation += 1
        for watcher in self.watchers:
            watcher()

    async def listen(self, hub: Hub) -> None:
        self.invalidate()
        self.listening = hub
        await hub.watch(keys.auth_changes(), self.invalidate)

    def stop(self) -> None:
        self.listening = None
        self.invalidate()

    def _trusted(self) -> Hub | None:
        hub = self.listening
        return hub if hub is not None and hub.connected.is_set() else None

    async def get(self, credential: str, load: Callable[[], Awaitable[Principal | None]]) -> Principal | None:
        hub = self._trusted()
        found = self.entries.get(credential)
        if found is not None:
            if hub is not None and found[2] == hub.reconnects and time.monotonic() < found[1]:
                return found[0]
            self.entries.pop(credential, None)
        generation = self.generation
        principal: Principal | None = await load()
        hub = self._trusted()
        if principal is not None and hub is not None and self.generation == generation:
            if len(self.entries) >= self.MAX_ENTRIES:
                self.entries.clear()
            self.entries[credential] = (principal, time.monotonic() + self.TTL_SECONDS, hub.reconnects)
        return principal


principal_cache = PrincipalCache()


def auth_changed(outbox: Outbox) -> None:
    """After commit: every process forgets the principals it cached. Call it in the
    transaction of any change to who a credential is or what it may do."""
    outbox.add(keys.auth_changes(), {"type": "auth.changed"})

    async def drop_here() -> None:
        principal_cache.invalidate()

    outbox.after_commit(drop_here)
