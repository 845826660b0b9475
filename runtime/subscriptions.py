"""The skeleton every subscription resolver shares: listen to a hub channel, and at each
event check again that the principal may still see what it subscribed to.

    @strawberry.subscription
    async def segment_membership_changed(self, info, segment_id) -> AsyncGenerator[...]:
        ...  # find the segment (NOT_FOUND) first
        async with listen(info.context, keys.segment_channel(ws, pk), too_slow=...) as events:
            async for event in events:
                await still_allowed(ctx, lambda p: ..., "You can no longer see this segment.")
                yield ...

No library internals: this is the hub (core/hub.py) and presence (core/presence.py) as a
subscription resolver uses them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from core import presence
from core.context import Context
from core.errors import Code, PublicError
from core.hub import SubscriberTooSlow
from core.permissions import Principal

CATCH_UP = (
    "This subscription missed events (it fell too far behind, or the server's event stream was interrupted) "
    "and was closed; resubscribe and catch up by cursor."
)


@contextlib.asynccontextmanager
async def listen(
    ctx: Context, channel: str, *, too_slow: str = CATCH_UP, present_as: tuple[str, int | None] | None = None
) -> AsyncIterator[Any]:
    """The channel's events, as the hub hands them to this subscriber. A subscriber that
    falls too far behind is closed with CONFLICT and `too_slow` (what the client should do
    to catch up). `present_as` ("agent" or "contact", its id) counts the subscriber as
    present in the workspace meanwhile (an id of None: not counted)."""
    if ctx.hub is None:
        raise PublicError("Subscriptions are unavailable.", Code.INVALID)
    async with contextlib.AsyncExitStack() as stack:
        if present_as is not None and present_as[1] is not None:
            kind, member_id = present_as
            await stack.enter_async_context(presence.present(ctx.hub.redis, ctx.scope.workspace_id, kind, member_id))
        try:
            yield await stack.enter_async_context(ctx.hub.subscribe(channel))
        except SubscriberTooSlow:
            raise PublicError(too_slow, Code.CONFLICT) from None


async def still_allowed(
    ctx: Context, check: Callable[[Principal], bool | Awaitable[bool]], refusal: str = "You can no longer see this."
) -> Principal:
    """The principal, read afresh (the socket's may have been revoked or changed), if it
    passes `check`; else FORBIDDEN with `refusal`."""
    principal = await ctx.refresh_principal()
    allowed = principal is not None and check(principal)
    if not isinstance(allowed, bool):
        allowed = await allowed
    if principal is None or not allowed:
        raise PublicError(refusal, Code.FORBIDDEN)
    return principal
