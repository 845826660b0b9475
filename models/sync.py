"""CRM sync: the idempotency keys of syncContacts, how far the change log was pruned, and
CRM-managed attribute edits waiting to be pushed back to the CRM."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from models.contacts import Contact
from models.workspaces import Agent, Workspace, WorkspaceScoped


class ContactSyncRequest(WorkspaceScoped):
    """A syncContacts call made with an idempotency key, and the results it answered."""

    id = fields.BigIntField(primary_key=True)
    idempotency_key = fields.CharField(max_length=200)
    # SHA-256 of the rows as sent: the same key with other rows is refused.
    request_hash = fields.CharField(max_length=64)
    results: list[dict[str, Any]] = fields.JSONField(default=list)  # type: ignore[assignment]
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "contact_sync_requests"
        unique_together = (("workspace", "idempotency_key"),)
        indexes = (Index(fields=("created_at",)),)


class ContactChangeHorizon(Model):
    """The newest contact change pruned from a workspace log: a reader whose cursor is
    older may have missed changes and must resync in full."""

    id = fields.IntField(primary_key=True)
    workspace: fields.OneToOneRelation[Workspace] = fields.OneToOneField(
        "models.Workspace", related_name=False, on_delete=fields.CASCADE
    )
    workspace_id: int
    pruned_through = fields.BigIntField()
    pruned_at = fields.DatetimeField()

    class Meta:
        table = "contact_change_horizons"


class CrmPendingPush(WorkspaceScoped):
    """CRM-managed attributes of a contact that an agent edited, pushed to the CRM webhook
    when one of the contact conversations next changes status."""

    contact: fields.OneToOneRelation[Contact] = fields.OneToOneField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    attribute_keys: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    # The agent who edited last.
    agent: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    agent_id: int | None
    edited_at = fields.DatetimeField()

    class Meta:
        table = "crm_pending_pushes"
