"""Indexes for segment rules on PostgreSQL (SQLite has no equivalent and needs none).

A GIN index (jsonb_path_ops) on contacts.attributes serves the custom-attribute
conditions the segment compiler emits as containment tests, `attributes @> '{"key": value}'`:
equals and in on number, boolean and list attributes, and on text attributes whose values
have no letters to fold (see domain/segments.py). It is small (about 4 MB for 1,000,000
contacts with two attributes) and is built in about a second at that size.
"""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

CREATE = "CREATE INDEX IF NOT EXISTS contacts_attributes_gin ON contacts USING gin (attributes jsonb_path_ops)"
DROP = "DROP INDEX IF EXISTS contacts_attributes_gin"


def _on_postgres(sql: str) -> Any:
    async def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.client.capabilities.dialect == "postgres":
            await schema_editor._run_sql(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("models", "0004_jobs")]

    initial = False

    operations = [
        ops.RunPython(_on_postgres(CREATE), _on_postgres(DROP)),
    ]
