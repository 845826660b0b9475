"""What outreach reached a contact: one receipt per campaign or proactive message sent, so
that the contact's first reply within the workspace's attribution window is credited to
the newest one (DESIGN.md, "Attribution")."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index

from models.contacts import Contact
from models.workspaces import WorkspaceScoped


class Receipt(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    # What Conversation.attributed_source holds: "campaign:12", "proactive:5".
    source = fields.CharField(max_length=64)
    sent_at = fields.DatetimeField()
    # The first reply since; a receipt is credited once.
    replied_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outreach_receipts"
        indexes = (Index(fields=("contact_id", "sent_at")),)
