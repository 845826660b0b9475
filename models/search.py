"""The search index of conversations: one document per thing a conversation is found by
(a message, its subject, its contact's name and e-mail, an agent's note), each with its
text. The database keeps it in step by itself (triggers of migration 0021 on messages,
conversations and contacts; documents go with their conversation), whatever writes the
rows: the API, the campaign job's batches, CRM sync's bulk upserts, merges, erasure.

The full-text index over `body` is the dialect's own, made by migration 0021 and read by
resolvers/search.py: on PostgreSQL a stored `tsv tsvector` column with a GIN index, on
SQLite the FTS5 table `search_documents_fts` (external content: this table's rows)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.indexes import Index

from models.conversations import Conversation
from models.workspaces import WorkspaceScoped


class SearchSource(StrEnum):
    MESSAGE = "message"
    SUBJECT = "subject"
    CONTACT = "contact"
    # Agents' private notes in a conversation: indexed by the notes area (see
    # models/migrations/0021_search.py, NOTE_SOURCE).
    NOTE = "note"


class SearchDocument(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name=False, on_delete=fields.CASCADE
    )
    conversation_id: int
    kind = fields.CharEnumField(SearchSource, max_length=16)
    # The message's, note's or contact's id (the conversation's own for SUBJECT).
    source_id = fields.BigIntField()
    body = fields.TextField()

    class Meta:
        table = "search_documents"
        indexes = [Index(fields=["conversation_id", "kind"]), Index(fields=["kind", "source_id"])]
