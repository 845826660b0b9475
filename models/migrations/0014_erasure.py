"""Erasure (issue 22, part 5): webhook deliveries name the contact they are about, so
deleteContact finds them by index; the audit record counts what a deletion removed.
Written by hand."""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0013_revocation")]

    initial = False

    operations = [
        ops.AddField(model_name="WebhookDelivery", name="contact_id", field=fields.IntField(null=True)),
        ops.AddIndex(model_name="WebhookDelivery", index=Index(fields=["contact_id"])),
        ops.AddField(model_name="DeletedContact", name="erased", field=fields.JSONField(null=True)),
    ]
