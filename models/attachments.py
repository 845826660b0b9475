"""Files on messages (issue 28, item 1): each attachment's row (its bytes are in the
store, core/storage.py) and each workspace's attachment policy."""

from __future__ import annotations

from tortoise import fields
from tortoise.indexes import Index

from models.contacts import Contact
from models.conversations import Message
from models.workspaces import WorkspaceScoped


class Attachment(WorkspaceScoped):
    """A file of a message. An upload waits with no message (`message_id` null) until a
    sendMessage or startConversation of its uploader takes it; its bytes are in the store
    once `stored` (a direct upload's row is made first, the bytes follow)."""

    message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name=False, null=True, on_delete=fields.CASCADE
    )
    message_id: int | None
    # The contact it belongs to: whose conversation it is in, or the contact session that
    # uploaded it. Erasing the contact removes it and its file.
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, null=True, on_delete=fields.CASCADE
    )
    contact_id: int | None
    # Who uploaded it ("agent:7", "key:3", "contact:12", "inbound"): only they may send it.
    uploader = fields.CharField(max_length=40)
    filename = fields.CharField(max_length=255)
    content_type = fields.CharField(max_length=127)
    size = fields.BigIntField()
    storage_key = fields.CharField(max_length=255, unique=True)
    stored = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "attachments"
        indexes = [Index(fields=["message_id", "id"]), Index(fields=["contact_id"])]


class AttachmentPolicy(WorkspaceScoped):
    """The limits on attachments of one workspace. A workspace without one uses the
    defaults of the settings (ATTACHMENT_MAX_BYTES, ATTACHMENT_CONTENT_TYPES)."""

    max_bytes = fields.BigIntField()
    content_types: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "attachment_policies"
        unique_together = (("workspace",),)
