"""Identity per value (issue 22 review, F1, F9): contacts.session_fields, the identifying
values a widget/SDK session supplied (models.contacts.SessionField bits), and
contacts.session_version, which contact session tokens carry. Written by hand.

Existing contacts that only sessions wrote (identity_source other than 'trusted') get the
e-mail bit where they have an e-mail: every value they hold came from a session. A trusted
contact that a session filled before this migration cannot be told apart; it keeps 0."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

BACKFILL = "UPDATE contacts SET session_fields = 1 WHERE identity_source <> 'trusted' AND email IS NOT NULL"


class Migration(migrations.Migration):
    dependencies = [("models", "0014_erasure")]

    initial = False

    operations = [
        ops.AddField(model_name="Contact", name="session_fields", field=fields.SmallIntField(default=0)),
        ops.AddField(model_name="Contact", name="session_version", field=fields.IntField(default=0)),
        ops.RunSQL(BACKFILL, reverse_sql="SELECT 1"),
    ]  # fmt: skip
