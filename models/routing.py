"""Routing rules: which team a new conversation goes to, and whether it is then assigned
round-robin to an online agent of that team (services/routing.py)."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.indexes import Index

from models.segments import Segment
from models.workspaces import Team, Workspace, WorkspaceScoped, workspace_key


class RoutingRule(WorkspaceScoped):
    """One rule. A workspace tries its rules in (position, id) order, and the first that
    matches routes the conversation. Its conditions must all hold: the channel is one of
    `channel_ids` (any when empty), the contact is in `segment` (its rules, evaluated now)
    and matches `rules` (a segment rule tree, e.g. vip equals true)."""

    workspace: fields.ForeignKeyRelation[Workspace] = workspace_key("routing_rules")
    name = fields.CharField(max_length=120)
    position = fields.IntField(default=0)
    enabled = fields.BooleanField(default=True)
    channel_ids: list[int] = fields.JSONField(default=list)  # type: ignore[assignment]
    segment: fields.ForeignKeyNullableRelation[Segment] = fields.ForeignKeyField(
        "models.Segment", related_name=False, null=True, on_delete=fields.CASCADE
    )
    segment_id: int | None
    # A segment rule tree over the contact ({"match": ..., "conditions": [...]}), or None.
    rules: dict[str, Any] | None = fields.JSONField(null=True)  # type: ignore[assignment]
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name=False, on_delete=fields.CASCADE
    )
    team_id: int
    # Assign round-robin among the team's online agents, each up to their capacity.
    auto_assign = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "routing_rules"
        indexes = (Index(fields=("workspace_id", "position", "id")),)
