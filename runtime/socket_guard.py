"""Open WebSockets whose credentials stop working are closed within seconds, even when no
event reaches them: a logout, a password change, a deactivated agent, a revoked API key,
a deleted contact, an ended contact session (resolvers/auth.py), or an expired token.

    socket_guard.add(handler)        # runtime/websocket.py, once connection_init is accepted
    socket_guard.discard(handler)    # when the socket closes
    await socket_guard.run()         # in the lifespan, as a task

Every `auth_changed` (every process hears it, core/principal_cache.py) wakes the guard,
which checks again the credentials of this process's sockets, each credential once (a
thousand sockets of one agent cost one check), and closes the sockets of the ones that no
longer authenticate with 4403. Without a change it still checks every SWEEP_SECONDS, for
tokens that expired. A socket whose principal changed (a new role) gets the new one.

Library internals it relies on: the handler objects of runtime/websocket.py (Strawberry
0.341.2's graphql-transport-ws handler): their `context` and `websocket.close(code,
reason)`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

log = logging.getLogger("parley.sockets")

CLOSE_CODE = 4403
CLOSE_REASON = "Credentials revoked or expired"


class SocketGuard:
    SWEEP_SECONDS = 60.0

    def __init__(self) -> None:
        self.handlers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._wake = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self.closed_sockets = 0  # GET /metrics: parley_sockets_revoked_total

    def add(self, handler: Any) -> None:
        self.handlers.add(handler)

    def discard(self, handler: Any) -> None:
        self.handlers.discard(handler)

    def changed(self, _event: object = None) -> None:
        """Credentials may have been revoked: check the sockets soon."""
        self._wake.set()

    async def run(self) -> None:
        # A fresh event on the running loop (the module's was made at import).
        self._wake = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.SWEEP_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next change or sweep
                log.exception("socket credential check failed")

    async def check(self) -> None:
        """Check every socket's credentials, each credential once; close the revoked."""
        by_credential: dict[str | None, list[Any]] = {}
        for handler in list(self.handlers):
            context = handler.context
            if context.socket_holder is not None:
                by_credential.setdefault(context.authorization, []).append(handler)
        for handlers in by_credential.values():
            principal = await handlers[0].context.check_credentials()
            checked = time.monotonic()
            for handler in handlers:
                if principal is None:
                    self.discard(handler)
                    self.closed_sockets += 1
                    closing = asyncio.get_running_loop().create_task(_close(handler))
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
                else:
                    handler.context.checked(principal, checked)


async def _close(handler: Any) -> None:
    try:
        await handler.websocket.close(code=CLOSE_CODE, reason=CLOSE_REASON)
    except Exception:  # noqa: BLE001 - gone already
        pass


socket_guard = SocketGuard()
