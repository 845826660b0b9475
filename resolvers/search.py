"""Full-text search of conversations: by their messages, subject, contact's name and
e-mail, and agents' notes (the documents of models/search.py), over the conversations
the caller sees in the inbox (`inbox_query`: the same view, filters and permission as
`conversations`). Contacts' sessions never search.

    page = await search_conversations(ctx, "refund order", view="all", where=ConversationFilter(),
                                      first=20, after=None)

A conversation appears once, for its best-matching document, in relevance order (ties by
newest conversation) among the newest MAX_RANKED matching documents; its cursor is that
(rank, id), so pages follow one another while the documents stay the same. Each result
carries a highlight of the matching text.

The user's text is never parsed as a query language that can fail: PostgreSQL reads it
with `websearch_to_tsquery` (quotes, OR and - do what a search box does; nothing is an
error), and SQLite gets each word as a quoted FTS5 string.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from tortoise import connections
from tortoise.queryset import QuerySet

from core.context import Context
from core.db import SqlBuilder
from core.errors import Code, PublicError
from core.permissions import Permission, Principal
from core.scoping import unrefined_workspace
from models.conversations import Conversation
from models.search import SearchSource
from resolvers.conversations import CONVERSATION_COLUMNS, ConversationFilter, inbox_query
from resolvers.pagination import Cursors, Order, Page, decode_cursor, page_size

MAX_QUERY = 200
# Relevance is measured among the newest documents matching, at most this many: ranking
# reads every candidate, so a word in 100,000 messages would take seconds. A word that
# common finds the best of its latest uses; more words narrow it (see BENCHMARKS.md).
MAX_RANKED = 2_000
MAX_WORDS = 16
# The order of results, as the cursor carries it.
RELEVANCE = Order(("rank", "id"), descending=True)
# Marks around the matched words while the database writes the highlight: characters a
# message keeps but never shows, replaced by <mark> once the rest is HTML-escaped.
_START, _STOP = "\x02", "\x03"
_HIGHLIGHT_WORDS = 24
_PG_HEADLINE = f"StartSel={_START}, StopSel={_STOP}, MaxWords={_HIGHLIGHT_WORDS}, MinWords=8, MaxFragments=2"


@dataclass
class SearchHit:
    conversation: dict[str, Any]  # a row of CONVERSATION_COLUMNS, as `conversations` reads it
    matched_in: SearchSource
    source_id: int
    highlight: str


def clean_query(text: str) -> str:
    """The text to search for, or a PublicError naming `query`."""
    if len(text) > MAX_QUERY:
        raise PublicError(f"query may be at most {MAX_QUERY} characters.", Code.TOO_LONG)
    # Control characters (NUL ends an FTS5 string early) are spaces here.
    text = " ".join("".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text).split())
    if len(text) > MAX_QUERY:
        raise PublicError(f"query may be at most {MAX_QUERY} characters.", Code.TOO_LONG)
    if not any(ch.isalnum() for ch in text):
        raise PublicError("query needs at least one letter or digit.", Code.REQUIRED)
    return text


def fts5_query(text: str) -> str:
    """Each word as an FTS5 string ("o""brien"), all of them required: no input is an FTS5
    syntax error. Words without a letter or digit are left out (they match nothing)."""
    words = [w for w in text.split() if any(ch.isalnum() for ch in w)][:MAX_WORDS]
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def render_highlight(marked: str) -> str:
    """The database's highlight as HTML: the text escaped, the matches in <mark>."""
    parts = re.split(f"([{_START}{_STOP}])", marked)
    out: list[str] = []
    inside = False
    for part in parts:
        if part == _START:
            inside = True
        elif part == _STOP:
            inside = False
        elif part:
            out.append(f"<mark>{html.escape(part)}</mark>" if inside else html.escape(part))
    return "".join(out)


def searchable(principal: Principal) -> list[SearchSource]:
    """What a caller's search reads: everyone who searches reads messages and subjects
    (conversations:read); a contact's name and e-mail need contacts:read, as
    `Conversation.contact` does. NOTE: agents' notes are one more source, read by whoever
    reads the notes (the notes area decides; for now whoever reads conversations)."""
    sources = [SearchSource.MESSAGE, SearchSource.SUBJECT, SearchSource.NOTE]
    if principal.can(Permission.CONTACTS_READ):
        sources.append(SearchSource.CONTACT)
    return sources


def _embed(q: SqlBuilder, query: Any) -> str:
    """A Tortoise queryset as a subquery of raw SQL, its parameters numbered after those
    already in `q`."""
    query._choose_db_if_not_chosen()
    query._make_query()
    sql, params = query.query.get_parameterized_sql()
    if q.postgres:
        offset = len(q.params)
        sql = re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + offset}", sql)
    q.extend(list(params))
    return str(sql)


async def search_conversations(
    ctx: Context, text: str, *, view: str, where: ConversationFilter, first: int | None, after: str | None
) -> Page[SearchHit]:
    visible = await inbox_query(ctx, view, where)  # the permission check: conversations:read
    sources = searchable(ctx.require_principal())
    text = clean_query(text)
    size = page_size(first, None, 20)
    cursor = decode_cursor(after, RELEVANCE) if after else None
    workspace_id = ctx.scope.workspace_id
    q = SqlBuilder()
    hits = _hits(q, text, workspace_id, visible, sources)
    rows: list[dict[str, Any]] = []
    if hits is not None:
        after_cursor = ""
        if cursor is not None:
            cast = "::real" if q.postgres else ""  # ts_rank's type: the cursor holds its value exactly
            rank, pk = float(cursor[0]), int(cursor[1])
            below, level = f"{q.param(rank)}{cast}", f"{q.param(rank)}{cast}"
            after_cursor = f"AND (rank < {below} OR (rank = {level} AND conversation_id < {q.param(pk)}))"
        # Each conversation once, by its best document; the window keeps the plan one pass
        # over the matching documents on both databases.
        sql = (
            "SELECT conversation_id, document_id, kind, source_id, rank FROM ("  # noqa: S608
            "SELECT *, row_number() OVER (PARTITION BY conversation_id ORDER BY rank DESC, document_id DESC) AS n "
            f"FROM ({hits}) hits) best WHERE n = 1 {after_cursor} "
            f"ORDER BY rank DESC, conversation_id DESC LIMIT {q.param(size + 1)}"
        )
        rows = list(await connections.get("default").execute_query_dict(sql, q.params))
    more = len(rows) > size
    rows = rows[:size]
    highlights = await _highlights(text, workspace_id, [r["document_id"] for r in rows])
    found = await Conversation.filter(workspace_id=workspace_id, id__in=[r["conversation_id"] for r in rows]).values(
        *CONVERSATION_COLUMNS
    )
    conversations = {c["id"]: c for c in found}
    items, keys = [], []
    for row in rows:
        conversation = conversations.get(row["conversation_id"])
        if conversation is None:  # deleted between the two reads
            continue
        matched_in = SearchSource(row["kind"])
        highlight = render_highlight(highlights.get(row["document_id"], ""))
        items.append(SearchHit(conversation, matched_in, row["source_id"], highlight))
        keys.append([float(row["rank"]), row["conversation_id"]])

    async def count() -> int:
        """Conversations matching, across all pages (however many documents match)."""
        q = SqlBuilder()
        matching = _matching(q, text, workspace_id, visible, sources)
        if matching is None:
            return 0
        sql = f"SELECT count(DISTINCT d.conversation_id) AS n {matching[0]}"  # noqa: S608
        return int((await connections.get("default").execute_query_dict(sql, q.params))[0]["n"])

    return Page(items=items, cursors=Cursors(keys), has_next_page=more, has_previous_page=bool(after), count=count)


def _matching(
    q: SqlBuilder, text: str, workspace_id: int, visible: QuerySet[Any], sources: list[SearchSource]
) -> tuple[str, str] | None:
    """`FROM … WHERE …` of the documents matching `text` in conversations of `visible`,
    and the SQL of a document's rank there (higher is better); None when the text has
    nothing to match."""
    if q.postgres:
        tsquery = f"websearch_to_tsquery('simple', {q.param(text)})"
        where = f"FROM search_documents d WHERE d.tsv @@ {tsquery} "
        rank = f"ts_rank(d.tsv, {tsquery})"
    else:
        match = fts5_query(text)
        if not match:
            return None
        # bm25() is lower for better matches: its negation ranks like PostgreSQL's ts_rank.
        where = (
            "FROM search_documents_fts JOIN search_documents d ON d.id = search_documents_fts.rowid "
            f"WHERE search_documents_fts MATCH {q.param(match)} "
        )
        rank = "-bm25(search_documents_fts)"
    where += f"AND d.workspace_id = {q.param(workspace_id)} AND d.kind IN {q.in_list([s.value for s in sources])}"
    if unrefined_workspace(visible) is None:  # a view or a filter: else the workspace is the whole of it
        where += f" AND d.conversation_id IN ({_embed(q, visible.values_list('id', flat=True))})"
    return where, rank


def _hits(
    q: SqlBuilder, text: str, workspace_id: int, visible: QuerySet[Any], sources: list[SearchSource]
) -> str | None:
    """The newest MAX_RANKED documents matching, with their rank, as SQL (conversation_id,
    document_id, kind, source_id, rank); None when the text has nothing to match."""
    matching = _matching(q, text, workspace_id, visible, sources)
    if matching is None:
        return None
    where, rank = matching
    columns = "d.conversation_id, d.id AS document_id, d.kind, d.source_id"
    if q.postgres:
        # Ranked after the cut: ts_rank reads each document's tsvector (its cost grows with the
        # matches, about 20 µs each), the newest matches come from the index on the id.
        newest = f"SELECT {columns}, d.tsv {where} ORDER BY d.id DESC LIMIT {q.param(MAX_RANKED)}"  # noqa: S608
        tsquery = f"websearch_to_tsquery('simple', {q.param(text)})"
        return (
            f"SELECT conversation_id, document_id, kind, source_id, ts_rank(tsv, {tsquery}) AS rank "  # noqa: S608
            f"FROM ({newest}) newest"
        )
    return f"SELECT {columns}, {rank} AS rank {where} ORDER BY d.id DESC LIMIT {q.param(MAX_RANKED)}"  # noqa: S608


async def _highlights(text: str, workspace_id: int, document_ids: list[int]) -> dict[int, str]:
    """The matching passage of each document of a page, matches marked (_START, _STOP)."""
    if not document_ids:
        return {}
    q = SqlBuilder()
    if q.postgres:
        sql = (
            f"SELECT id, ts_headline('simple', body, websearch_to_tsquery('simple', {q.param(text)}), "  # noqa: S608
            f"{q.param(_PG_HEADLINE)}) AS highlight FROM search_documents "
            f"WHERE workspace_id = {q.param(workspace_id)} AND id = ANY({q.param(document_ids)}::bigint[])"
        )
    else:
        sql = (
            f"SELECT rowid AS id, snippet(search_documents_fts, 0, {q.param(_START)}, {q.param(_STOP)}, "  # noqa: S608
            f"'…', {_HIGHLIGHT_WORDS}) AS highlight FROM search_documents_fts "
            f"WHERE search_documents_fts MATCH {q.param(fts5_query(text))} AND rowid IN {q.in_list(document_ids)}"
        )
    rows = await connections.get("default").execute_query_dict(sql, q.params)
    return {row["id"]: row["highlight"] or "" for row in rows}
