"""`searchConversations`: full-text search of the inbox, best matches first, with highlights."""

from __future__ import annotations

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from models.search import SearchSource
from resolvers import conversations as rc
from resolvers import search as r
from schema.common import Connection, node_id, selected_names, to_connection
from schema.contacts import columns_for
from schema.conversations import Conversation, ConversationFilter, InboxView

SearchMatchSource = strawberry.enum(
    SearchSource, name="SearchMatchSource", description="Where the best match of a conversation was found."
)


@strawberry.type
class ConversationSearchResult:
    conversation: Conversation
    matched_in: SearchMatchSource  # type: ignore[valid-type]
    highlight: str = strawberry.field(
        description="The matching passage as HTML: its text escaped, the matched words in <mark>…</mark>."
    )
    _source_id: strawberry.Private[int]

    @strawberry.field(description="The matching message, when the best match is a message.")
    def message_id(self) -> relay.GlobalID | None:
        return node_id("Message", self._source_id) if self.matched_in is SearchSource.MESSAGE else None

    @classmethod
    def from_hit(cls, hit: r.SearchHit) -> ConversationSearchResult:
        return cls(
            conversation=Conversation.from_row(hit.conversation),
            matched_in=hit.matched_in,
            highlight=hit.highlight,
            _source_id=hit.source_id,
        )


@strawberry.type
class SearchQuery:
    @strawberry.field(
        description="Conversations whose messages, subject, contact (name, e-mail) or notes match `query`, "
        "best match first; the same view, filters and permission as `conversations`. `query` reads like a "
        'search box: words (all of them), "a phrase", or, -word. At most 200 characters.'
    )
    async def search_conversations(
        self,
        info: Info[Context, None],
        query: str,
        view: InboxView = InboxView.ALL,
        filter: ConversationFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[ConversationSearchResult]:
        where = filter.to_domain() if filter else rc.ConversationFilter()
        page = await r.search_conversations(info.context, query, view=view.value, where=where, first=first, after=after)
        selected = selected_names(info, "edges", "node", "conversation")
        contact_columns = (
            columns_for(selected_names(info, "edges", "node", "conversation", "contact"))
            if "contact" in selected
            else None
        )
        rows = [hit.conversation for hit in page.items]
        await rc.prefetch(info.context, rows, selected, contact_columns=contact_columns)
        return to_connection(page, ConversationSearchResult.from_hit)
