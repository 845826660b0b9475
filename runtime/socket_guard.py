"""Open WebSockets whose credentials stop working are closed within seconds, even when no
event reaches them: a logout, a password change, a deactivated agent, a revoked API key,
a deleted contact, an ended contact session (resolvers/auth.py), or an expired token.

    socket_guard.add(handler)        # runtime/websocket.py, once connection_init is accepted
    socket_guard.discard(handler)    # when the socket closes
    await socket_guard.run()         # in the lifespan, as a task

Every `auth_changed` (every process hears it, core/principal_cache.py) names whose
credentials changed (an agent, an API key, a contact, a channel's sessions, a workspace)
and wakes the guard, which checks again the credentials of this process's sockets of that
subject only, each credential once (a thousand sockets of one agent cost one check), and
closes the sockets of the ones that no longer authenticate with 4403. A stranger ending
its own widget sessions in a loop therefore re-checks nobody else's socket. Without a
change it still checks every socket every SWEEP_SECONDS, for tokens that expired. A
socket whose principal changed (a new role) gets the new one.

Library internals it relies on: the handler objects of runtime/websocket.py (Strawberry
0.341.2's graphql-transport-ws handler): their `context` and `websocket.close(code,
reason)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from core.principal_cache import EVERYONE, touches

log = logging.getLogger("parley.sockets")

CLOSE_CODE = 4403
CLOSE_REASON = "Credentials revoked or expired"


class SocketGuard:
    SWEEP_SECONDS = 60.0

    def __init__(self) -> None:
        self.handlers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._wake = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self._subjects: set[str] = set()  # changed since the last check
        self.closed_sockets = 0  # GET /metrics: parley_sockets_revoked_total
        self.checks = 0  # GET /metrics: parley_socket_credential_checks_total

    def add(self, handler: Any) -> None:
        self.handlers.add(handler)

    def discard(self, handler: Any) -> None:
        self.handlers.discard(handler)

    def changed(self, subject: str = EVERYONE) -> None:
        """The credentials of `subject` (core/principal_cache.py) may have been revoked:
        check its sockets soon."""
        self._subjects.add(subject)
        self._wake.set()

    async def run(self) -> None:
        # A fresh event on the running loop (the module's was made at import).
        self._wake = asyncio.Event()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.SWEEP_SECONDS)
            except TimeoutError:
                self._subjects.add(EVERYONE)
            self._wake.clear()
            subjects, self._subjects = self._subjects, set()
            try:
                await self.check(subjects)
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next change or sweep
                log.exception("socket credential check failed")

    async def check(self, subjects: set[str]) -> None:
        """Check the credentials of the sockets whose principal one of `subjects` touches
        (every socket for EVERYONE), each credential once; close the revoked."""
        by_credential: dict[str | None, list[Any]] = {}
        for handler in list(self.handlers):
            context = handler.context
            if context.socket_holder is not None and (
                EVERYONE in subjects or any(touches(subject, context.principal) for subject in subjects)
            ):
                by_credential.setdefault(context.authorization, []).append(handler)
        for handlers in by_credential.values():
            self.checks += 1
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
    with contextlib.suppress(Exception):  # gone already
        await handler.websocket.close(code=CLOSE_CODE, reason=CLOSE_REASON)


socket_guard = SocketGuard()
