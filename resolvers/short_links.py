"""Short links: the public redirect (GET /l/{code}) and what agents read of them
(`Message.shortLinks`, a campaign's `stats { clicks clickedContacts }`).

The redirect is public and hot: a code that does not look like ours is a 404 without a
query; one we minted is counted and answered with a 302 to the URL stored for it, and to
nothing else (no parameter of the request decides where it goes: never an open redirect).
"""

from __future__ import annotations

from collections import defaultdict

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from tortoise import connections

from core.client_ip import client_ip
from core.config import settings
from core.context import Context
from core.db import SqlBuilder
from core.errors import RateLimited
from core.ratelimit import address_key, rate_limits
from models.short_links import ShortLink
from services.short_links import click, short_url

__all__ = ["campaign_clicks", "message_links", "redirect_endpoint", "short_url"]

# Each click must reach us to be counted; the target is nobody else's business.
REDIRECT_HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer", "x-robots-tag": "noindex"}


async def redirect_endpoint(request: Request) -> Response:
    """GET /l/{code}: 302 to the link's URL, or 404; 429 past the address's rate limit
    (counted before any query: a flood costs one Redis call a request)."""
    try:
        await rate_limits.hit(
            "short-link",
            settings.rate_limit_short_link_per_ip,
            address_key(client_ip(request) or "unknown"),
            what="Too many clicks",
        )
    except RateLimited as exc:
        headers = {**REDIRECT_HEADERS, "retry-after": str(exc.retry_after)}
        return PlainTextResponse(exc.message, status_code=429, headers=headers)
    url = await click(str(request.path_params["code"]))
    if url is None:
        return PlainTextResponse("No such link.", status_code=404, headers=REDIRECT_HEADERS)
    return RedirectResponse(url, status_code=302, headers=REDIRECT_HEADERS)


async def message_links(ctx: Context, message_id: int) -> list[ShortLink]:
    """The short links of a message, in the order they appear (batched per request)."""

    async def batch(ids: list[int]) -> list[list[ShortLink]]:
        rows = await ctx.scope.all(ShortLink).filter(message_id__in=ids).order_by("message_id", "position")
        by_message: dict[int, list[ShortLink]] = defaultdict(list)
        for row in rows:
            by_message[row.message_id].append(row)
        return [by_message.get(i, []) for i in ids]

    return await ctx.loader("message.short_links", batch).load(message_id)  # type: ignore[no-any-return]


async def campaign_clicks(ctx: Context, campaign_id: int) -> tuple[int, int]:
    """Clicks on a campaign's links, and how many contacts clicked (batched per request)."""
    workspace_id = ctx.scope.workspace_id

    async def batch(ids: list[int]) -> list[tuple[int, int]]:
        q = SqlBuilder()
        sql = (
            "SELECT campaign_id, COALESCE(SUM(clicks), 0) AS clicks, "  # noqa: S608
            "COUNT(DISTINCT CASE WHEN clicks > 0 THEN contact_id END) AS contacts FROM short_links "
            f"WHERE workspace_id = {q.param(workspace_id)} AND campaign_id IN {q.in_list(ids)} GROUP BY campaign_id"
        )
        rows = await connections.get("default").execute_query_dict(sql, q.params)
        found = {r["campaign_id"]: (int(r["clicks"]), int(r["contacts"])) for r in rows}
        return [found.get(i, (0, 0)) for i in ids]

    return await ctx.loader("campaign.clicks", batch).load(campaign_id)  # type: ignore[no-any-return]
