"""Canned responses (issue 28, item 5) and the search index of conversations (item 6):
models/canned.py, models/search.py. The tables made by `tortoise makemigrations`; the
full-text index and the triggers that keep it in step written by hand, per dialect.

The database fills `search_documents` itself, whatever writes the rows (the API, the
campaign job's batches in SQL, CRM sync's bulk upserts, merges): a document per message,
per conversation subject, and per conversation for its contact's name and e-mail. They
go with their source (a deleted message, a deleted conversation). Rows written before
this migration are indexed by it (one INSERT … SELECT per source).

- PostgreSQL: a stored `tsv` column (the 'simple' configuration: no language's stemming
  or stop words, as a workspace writes in any language; an e-mail address is also split
  at @ and . so that its parts are found) with a GIN index; statement-level triggers with
  transition tables on INSERT, so that a batch of 10,000 messages is one INSERT … SELECT.
- SQLite: an FTS5 table over the documents (external content: the text is not stored
  twice), kept in step by triggers on `search_documents`, and row triggers on the sources.
  A table that Tortoise rebuilds on SQLite (an AlterField) loses its triggers: a migration
  that alters messages, conversations or contacts must run `source_triggers` again.

NOTE_SOURCE: agents' private notes (another area's `conversation_notes`, body column) are
one more source: its migration runs `source_triggers("sqlite"|"postgres", NOTE_SOURCE)`.
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.search import SearchSource

# A table whose rows are each one document: (workspace_id, conversation_id, id, body).
MESSAGE_SOURCE = ("messages", "message")
NOTE_SOURCE = ("conversation_notes", "note")

COLUMNS = "workspace_id, conversation_id, kind, source_id, body"
PG_CONTACT_TEXT = "concat_ws(' ', {c}.name, {c}.email)"
SQLITE_CONTACT_TEXT = "trim(coalesce({c}.name, '') || ' ' || coalesce({c}.email, ''))"


def source_triggers(dialect: str, source: tuple[str, str]) -> list[str]:
    """The triggers that index a table of one-document rows (messages; notes)."""
    table, kind = source
    if dialect == "postgres":
        return [
            f"""CREATE FUNCTION search_add_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO search_documents ({COLUMNS})
  SELECT workspace_id, conversation_id, '{kind}', id, body FROM added;
  RETURN NULL;
END $$""",
            f"CREATE TRIGGER {table}_search_add AFTER INSERT ON {table} REFERENCING NEW TABLE AS added "
            f"FOR EACH STATEMENT EXECUTE FUNCTION search_add_{table}()",
            f"""CREATE FUNCTION search_drop_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM search_documents d USING dropped WHERE d.kind = '{kind}' AND d.source_id = dropped.id;
  RETURN NULL;
END $$""",
            f"CREATE TRIGGER {table}_search_drop AFTER DELETE ON {table} REFERENCING OLD TABLE AS dropped "
            f"FOR EACH STATEMENT EXECUTE FUNCTION search_drop_{table}()",
            f"""CREATE FUNCTION search_edit_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE search_documents SET body = NEW.body WHERE kind = '{kind}' AND source_id = NEW.id;
  RETURN NULL;
END $$""",
            f"CREATE TRIGGER {table}_search_edit AFTER UPDATE OF body ON {table} FOR EACH ROW "
            f"WHEN (OLD.body IS DISTINCT FROM NEW.body) EXECUTE FUNCTION search_edit_{table}()",
        ]
    return [
        f"CREATE TRIGGER {table}_search_add AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO search_documents ({COLUMNS}) "
        f"VALUES (new.workspace_id, new.conversation_id, '{kind}', new.id, new.body); END",
        f"CREATE TRIGGER {table}_search_drop AFTER DELETE ON {table} BEGIN "
        f"DELETE FROM search_documents WHERE kind = '{kind}' AND source_id = old.id; END",
        f"CREATE TRIGGER {table}_search_edit AFTER UPDATE OF body ON {table} BEGIN "
        f"UPDATE search_documents SET body = new.body WHERE kind = '{kind}' AND source_id = new.id; END",
    ]


def drop_source_triggers(dialect: str, source: tuple[str, str]) -> list[str]:
    table, _ = source
    if dialect == "postgres":
        return [f"DROP FUNCTION IF EXISTS search_{verb}_{table}() CASCADE" for verb in ("add", "drop", "edit")]
    return [f"DROP TRIGGER IF EXISTS {table}_search_{verb}" for verb in ("add", "drop", "edit")]


PG_CONVERSATION_DOCS = f"""
  INSERT INTO search_documents ({COLUMNS})
  SELECT a.workspace_id, a.id, 'subject', a.id, a.subject FROM {{rows}} a WHERE coalesce(a.subject, '') <> ''
  UNION ALL
  SELECT a.workspace_id, a.id, 'contact', c.id, {PG_CONTACT_TEXT.format(c="c")}
  FROM {{rows}} a JOIN contacts c ON c.id = a.contact_id"""

POSTGRES = [
    # Contacts' addresses are also indexed split at @ and . ("ada@example.com" finds "ada").
    "ALTER TABLE search_documents ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', "
    "CASE WHEN kind = 'contact' THEN body || ' ' || translate(body, '@.', '  ') ELSE body END)) STORED",
    "CREATE INDEX search_documents_tsv ON search_documents USING gin (tsv)",
    *source_triggers("postgres", MESSAGE_SOURCE),
    f"""CREATE FUNCTION search_add_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{PG_CONVERSATION_DOCS.format(rows="added")};
  RETURN NULL;
END $$""",
    "CREATE TRIGGER conversations_search_add AFTER INSERT ON conversations REFERENCING NEW TABLE AS added "
    "FOR EACH STATEMENT EXECUTE FUNCTION search_add_conversations()",
    f"""CREATE FUNCTION search_edit_conversations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM search_documents WHERE conversation_id = NEW.id AND kind IN ('subject', 'contact');{
        PG_CONVERSATION_DOCS.format(rows="(SELECT NEW.*)")
    };
  RETURN NULL;
END $$""",
    "CREATE TRIGGER conversations_search_edit AFTER UPDATE OF subject, contact_id ON conversations FOR EACH ROW "
    "WHEN (OLD.subject IS DISTINCT FROM NEW.subject OR OLD.contact_id <> NEW.contact_id) "
    "EXECUTE FUNCTION search_edit_conversations()",
    f"""CREATE FUNCTION search_edit_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE search_documents SET body = {PG_CONTACT_TEXT.format(c="NEW")} WHERE kind = 'contact' AND source_id = NEW.id;
  RETURN NULL;
END $$""",
    "CREATE TRIGGER contacts_search_edit AFTER UPDATE OF name, email ON contacts FOR EACH ROW "
    "WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.email IS DISTINCT FROM NEW.email) "
    "EXECUTE FUNCTION search_edit_contacts()",
]

SQLITE_CONVERSATION_DOCS = f"""
  INSERT INTO search_documents ({COLUMNS})
  SELECT new.workspace_id, new.id, 'subject', new.id, new.subject WHERE coalesce(new.subject, '') <> '';
  INSERT INTO search_documents ({COLUMNS})
  SELECT new.workspace_id, new.id, 'contact', c.id, {SQLITE_CONTACT_TEXT.format(c="c")}
  FROM contacts c WHERE c.id = new.contact_id;"""

SQLITE = [
    "CREATE VIRTUAL TABLE search_documents_fts USING fts5(body, content='search_documents', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER search_documents_fts_add AFTER INSERT ON search_documents BEGIN "
    "INSERT INTO search_documents_fts (rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER search_documents_fts_drop AFTER DELETE ON search_documents BEGIN "
    "INSERT INTO search_documents_fts (search_documents_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER search_documents_fts_edit AFTER UPDATE OF body ON search_documents BEGIN "
    "INSERT INTO search_documents_fts (search_documents_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO search_documents_fts (rowid, body) VALUES (new.id, new.body); END",
    *source_triggers("sqlite", MESSAGE_SOURCE),
    f"CREATE TRIGGER conversations_search_add AFTER INSERT ON conversations BEGIN{SQLITE_CONVERSATION_DOCS} END",
    "CREATE TRIGGER conversations_search_edit AFTER UPDATE OF subject, contact_id ON conversations "
    "WHEN old.subject IS NOT new.subject OR old.contact_id <> new.contact_id BEGIN "
    f"DELETE FROM search_documents WHERE conversation_id = new.id AND kind IN ('subject', 'contact');"
    f"{SQLITE_CONVERSATION_DOCS} END",
    # Foreign keys cascade on SQLite only where they are on (core/sqlite.py turns them on).
    "CREATE TRIGGER conversations_search_drop AFTER DELETE ON conversations BEGIN "
    "DELETE FROM search_documents WHERE conversation_id = old.id; END",
    "CREATE TRIGGER contacts_search_edit AFTER UPDATE OF name, email ON contacts "
    "WHEN old.name IS NOT new.name OR old.email IS NOT new.email BEGIN "
    f"UPDATE search_documents SET body = {SQLITE_CONTACT_TEXT.format(c='new')} "
    "WHERE kind = 'contact' AND source_id = new.id; END",
]

# What was written before: indexed once, source by source.
BACKFILL = {
    "postgres": [
        f"INSERT INTO search_documents ({COLUMNS}) SELECT workspace_id, conversation_id, 'message', id, body "
        "FROM messages",
        PG_CONVERSATION_DOCS.format(rows="conversations"),
    ],
    "sqlite": [
        f"INSERT INTO search_documents ({COLUMNS}) SELECT workspace_id, conversation_id, 'message', id, body "
        "FROM messages",
        f"INSERT INTO search_documents ({COLUMNS}) SELECT workspace_id, id, 'subject', id, subject "
        "FROM conversations WHERE coalesce(subject, '') <> ''",
        f"INSERT INTO search_documents ({COLUMNS}) SELECT a.workspace_id, a.id, 'contact', c.id, "
        f"{SQLITE_CONTACT_TEXT.format(c='c')} FROM conversations a JOIN contacts c ON c.id = a.contact_id",
    ],
}

DROP = {
    "postgres": [
        *drop_source_triggers("postgres", MESSAGE_SOURCE),
        *(f"DROP FUNCTION IF EXISTS search_{n}() CASCADE" for n in ("add_conversations", "edit_conversations")),
        "DROP FUNCTION IF EXISTS search_edit_contacts() CASCADE",
    ],
    "sqlite": [
        *drop_source_triggers("sqlite", MESSAGE_SOURCE),
        *(f"DROP TRIGGER IF EXISTS conversations_search_{v}" for v in ("add", "edit", "drop")),
        "DROP TRIGGER IF EXISTS contacts_search_edit",
        "DROP TABLE IF EXISTS search_documents_fts",
    ],
}


async def run(client: Any, statements: list[str]) -> None:
    """One statement at a time, through the client: the schema editor splits SQLite's SQL
    at every semicolon, trigger bodies included."""
    for sql in statements:
        await client.execute_script(sql) if client.capabilities.dialect == "postgres" else await client.execute_query(
            sql
        )


async def _index(apps: Any, schema_editor: Any) -> None:
    dialect = schema_editor.client.capabilities.dialect
    await run(schema_editor.client, (POSTGRES if dialect == "postgres" else SQLITE) + BACKFILL[dialect])


async def _unindex(apps: Any, schema_editor: Any) -> None:
    await run(schema_editor.client, DROP[schema_editor.client.capabilities.dialect])


class Migration(migrations.Migration):
    dependencies = [("models", "0020_routing")]

    initial = False

    operations = [
        ops.CreateModel(
            name="CannedResponse",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="owner_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("shared", fields.BooleanField(default=False)),
                ("shortcut", fields.CharField(max_length=32)),
                ("body", fields.TextField(unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "canned_responses",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "shortcut", "id"])],
                "pk_attr": "id",
            },
            bases=["WorkspaceScoped"],
        ),
        ops.CreateModel(
            name="SearchDocument",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "conversation",
                    fields.ForeignKeyField(
                        "models.Conversation",
                        source_field="conversation_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "kind",
                    fields.CharEnumField(
                        description="MESSAGE: message\nSUBJECT: subject\nCONTACT: contact\nNOTE: note",
                        enum_type=SearchSource,
                        max_length=16,
                    ),
                ),
                ("source_id", fields.BigIntField()),
                ("body", fields.TextField(unique=False)),
            ],
            options={
                "table": "search_documents",
                "app": "models",
                "indexes": [Index(fields=["conversation_id", "kind"]), Index(fields=["kind", "source_id"])],
                "pk_attr": "id",
            },
            bases=["WorkspaceScoped"],
        ),
        ops.RunPython(_index, _unindex),
    ]
