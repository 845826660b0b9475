"""Short links of outbound SMS: `Message.shortLinks` and a campaign's click counts
(`CampaignStats.clicks`, `clickedContacts`). The redirect itself is GET /l/{code}
(resolvers/short_links.py)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay

from models.short_links import ShortLink as ShortLinkRow
from resolvers import short_links as r
from schema.common import node_id


@strawberry.type(description="A link of an outbound SMS, sent as PUBLIC_URL/l/{code}; its clicks are counted.")
class ShortLink:
    code: str
    url: str = strawberry.field(description="Where the short link redirects: the link as the message was written.")
    short_url: str = strawberry.field(description="What the contact received instead of url.")
    clicks: int
    last_clicked_at: datetime | None
    contact_id: relay.GlobalID = strawberry.field(description="The contact the message went to.")
    campaign_id: relay.GlobalID | None = strawberry.field(description="The campaign that sent it, if any.")

    @classmethod
    def from_model(cls, s: ShortLinkRow) -> ShortLink:
        return cls(
            code=s.code,
            url=s.url,
            short_url=r.short_url(s.code),
            clicks=s.clicks,
            last_clicked_at=s.last_clicked_at,
            contact_id=node_id("Contact", s.contact_id),
            campaign_id=node_id("Campaign", s.campaign_id) if s.campaign_id is not None else None,
        )
