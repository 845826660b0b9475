"""Contacts' indexes.

- SQLite: the unique (workspace_id, external_id) and the three indexes of contacts that
  0002 lost (Tortoise rebuilds the table on SQLite for an AlterField, without them).
  PostgreSQL kept them. A SQLite database that meanwhile got two contacts with one external
  id fails here: merge them first.
- Both: (workspace_id, id), which keyset walks over one workspace's contacts (exports,
  bulk sync) need when other workspaces own most rows. Declared here rather than on the
  model, so that SQLite's table is not rebuilt again.
"""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

SQLITE_ONLY = (
    'CREATE UNIQUE INDEX IF NOT EXISTS "uid_contacts_workspa_d5ce11" ON "contacts" ("workspace_id", "external_id")',
    'CREATE INDEX IF NOT EXISTS "idx_contacts_workspa_14e3c0" ON "contacts" ("workspace_id", "last_seen_at", "id")',
    'CREATE INDEX IF NOT EXISTS "idx_contacts_workspa_667af9" ON "contacts" ("workspace_id", "email")',
    'CREATE INDEX IF NOT EXISTS "idx_contacts_workspa_e59a89" ON "contacts" ("workspace_id", "phone")',
)
BOTH = ('CREATE INDEX IF NOT EXISTS "contacts_workspace_id_id" ON "contacts" ("workspace_id", "id")',)


async def _create(apps: Any, schema_editor: Any) -> None:
    statements = BOTH + (SQLITE_ONLY if schema_editor.client.capabilities.dialect == "sqlite" else ())
    for sql in statements:
        await schema_editor._run_sql(sql)


async def _drop(apps: Any, schema_editor: Any) -> None:
    await schema_editor._run_sql('DROP INDEX IF EXISTS "contacts_workspace_id_id"')


class Migration(migrations.Migration):
    dependencies = [("models", "0006_sync_webhooks")]

    initial = False

    operations = [ops.RunPython(_create, _drop)]
