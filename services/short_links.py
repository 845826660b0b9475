"""Short links of outbound SMS (DESIGN.md: outbound SMS shortens links with a redirect
route of our own and counts clicks). Replies and campaigns alike are shortened where they
are handed to the gateway (jobs/sending.py), one code per link of each message, so a
click counts for the message, its campaign and its contact.

    text = await shorten(message, contact_id)   # what the gateway gets: PUBLIC_URL/l/{code}
    url = await click(code)                     # the stored URL, its click counted; None: unknown
"""

from __future__ import annotations

import contextlib

from tortoise import connections
from tortoise.exceptions import IntegrityError

from core.clock import now
from core.config import settings
from core.db import SqlBuilder, bind_datetime
from domain.short_links import find_links, new_code, redirectable, rewrite, valid_code
from models.campaigns import CampaignRecipient
from models.conversations import Message
from models.short_links import ShortLink


def short_url(code: str) -> str:
    return f"{settings.public_url.rstrip('/')}/l/{code}"


async def shorten(message: Message, contact_id: int) -> str:
    """The message's text with its links shortened. A retried delivery reuses the codes
    minted the first time (one row per message and position)."""
    links = find_links(message.body)
    if not links:
        return message.body
    stored = {link.position: link for link in await ShortLink.filter(message_id=message.id)}
    missing = [i for i in range(len(links)) if i not in stored]
    if missing:
        campaign_id = (
            await CampaignRecipient.filter(message_id=message.id).first().values_list("campaign_id", flat=True)
        )
        rows = [
            ShortLink(
                workspace_id=message.workspace_id,
                code=new_code(),
                url=links[i].url,
                message_id=message.id,
                position=i,
                contact_id=contact_id,
                campaign_id=campaign_id,
            )
            for i in missing
        ]
        # A concurrent run of the same delivery may have minted them first: use its codes.
        with contextlib.suppress(IntegrityError):
            await ShortLink.bulk_create(rows)
        stored = {link.position: link for link in await ShortLink.filter(message_id=message.id)}
    return rewrite(message.body, links, [short_url(stored[i].code) for i in range(len(links))])


async def click(code: str) -> str | None:
    """Count a click and return where it goes: one indexed UPDATE … RETURNING, atomic
    under any number of concurrent clicks. None for a code we did not mint."""
    if not valid_code(code):
        return None
    q = SqlBuilder()
    sql = (
        f"UPDATE short_links SET clicks = clicks + 1, last_clicked_at = {q.param(bind_datetime(now()))} "  # noqa: S608
        f"WHERE code = {q.param(code)} RETURNING url"
    )
    rows = await connections.get("default").execute_query_dict(sql, q.params)
    url = str(rows[0]["url"]) if rows else None
    return url if url is not None and redirectable(url) else None
