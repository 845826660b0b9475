"""Contacts and what hangs off them: attribute definitions, tags, notes, events, the
audit trail of deletions and the ordered log of changes."""

from __future__ import annotations

from enum import IntFlag, StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index

from models.workspaces import Agent, Workspace, WorkspaceScoped, workspace_key


class SmsConsent(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    NEVER = "never"


class AttributeType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    LIST = "list"


class AttributeSource(StrEnum):
    # Filled by the system from channel metadata; nobody else writes it.
    PLATFORM = "platform"
    CUSTOM = "custom"


class EventKind(StrEnum):
    PAGE_VIEW = "page_view"
    EVENT = "event"


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class IdentitySource(StrEnum):
    """Who set a contact's identity (resolvers/contacts.py, "identity across channels")."""

    # An agent, an API key, a CRM sync or an inbound e-mail/SMS/messenger channel: its
    # external id is resumed only with a userHash, its matching value links contacts.
    TRUSTED = "trusted"
    # A widget/SDK session that proved its external id (valid userHash). Only the external
    # id is proven: the e-mail or phone the session reports never links contacts.
    VERIFIED_SESSION = "verified_session"
    # A widget/SDK session without a userHash: an anonymous visitor, whatever it claims.
    # Its external id gives way to a trusted writer's, its values never link contacts.
    SESSION = "session"


class SessionField(IntFlag):
    """Identifying values of a contact that a widget/SDK session supplied and no trusted
    writer has set since (Contact.session_fields): on a TRUSTED contact too, such a value
    never links (inbound routing, the matching attribute, TAKEN)."""

    EMAIL = 1
    PHONE = 2
    MATCHING = 4  # the value of the workspace's custom matching attribute


class Contact(WorkspaceScoped):
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("contacts")
    name = fields.CharField(max_length=200, null=True)
    email = fields.CharField(max_length=254, null=True)
    phone = fields.CharField(max_length=20, null=True)  # E.164
    external_id = fields.CharField(max_length=128, null=True)
    # Who set the contact's identity (its external id and the workspace's matching
    # attribute value): see IdentitySource. A write path that does not say is TRUSTED,
    # which no unverified session can resume; only widget/SDK sessions say otherwise.
    identity_source = fields.CharEnumField(IdentitySource, default=IdentitySource.TRUSTED)
    # Which of its identifying values a session supplied (SessionField bits): trust is per
    # value, so a trusted writer upgrading the contact vouches only for what it writes.
    session_fields = fields.SmallIntField(default=0)
    # A contact session token carries this; bumping it ends every session of the contact
    # (endContactSession, a merge, an anonymous contact a trusted writer identifies).
    session_version = fields.IntField(default=0)

    country = fields.CharField(max_length=2, null=True)  # ISO 3166-1 alpha-2
    city = fields.CharField(max_length=120, null=True)
    time_zone = fields.CharField(max_length=64, null=True)
    locale = fields.CharField(max_length=35, null=True)
    browser_language = fields.CharField(max_length=35, null=True)
    os = fields.CharField(max_length=64, null=True)
    browser = fields.CharField(max_length=64, null=True)
    ip = fields.CharField(max_length=45, null=True)
    referrer = fields.CharField(max_length=2048, null=True)
    # The kind of channel the contact first came from.
    platform = fields.CharField(max_length=32, null=True)

    gdpr_consent = fields.BooleanField(default=False)
    gdpr_consent_at = fields.DatetimeField(null=True)
    sms_consent = fields.CharEnumField(SmsConsent, default=SmsConsent.NEVER)
    sms_consent_at = fields.DatetimeField(null=True)
    vip = fields.BooleanField(default=False)
    blocked = fields.BooleanField(default=False)

    # Values of the workspace's attribute definitions, by key (platform and custom).
    attributes: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]

    first_seen_at = fields.DatetimeField(null=True)
    # Last interaction: a session, an event, a message. The contact list sorts by it,
    # so it is never null (a new contact starts at its creation time).
    last_seen_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "contacts"
        unique_together = (("workspace", "external_id"),)
        indexes = (
            Index(fields=("workspace_id", "last_seen_at", "id")),
            Index(fields=("workspace_id", "email")),
            Index(fields=("workspace_id", "phone")),
        )


class AttributeDefinition(WorkspaceScoped):
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("attribute_definitions")
    key = fields.CharField(max_length=64)
    label = fields.CharField(max_length=120)
    type = fields.CharEnumField(AttributeType)
    options: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    source = fields.CharEnumField(AttributeSource, default=AttributeSource.CUSTOM)
    crm_managed = fields.BooleanField(default=False)
    searchable = fields.BooleanField(default=False)
    visible = fields.BooleanField(default=True)
    position = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "attribute_definitions"
        unique_together = (("workspace", "key"),)
        ordering = ["position", "id"]


class ContactTag(WorkspaceScoped):
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="tags", on_delete=fields.CASCADE
    )
    contact_id: int
    name = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "contact_tags"
        unique_together = (("contact", "name"),)
        indexes = (Index(fields=("workspace_id", "name")),)


class ContactNote(WorkspaceScoped):
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="notes", on_delete=fields.CASCADE
    )
    contact_id: int
    author: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    author_id: int | None
    body = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "contact_notes"
        indexes = (Index(fields=("contact_id", "created_at")),)


class ContactEvent(WorkspaceScoped):
    """A page view or a named event on the timeline of a contact."""

    id = fields.BigIntField(primary_key=True)
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="events", on_delete=fields.CASCADE
    )
    contact_id: int
    kind = fields.CharEnumField(EventKind)
    name = fields.CharField(max_length=120)
    url = fields.CharField(max_length=2048, null=True)
    title = fields.CharField(max_length=500, null=True)
    properties: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    occurred_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "contact_events"
        indexes = (
            Index(fields=("contact_id", "occurred_at", "id")),
            Index(fields=("workspace_id", "name", "occurred_at")),
        )


class DeletedContact(WorkspaceScoped):
    """The audit record a deletion leaves behind: masked hints only, never the data."""

    name_hint = fields.CharField(max_length=64, null=True)
    email_hint = fields.CharField(max_length=64, null=True)
    phone_hint = fields.CharField(max_length=32, null=True)
    platform = fields.CharField(max_length=32, null=True)
    deleted_by: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    deleted_by_id: int | None
    # Kept apart from the foreign key so the record survives the agent's removal.
    deleted_by_name = fields.CharField(max_length=120)
    deleted_at = fields.DatetimeField(auto_now_add=True)
    # What the deletion removed, counts by kind: {"messages": 12, "webhookDeliveries": 3, …}.
    erased: dict[str, int] | None = fields.JSONField(null=True)  # type: ignore[assignment]

    class Meta:
        table = "deleted_contacts"
        indexes = (Index(fields=("workspace_id", "deleted_at")),)


class ContactChange(WorkspaceScoped):
    """Ordered log of contact changes, its id is the cursor events and sync reads carry."""

    id = fields.BigIntField(primary_key=True)
    # Not a foreign key: the log outlives deleted contacts.
    contact_id = fields.IntField()
    kind = fields.CharEnumField(ChangeKind)
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "contact_changes"
        indexes = (Index(fields=("workspace_id", "id")),)
