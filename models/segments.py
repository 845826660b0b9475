"""Segments: saved rule trees over contacts, who may see them, and their materialised
membership."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from models.contacts import Contact
from models.workspaces import Agent, Team, Workspace, WorkspaceScoped, workspace_key


class SegmentVisibility(StrEnum):
    PERSONAL = "personal"  # its owner only
    SHARED = "shared"  # the teams and agents it is shared with
    EVERYONE = "everyone"


class Segment(WorkspaceScoped):
    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("segments")
    name = fields.CharField(max_length=120)
    description = fields.CharField(max_length=500, default="")
    # None for the predefined segments, which belong to the workspace.
    owner: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    owner_id: int | None
    visibility = fields.CharEnumField(SegmentVisibility, default=SegmentVisibility.PERSONAL)
    # The rule tree as plain data: {"match": "all", "conditions": [...], "groups": [...]}.
    rules: dict[str, Any] = fields.JSONField(default=dict)  # type: ignore[assignment]
    # all_users, new_users, recently_active, lapsed, inactive for the predefined ones.
    predefined_key = fields.CharField(max_length=32, null=True)
    member_count = fields.IntField(default=0)
    refreshed_at = fields.DatetimeField(null=True)
    # Bumped by each refresh; joins and leaves carry it as their cursor.
    refresh_seq = fields.BigIntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "segments"
        indexes = (Index(fields=("workspace_id", "name")),)


class SegmentShare(Model):
    """One team or one agent a SHARED segment is shared with."""

    id = fields.IntField(primary_key=True)
    segment: fields.ForeignKeyRelation[Segment] = fields.ForeignKeyField(
        "models.Segment", related_name="shares", on_delete=fields.CASCADE
    )
    segment_id: int
    team: fields.ForeignKeyNullableRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name=False, null=True, on_delete=fields.CASCADE
    )
    team_id: int | None
    agent: fields.ForeignKeyNullableRelation[Agent] = fields.ForeignKeyField(
        "models.Agent", related_name=False, null=True, on_delete=fields.CASCADE
    )
    agent_id: int | None

    class Meta:
        table = "segment_shares"


class SegmentMembership(WorkspaceScoped):
    id = fields.BigIntField(primary_key=True)
    segment: fields.ForeignKeyRelation[Segment] = fields.ForeignKeyField(
        "models.Segment", related_name="memberships", on_delete=fields.CASCADE
    )
    segment_id: int
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    joined_at = fields.DatetimeField()
    # The contact's last_seen_at as of the refresh that last looked at it: Segment.contacts
    # pages the membership by (last_seen_at, contact_id) on the index below, without
    # walking the contacts (see BENCHMARKS.md). Every refresh keeps it true, the debounced
    # one after a contact's own change included.
    last_seen_at = fields.DatetimeField()
    # The refresh that added the row, and the one that found it no longer matching
    # (set just before the row is deleted): joins and leaves are streamed from these.
    joined_seq = fields.BigIntField(default=0)
    left_seq = fields.BigIntField(null=True)

    class Meta:
        table = "segment_memberships"
        unique_together = (("segment", "contact"),)
        indexes = (
            Index(fields=("contact_id",)),
            Index(fields=("segment_id", "joined_seq", "contact_id")),
            Index(fields=("segment_id", "last_seen_at", "contact_id")),
        )
