"""Principals by credential, for a few seconds, in each process: authentication then
costs no query on most requests, and every change to who a credential is or what it may
do reaches every process at once.

    await principal_cache.listen(hub)                 # in the lifespan, once the hub runs
    await principal_cache.get(credential, load)       # load() when not cached
    auth_changed(ctx.outbox, contact_id=contact.id)   # in the transaction of such a change

A change names whose credentials it touches (one subject: an agent, an API key, a contact,
a channel's sessions, or a whole workspace), and each process drops only the principals of
that subject and re-checks only their sockets. A stranger holding the public widget key
can end its own sessions as often as the rate limit allows; that costs each process one
dictionary lookup, not its whole cache and a re-check of every open socket.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from core import keys
from core.events import Outbox
from core.hub import Hub
from core.permissions import Principal, PrincipalKind

# The subject of a change that names none (a message from an older process): everything.
EVERYONE = "*"


def subjects_of(principal: Principal) -> tuple[str, ...]:
    """The subjects whose change may touch this principal: its workspace, itself, and for
    a contact session its channel."""
    found = [f"workspace:{principal.workspace_id}"]
    if principal.kind is PrincipalKind.AGENT:
        found.append(f"agent:{principal.agent_id}")
    elif principal.kind is PrincipalKind.API_KEY:
        found.append(f"api_key:{principal.api_key_id}")
    else:
        found.append(f"contact:{principal.contact_id}")
        if principal.channel_id is not None:
            found.append(f"channel:{principal.channel_id}")
    return tuple(found)


def touches(subject: str, principal: Principal | None) -> bool:
    return principal is not None and (subject == EVERYONE or subject in subjects_of(principal))


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
        # subject -> the credentials cached for it (subjects_of)
        self.by_subject: dict[str, set[str]] = {}
        # Bumped by every change: a load that overlapped one is not cached.
        self.generation = 0
        self.listening: Hub | None = None
        # Told the subject of every change (runtime/socket_guard.py re-checks its sockets).
        self.watchers: list[Callable[[str], None]] = []

    def invalidate(self, subject: str = EVERYONE) -> None:
        if subject == EVERYONE:
            self.entries.clear()
            self.by_subject.clear()
        else:
            for credential in list(self.by_subject.get(subject, ())):
                self._drop(credential)
        self.generation += 1
        for watcher in self.watchers:
            watcher(subject)

    def _heard(self, event: Any) -> None:
        subject = event.get("subject") if isinstance(event, dict) else None
        self.invalidate(subject if isinstance(subject, str) and subject else EVERYONE)

    def _drop(self, credential: str) -> None:
        found = self.entries.pop(credential, None)
        if found is not None:
            for subject in subjects_of(found[0]):
                credentials = self.by_subject.get(subject)
                if credentials is not None:
                    credentials.discard(credential)
                    if not credentials:
                        del self.by_subject[subject]

    async def listen(self, hub: Hub) -> None:
        self.invalidate()
        self.listening = hub
        await hub.watch(keys.auth_changes(), self._heard)

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
            self._drop(credential)
        generation = self.generation
        principal: Principal | None = await load()
        hub = self._trusted()
        if principal is not None and hub is not None and self.generation == generation:
            if len(self.entries) >= self.MAX_ENTRIES:
                self.entries.clear()
                self.by_subject.clear()
            self._drop(credential)
            self.entries[credential] = (principal, time.monotonic() + self.TTL_SECONDS, hub.reconnects)
            for subject in subjects_of(principal):
                self.by_subject.setdefault(subject, set()).add(credential)
        return principal


principal_cache = PrincipalCache()


def auth_changed(
    outbox: Outbox,
    *,
    workspace_id: int | None = None,
    agent_id: int | None = None,
    api_key_id: int | None = None,
    contact_id: int | None = None,
    channel_id: int | None = None,
) -> None:
    """After commit: every process forgets the principals it cached for one subject, and
    re-checks their open sockets. Call it in the transaction of any change to who a
    credential is or what it may do, naming exactly one subject: the agent, API key or
    contact whose credentials changed, the channel whose sessions ended, or the workspace
    when the change reaches all its principals (a setting in every agent's permissions)."""
    given = {
        "workspace": workspace_id,
        "agent": agent_id,
        "api_key": api_key_id,
        "contact": contact_id,
        "channel": channel_id,
    }
    named = [f"{kind}:{value}" for kind, value in given.items() if value is not None]
    if len(named) != 1:
        raise TypeError(f"auth_changed names exactly one subject, not {named or 'none'}")
    subject = named[0]
    outbox.add(keys.auth_changes(), {"type": "auth.changed", "subject": subject})

    async def drop_here() -> None:
        principal_cache.invalidate(subject)

    outbox.after_commit(drop_here)
