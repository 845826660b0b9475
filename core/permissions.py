"""Who is asking, and what they may do.

Agents get permissions from their role (and two grants), API keys from their scopes,
contacts act only on themselves and hold none of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """An agent's role in its workspace (stored on models.workspaces.Agent)."""

    OWNER = "owner"
    ADMIN = "admin"
    AGENT = "agent"


class Permission(StrEnum):
    CONTACTS_READ = "contacts:read"
    CONTACTS_WRITE = "contacts:write"
    # Editing a contact's name and e-mail is a permission of its own.
    CONTACTS_IDENTITY = "contacts:identity"
    # Writing CRM-managed attributes.
    CONTACTS_CRM = "contacts:crm"
    CONTACTS_DELETE = "contacts:delete"
    # Exporting contacts (CSV of a segment, the attribute report) and downloading exports.
    CONTACTS_EXPORT = "contacts:export"
    EVENTS_WRITE = "events:write"
    CONVERSATIONS_READ = "conversations:read"
    CONVERSATIONS_WRITE = "conversations:write"
    ATTRIBUTES_MANAGE = "attributes:manage"
    AUDIT_READ = "audit:read"
    # Registering outbound webhook endpoints and reading their delivery log.
    WEBHOOKS_MANAGE = "webhooks:manage"
    # Sending campaigns (bulk and scheduled messages) and cancelling them.
    CAMPAIGNS_SEND = "campaigns:send"
    # The inbox report (conversation counts, response times, ratings).
    REPORTS_READ = "reports:read"
    WORKSPACE_MANAGE = "workspace:manage"


# Scopes an API key may be given: everything but managing the workspace itself.
API_KEY_SCOPES = frozenset(p for p in Permission if p is not Permission.WORKSPACE_MANAGE)


class PrincipalKind(StrEnum):
    AGENT = "agent"
    API_KEY = "api_key"
    CONTACT = "contact"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    workspace_id: int
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    agent_id: int | None = None
    role: Role | None = None
    api_key_id: int | None = None
    contact_id: int | None = None
    channel_id: int | None = None

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


def agent_permissions(
    role: Role, *, can_edit_contact_identity: bool, agents_can_edit_crm_attributes: bool
) -> frozenset[Permission]:
    if role in (Role.OWNER, Role.ADMIN):
        return frozenset(Permission)
    granted = {
        Permission.CONTACTS_READ,
        Permission.CONTACTS_WRITE,
        Permission.EVENTS_WRITE,
        Permission.CONVERSATIONS_READ,
        Permission.CONVERSATIONS_WRITE,
    }
    if can_edit_contact_identity:
        granted.add(Permission.CONTACTS_IDENTITY)
    if agents_can_edit_crm_attributes:
        granted.add(Permission.CONTACTS_CRM)
    return frozenset(granted)


def api_key_permissions(scopes: list[str]) -> frozenset[Permission]:
    granted = {Permission(s) for s in scopes if s in API_KEY_SCOPES}
    # Integrators sync CRM data: a key that writes contacts writes CRM-managed attributes.
    if Permission.CONTACTS_WRITE in granted:
        granted.add(Permission.CONTACTS_CRM)
    return frozenset(granted)
