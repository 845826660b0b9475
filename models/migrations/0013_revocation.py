"""Token versions and agent lifecycle (issue 22, part 4): agents' token version and
deactivation, channels' contact session version. Written by hand."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0012_verified_contacts")]

    initial = False

    operations = [
        ops.AddField(model_name="Agent", name="token_version", field=fields.IntField(default=0)),
        ops.AddField(
            model_name="Agent",
            name="deactivated_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(model_name="Channel", name="session_version", field=fields.IntField(default=0)),
    ]
