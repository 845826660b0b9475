"""Segment members in their page order: segment_memberships.last_seen_at, and an index
(segment_id, last_seen_at, contact_id) that Segment.contacts pages by.

The column is NOT NULL and filled from each member's contact here; from then on every
refresh writes it (jobs/segments.py). It is added by hand rather than by Tortoise's
AddField: SQLite adds a NOT NULL column only with a default, and PostgreSQL only once the
rows have a value, so it is added with a placeholder default that the backfill replaces
(then dropped on PostgreSQL; SQLite cannot drop a default, and no insert relies on it).
Going back drops the column with ALTER TABLE … DROP COLUMN: Tortoise's RemoveField would
rebuild the table on SQLite and lose its indexes.
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

PLACEHOLDER = "'1970-01-01 00:00:00+00:00'"
FORWARD = {
    "postgres": (
        f"ALTER TABLE segment_memberships ADD COLUMN last_seen_at TIMESTAMPTZ NOT NULL DEFAULT {PLACEHOLDER}",
        "UPDATE segment_memberships m SET last_seen_at = c.last_seen_at FROM contacts c WHERE c.id = m.contact_id",
        "ALTER TABLE segment_memberships ALTER COLUMN last_seen_at DROP DEFAULT",
    ),
    "sqlite": (
        f"ALTER TABLE segment_memberships ADD COLUMN last_seen_at TIMESTAMP NOT NULL DEFAULT {PLACEHOLDER}",
        "UPDATE segment_memberships SET last_seen_at = "
        "(SELECT c.last_seen_at FROM contacts c WHERE c.id = segment_memberships.contact_id)",
    ),
}


class AddMemberLastSeen(ops.AddField):
    """AddField for the migration state; the column itself is added and filled in SQL."""

    async def database_forward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is None:
            return
        for sql in FORWARD[state_editor.client.capabilities.dialect]:
            await state_editor._run_sql(sql)

    async def database_backward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is not None:
            await state_editor._run_sql("ALTER TABLE segment_memberships DROP COLUMN last_seen_at")


class Migration(migrations.Migration):
    dependencies = [("models", "0007_contacts_indexes")]

    initial = False

    operations = [
        AddMemberLastSeen(
            model_name="SegmentMembership",
            name="last_seen_at",
            field=fields.DatetimeField(auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(model_name="SegmentMembership", index=Index(fields=["segment_id", "last_seen_at", "contact_id"])),
    ]
