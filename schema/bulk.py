"""Bulk actions: `startBulkAction`, `cancelBulkAction`, and the `BulkAction` node."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from models import bulk as m
from resolvers import bulk as r
from schema.common import JSON, Connection, UserError, gid, mutate, to_connection
from schema.contacts import AttributeValueInput
from schema.job_records import Job
from schema.segments import SegmentRulesInput, rules_to_data


@strawberry.enum
class BulkActionKind(Enum):
    TAG = "tag"
    UNTAG = "untag"
    SET_ATTRIBUTE = "set_attribute"
    ASSIGN_CONVERSATIONS = "assign_conversations"
    RESOLVE_CONVERSATIONS = "resolve_conversations"
    BLOCK = "block"
    DELETE = "delete"


@strawberry.type(
    description="""A bulk action over many contacts, run by the worker in batches; follow it with
`jobProgress(jobId: job.id)`. Each contact is handled exactly once: done (changed), skipped (nothing
to change, or gone since), or failed."""
)
class BulkAction(relay.Node):
    id: relay.NodeID[int]
    action: BulkActionKind
    target: JSON = strawberry.field(description="{ids} or {rules, segmentId?}: what the action was given.")
    total: int = strawberry.field(description="Contacts the target held when the action started.")
    done: int
    skipped: int
    failed: int
    created_at: datetime
    _row: strawberry.Private[m.BulkAction]

    @strawberry.field(description="The job record: status, progress, who started it.")
    async def job(self, info: Info[Context, None]) -> Job | None:
        found = await r.job_of(info.context, self._row)
        return Job.from_model(found) if found else None

    @classmethod
    def from_model(cls, a: m.BulkAction) -> BulkAction:
        target = dict(a.target)
        if "ids" in target:
            target["ids"] = [str(relay.GlobalID("Contact", str(i))) for i in target["ids"]]
        if "segment_id" in target:
            target["segmentId"] = str(relay.GlobalID("Segment", str(target.pop("segment_id"))))
        return cls(
            id=a.id,
            action=BulkActionKind(a.action.value),
            target=target,
            total=a.total,
            done=a.done,
            skipped=a.skipped,
            failed=a.failed,
            created_at=a.created_at,
            _row=a,
        )


@strawberry.input(description="Exactly one of segmentId, filter (segment rules) and ids.")
class BulkTargetInput:
    segment_id: relay.GlobalID | None = None
    filter: SegmentRulesInput | None = strawberry.field(
        default=None, description="Segment rules, matched when each batch runs."
    )
    ids: list[relay.GlobalID] | None = strawberry.field(default=None, description="At most 10,000 contacts.")


@strawberry.input
class StartBulkActionInput:
    target: BulkTargetInput
    action: BulkActionKind
    tags: list[str] | None = strawberry.field(default=None, description="TAG and UNTAG: at most 50 tags.")
    attribute: AttributeValueInput | None = strawberry.field(
        default=None, description="SET_ATTRIBUTE: the attribute and its value (null clears it)."
    )
    assignee_id: relay.GlobalID | None = strawberry.field(default=None, description="ASSIGN_CONVERSATIONS: the agent.")
    dry_run: bool = strawberry.field(default=False, description="Only count the contacts; start nothing.")
    confirm: int | None = strawberry.field(
        default=None, description="DELETE: the number of contacts, as a dry run answered it."
    )


@strawberry.type
class StartBulkActionPayload:
    count: int | None = strawberry.field(default=None, description="Contacts the action touches (or would).")
    bulk_action: BulkAction | None = None
    user_errors: list[UserError]


@strawberry.input
class CancelBulkActionInput:
    id: relay.GlobalID


@strawberry.type
class CancelBulkActionPayload:
    bulk_action: BulkAction | None = None
    user_errors: list[UserError]


@strawberry.type
class BulkQuery:
    @strawberry.field(description="The workspace's bulk actions, newest first (contacts:write).")
    async def bulk_actions(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[BulkAction]:
        page = await r.list_actions(info.context, first=first, after=after)
        return to_connection(page, BulkAction.from_model)


@strawberry.type
class BulkMutation:
    @strawberry.mutation(
        description="""Tag, untag, set an attribute, assign or resolve conversations, block or delete
many contacts as one audited job. dryRun answers the count; DELETE needs contacts:delete and confirm
equal to the count."""
    )
    async def start_bulk_action(self, info: Info[Context, None], input: StartBulkActionInput) -> StartBulkActionPayload:
        t = input.target
        req = r.BulkRequest(
            action=m.BulkActionKind(input.action.value),
            segment_gid=gid(t.segment_id),
            rules=rules_to_data(t.filter) if t.filter is not None else None,
            ids=[str(i) for i in t.ids] if t.ids is not None else None,
            tags=input.tags,
            attribute_key=input.attribute.key if input.attribute else None,
            attribute_value=input.attribute.value if input.attribute else None,
            assignee_gid=gid(input.assignee_id),
            dry_run=input.dry_run,
            confirm=input.confirm,
        )
        return await mutate(
            StartBulkActionPayload,
            r.start(info.context, req),
            lambda o: {"count": o.count, "bulk_action": BulkAction.from_model(o.action) if o.action else None},
        )

    @strawberry.mutation(description="Stops a bulk action before its next batch; what it did stays done.")
    async def cancel_bulk_action(
        self, info: Info[Context, None], input: CancelBulkActionInput
    ) -> CancelBulkActionPayload:
        return await mutate(
            CancelBulkActionPayload,
            r.cancel(info.context, str(input.id)),
            lambda a: {"bulk_action": BulkAction.from_model(a)},
        )
