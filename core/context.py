"""The per-request (or per-WebSocket) context every resolver receives."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.dataloader import DataLoader

from core.errors import forbidden, unauthenticated
from core.events import Outbox
from core.hub import Hub
from core.permissions import Permission, Principal, PrincipalKind
from core.scoping import Scope

# authorization value -> (when checked, the check), shared by the process's sockets.
_recent_checks: dict[str | None, tuple[float, asyncio.Future[Principal | None]]] = {}


def _failed(check: asyncio.Future[Any]) -> bool:
    return check.done() and (check.cancelled() or check.exception() is not None)


class Context:
    def __init__(
        self,
        *,
        request: Any,
        response: Any,
        hub: Hub | None,
        principal: Principal | None,
        request_id: str,
        authorization: str | None = None,
        authenticate: Callable[[str | None], Awaitable[Principal | None]] | None = None,
        client_ip: str | None = None,
        jobs: Any = None,
    ) -> None:
        self.request = request
        self.response = response
        self.hub = hub
        self.principal = principal
        self.request_id = request_id
        self.jobs = jobs  # arq pool
        # One outbox per task: operations multiplexed on one WebSocket run in tasks of
        # their own and must not publish each other's events.
        self._outboxes: weakref.WeakKeyDictionary[asyncio.Task[Any], Outbox] = weakref.WeakKeyDictionary()
        self.connection_params: dict[str, Any] | None = None
        self.authorization = authorization
        self.client_ip = client_ip
        self._authenticate = authenticate
        self._authenticated_at = time.monotonic()
        self._loaders: dict[str, DataLoader[Any, Any]] = {}
        # A WebSocket's holder in core/limits.py's socket quota, once connection_init passed.
        self.socket_holder: Any = None
        # Filled with the operation's cost when the client asked for it (X-Parley-Cost: 1).
        self.cost_report: dict[str, int] | None = None

    @property
    def outbox(self) -> Outbox:
        task = asyncio.current_task()
        assert task is not None
        found = self._outboxes.get(task)
        if found is None:
            found = self._outboxes[task] = Outbox(self.hub, self.jobs)
        return found

    # Long-lived (WebSocket) contexts check their credentials again at most this often.
    REAUTHENTICATE_SECONDS = 5.0

    async def set_credentials(self, authorization: str | None) -> Principal | None:
        self.authorization = authorization
        self.principal = await self._authenticate(authorization) if self._authenticate else None
        self._authenticated_at = time.monotonic()
        return self.principal

    async def refresh_principal(self) -> Principal | None:
        """The principal as of now: a deleted agent, a revoked key, an expired token or a
        changed role take effect on open subscriptions too (within REAUTHENTICATE_SECONDS).

        The check is shared by every socket of the process holding the same credentials:
        a thousand subscriptions of one agent re-check with one query, not a thousand."""
        now = time.monotonic()
        if now - self._authenticated_at < self.REAUTHENTICATE_SECONDS or self._authenticate is None:
            return self.principal
        found = _recent_checks.get(self.authorization)
        if found is None or now - found[0] >= self.REAUTHENTICATE_SECONDS or _failed(found[1]):
            if len(_recent_checks) > 10_000:
                _recent_checks.clear()
            found = _recent_checks[self.authorization] = (
                now,
                asyncio.ensure_future(self._authenticate(self.authorization)),
            )
        self.principal = await asyncio.shield(found[1])
        self._authenticated_at = found[0]
        return self.principal

    def fresh_principal(self) -> Principal | None:
        """The principal if it is known as of now without waiting: checked within
        REAUTHENTICATE_SECONDS, here or by another socket with the same credentials. None
        when only `refresh_principal()` can tell (or when there is no principal)."""
        now = time.monotonic()
        age = now - self._authenticated_at
        if self._authenticate is None:
            return self.principal
        found = _recent_checks.get(self.authorization)
        if found is not None and found[0] > self._authenticated_at and found[1].done() and not _failed(found[1]):
            # Another socket's check, newer than ours.
            self.principal = found[1].result()
            self._authenticated_at = found[0]
            return self.principal
        if age < self.REAUTHENTICATE_SECONDS:
            if age >= self.REAUTHENTICATE_SECONDS - self.CHECK_AHEAD_SECONDS and (
                found is None or found[0] <= self._authenticated_at
            ):
                # Check again a little ahead, in the background, so that sockets delivering
                # without waiting find a fresh answer when theirs falls due.
                self._check_ahead(now)
            return self.principal
        return None

    # How long before a check falls due `fresh_principal` starts the next one.
    CHECK_AHEAD_SECONDS = 1.0

    def _check_ahead(self, now: float) -> None:
        assert self._authenticate is not None
        if len(_recent_checks) > 10_000:
            _recent_checks.clear()
        check = asyncio.ensure_future(self._authenticate(self.authorization))
        check.add_done_callback(lambda done: done.cancelled() or done.exception())
        _recent_checks[self.authorization] = (now, check)

    async def check_credentials(self) -> Principal | None:
        """These credentials' principal as of now, for runtime/socket_guard.py, which checks
        each credential once for all the sockets holding it and hands the answer to each
        (`checked`). The principal is None without an authenticator."""
        return await self._authenticate(self.authorization) if self._authenticate else None

    def checked(self, principal: Principal | None, at: float) -> None:
        self.principal = principal
        self._authenticated_at = at

    def reset_loaders(self) -> None:
        """Drop cached loads; a WebSocket context lives longer than its data stays fresh."""
        self._loaders.clear()

    # -- who is asking -----------------------------------------------------------

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise unauthenticated()
        return self.principal

    def require(self, permission: Permission) -> Principal:
        principal = self.require_principal()
        refusal = self.lacks(permission)
        if refusal is not None:
            raise forbidden(refusal)
        return principal

    def require_agent(self) -> Principal:
        principal = self.require_principal()
        if principal.kind is not PrincipalKind.AGENT:
            raise forbidden("Only agents can do this.")
        return principal

    def require_contact(self) -> Principal:
        principal = self.require_principal()
        if principal.kind is not PrincipalKind.CONTACT:
            raise forbidden("Only a contact session can do this.")
        return principal

    @property
    def viewing_contact_id(self) -> int | None:
        """The contact whose narrow view this request gets: a contact session's own contact
        (startContactSession makes its request that session); None for anyone else."""
        principal = self.principal
        return principal.contact_id if principal is not None and principal.kind is PrincipalKind.CONTACT else None

    def lacks(self, permission: Permission) -> str | None:
        """None when the caller holds the permission, else the refusal's message (for
        runtime/guards.py): as cheap as an attribute read."""
        principal = self.principal
        if principal is not None and permission in principal.permissions:
            return None
        return f"This needs the {permission.value} permission."

    @property
    def scope(self) -> Scope:
        return Scope(self.require_principal().workspace_id)

    # -- batching ----------------------------------------------------------------

    def loader(self, name: str, batch: Callable[[list[Any]], Awaitable[list[Any]]]) -> DataLoader[Any, Any]:
        """One DataLoader per name per request: `ctx.loader("contact", load_contacts)`."""
        found = self._loaders.get(name)
        if found is None:
            found = self._loaders[name] = DataLoader(load_fn=batch)
        return found
