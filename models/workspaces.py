"""Workspaces (tenants) and the principals acting in them: agents, teams, API keys."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from tortoise import fields
from tortoise.models import Model

# Defined with the permissions it grants (core/permissions.py); models and migrations import it from here.
from core.permissions import Role as Role
from domain.attribution import DEFAULT_WINDOW_HOURS


class MatchingAttribute(StrEnum):
    """Which contact value makes two channel identities one contact."""

    EMAIL = "email"
    PHONE = "phone"
    EXTERNAL_ID = "external_id"
    CUSTOM = "custom"


class Workspace(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=120)
    slug = fields.CharField(max_length=64, unique=True)
    time_zone = fields.CharField(max_length=64, default="UTC")
    matching_attribute = fields.CharEnumField(MatchingAttribute, default=MatchingAttribute.EMAIL)
    # The custom attribute key used when matching_attribute is CUSTOM.
    matching_attribute_key = fields.CharField(max_length=64, null=True)
    agents_can_edit_crm_attributes = fields.BooleanField(default=False)
    # Replies this long after a campaign or proactive message are attributed to it.
    attribution_window_hours = fields.IntField(default=DEFAULT_WINDOW_HOURS)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "workspaces"


def workspace_key(related_name: str | Literal[False] = False) -> fields.ForeignKeyRelation[Workspace]:
    """The foreign key to the workspace a row belongs to; deleting the workspace deletes
    the row. `related_name` names the reverse relation on Workspace, if any."""
    return fields.ForeignKeyField("models.Workspace", related_name=related_name, on_delete=fields.CASCADE)


class WorkspaceScoped(Model):
    """A table whose every row belongs to one workspace: an integer primary key (a subclass
    may declare a BigIntField `id` instead) and the `workspace` foreign key, with no reverse
    relation unless the subclass redeclares it with `workspace_key("name")`. Every read of
    such a table goes through the caller's workspace scope (core/scoping.py)."""

    id = fields.IntField(primary_key=True)
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key()
    workspace_id: int

    class Meta:
        abstract = True


class Agent(WorkspaceScoped):
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("agents")
    email = fields.CharField(max_length=254)
    name = fields.CharField(max_length=120)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharEnumField(Role, default=Role.AGENT)
    # Owners and admins always may; an agent only with this grant.
    can_edit_contact_identity = fields.BooleanField(default=False)
    time_zone = fields.CharField(max_length=64, default="UTC")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)
    # Carried in the agent's tokens: bumped by logout, a password change or reset and
    # deactivation, which ends every token issued before (resolvers/auth.py).
    token_version = fields.IntField(default=0)
    # Set: the agent cannot log in and its tokens are refused; owners and admins reactivate.
    deactivated_at = fields.DatetimeField(null=True)
    # Routing assigns an agent at most this many open conversations (0: never).
    routing_capacity = fields.IntField(default=10)

    teams: fields.ManyToManyRelation[Team]

    class Meta:
        table = "agents"
        unique_together = (("workspace", "email"),)


class Team(WorkspaceScoped):
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("teams")
    name = fields.CharField(max_length=120)
    members: fields.ManyToManyRelation[Agent] = fields.ManyToManyField(
        "models.Agent", related_name="teams", through="team_members"
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "teams"
        unique_together = (("workspace", "name"),)


class ApiKey(WorkspaceScoped):
    """A key for integrators. Only a SHA-256 of the secret is kept, the prefix finds the row."""

    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("api_keys")
    name = fields.CharField(max_length=120)
    prefix = fields.CharField(max_length=16, unique=True)
    key_hash = fields.CharField(max_length=64)
    scopes: list[str] = fields.JSONField(default=list)  # type: ignore[assignment]
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"
