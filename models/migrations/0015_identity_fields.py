"""Identity per value (issue 22 review, F1, F9): contacts.session_fields, the identifying
values a widget/SDK session supplied (models.contacts.SessionField bits), and
contacts.session_version, which contact session tokens carry. Written by hand.

Existing contacts that only sessions wrote (identity_source other than 'trusted') get the
e-mail bit where they have an e-mail: every value they hold came from a session. A trusted
contact that a session filled before this migration cannot be told apart; it keeps 0.

Both columns default to 0 in the database too, so rows inserted in SQL (bulk loads, the
benchmarks) need not name them. Added in SQL, as in 0012; going back drops them."""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

SQL_TYPES = {"session_fields": "SMALLINT", "session_version": "INTEGER"}
BACKFILL = "UPDATE contacts SET session_fields = 1 WHERE identity_source <> 'trusted' AND email IS NOT NULL"


class AddCounter(ops.AddField):
    """AddField for the migration state; the column itself is added in SQL, with its
    database default."""

    async def database_forward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is not None:
            await state_editor._run_sql(
                f"ALTER TABLE contacts ADD COLUMN {self.name} {SQL_TYPES[self.name]} NOT NULL DEFAULT 0"
            )

    async def database_backward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is not None:
            await state_editor._run_sql(f"ALTER TABLE contacts DROP COLUMN {self.name}")


class Migration(migrations.Migration):
    dependencies = [("models", "0014_erasure")]

    initial = False

    operations = [
        AddCounter(model_name="Contact", name="session_fields", field=fields.SmallIntField(default=0)),
        AddCounter(model_name="Contact", name="session_version", field=fields.IntField(default=0)),
        ops.RunSQL(BACKFILL, reverse_sql="SELECT 1"),
    ]
