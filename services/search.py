"""The search index's upkeep that the database's triggers cannot do (models/search.py)."""

from __future__ import annotations

from tortoise import connections

from core.db import dialect


async def purge_deleted_text() -> None:
    """After an erasure: SQLite's FTS5 index keeps a deleted document's words in its older
    segments until they are merged; merging them all now leaves none of the erased text in
    the file. PostgreSQL's index entries go with the rows (and VACUUM), as every table's."""
    if dialect() == "sqlite":
        # One statement through execute_query: in the caller's transaction (execute_script
        # would COMMIT it first, as sqlite3's executescript does, and break its savepoints).
        await connections.get("default").execute_query(
            "INSERT INTO search_documents_fts (search_documents_fts) VALUES ('optimize')"
        )
