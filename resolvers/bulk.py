"""Bulk actions through the API: `startBulkAction` (validate, count, record, queue),
`cancelBulkAction`, and reading an action. The worker's side is jobs/bulk.py.

Who may: contacts:write for every action (and contacts:read, to name a target);
conversations:write for the conversation actions, which an agent below admin may not run
(one conversation at a time it may resolve only its own); contacts:delete for DELETE,
with `confirm` equal to the count. Contact sessions never. Another workspace's segment or
contact ids are NOT_FOUND, and nothing is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.events import atomic
from core.permissions import Permission, Principal
from core.queue import enqueue
from core.scoping import decode_global_id
from domain import segments as rules_lang
from models.bulk import BulkAction, BulkActionKind
from models.contacts import AttributeDefinition, Contact
from models.job_records import Job, JobKind, JobStatus
from models.workspaces import Agent
from resolvers.contacts import clean_tags
from resolvers.pagination import Order, Page, paginate
from services.bulk import MAX_IDS, count_target
from services.contacts import validate_attributes
from services.job_records import arq_job_id, cancel_job, create_job
from services.segments import attribute_types

# Actions of one workspace queued or running at once.
MAX_RUNNING = 3
NEWEST_FIRST = Order(("id",), descending=True)
CONVERSATION_ACTIONS = (BulkActionKind.ASSIGN_CONVERSATIONS, BulkActionKind.RESOLVE_CONVERSATIONS)


@dataclass
class BulkRequest:
    action: BulkActionKind
    segment_gid: str | None
    rules: dict[str, Any] | None
    ids: list[str] | None
    tags: list[str] | None
    attribute_key: str | None
    attribute_value: Any
    assignee_gid: str | None
    dry_run: bool
    confirm: int | None


@dataclass
class BulkOutcome:
    count: int
    action: BulkAction | None


def _authorise(ctx: Context, action: BulkActionKind) -> Principal:
    ctx.require(Permission.CONTACTS_READ)
    principal = ctx.require(Permission.CONTACTS_WRITE)
    if action in CONVERSATION_ACTIONS:
        ctx.require(Permission.CONVERSATIONS_WRITE)
        if principal.agent_id is not None and not principal.is_admin:
            raise UserFailure.of("action", Code.FORBIDDEN, "Only an owner or admin runs conversation actions in bulk.")
    if action is BulkActionKind.DELETE:
        ctx.require(Permission.CONTACTS_DELETE)
    return principal


async def _target(ctx: Context, req: BulkRequest, errors: list[UserError]) -> dict[str, Any] | None:
    """The target as plain data: {"ids": [...]} or {"rules": {...}, "segment_id"?}."""
    ws = ctx.scope.workspace_id
    given = [
        name for name, v in (("segmentId", req.segment_gid), ("filter", req.rules), ("ids", req.ids)) if v is not None
    ]
    if len(given) != 1:
        errors.append(UserError(["target"], Code.INVALID, "Give exactly one of segmentId, filter and ids."))
        return None
    if req.ids is not None:
        return await _named(ws, req.ids, errors)
    if req.segment_gid is not None:
        from resolvers.segments import find_segment

        segment = await find_segment(ctx, req.segment_gid)
        if segment is None:
            errors.append(UserError(["target", "segmentId"], Code.NOT_FOUND, "No segment with this id."))
            return None
        rules, extra = segment.rules, {"segment_id": segment.id}
    else:
        rules, extra = req.rules or {}, {}
    try:
        rules_lang.parse(rules, await attribute_types(ws))
    except rules_lang.RuleError as exc:
        code = Code(exc.code) if exc.code in Code.__members__ else Code.INVALID
        errors.append(UserError(["target", "filter", *exc.path], code, str(exc)))
        return None
    return {"rules": rules, **extra}


async def _named(workspace_id: int, gids: list[str], errors: list[UserError]) -> dict[str, Any] | None:
    if not gids:
        errors.append(UserError(["target", "ids"], Code.REQUIRED, "Name at least one contact."))
        return None
    if len(gids) > MAX_IDS:
        errors.append(UserError(["target", "ids"], Code.TOO_LONG, f"At most {MAX_IDS} contacts by id."))
        return None
    ids: dict[int, int] = {}
    for i, gid in enumerate(gids):
        decoded = decode_global_id(gid)
        if decoded is None or decoded[0] != "Contact":
            errors.append(UserError(["target", "ids", str(i)], Code.INVALID, "Not a contact id."))
        else:
            ids.setdefault(decoded[1], i)
    if errors:
        return None
    found: set[int] = set()
    pks = list(ids)
    for start in range(0, len(pks), 1000):
        chunk = pks[start : start + 1000]
        found.update(await Contact.filter(workspace_id=workspace_id, id__in=chunk).values_list("id", flat=True))
    missing = [pk for pk in pks if pk not in found]
    for pk in missing[:20]:
        errors.append(UserError(["target", "ids", str(ids[pk])], Code.NOT_FOUND, "No contact with this id."))
    return None if missing else {"ids": sorted(pks)}


async def _args(ctx: Context, principal: Principal, req: BulkRequest, errors: list[UserError]) -> dict[str, Any]:
    """The action's arguments, validated as the single-contact mutations validate them."""
    ws = ctx.scope.workspace_id
    args: dict[str, Any] = {"actor_agent_id": principal.agent_id}
    if req.action in (BulkActionKind.TAG, BulkActionKind.UNTAG):
        tags = clean_tags(req.tags or [], errors)
        if not tags and req.tags is not None and not errors:
            errors.append(UserError(["tags"], Code.REQUIRED, "Name at least one tag."))
        elif req.tags is None:
            errors.append(UserError(["tags"], Code.REQUIRED, "Name the tags."))
        args["tags"] = tags
    elif req.action is BulkActionKind.SET_ATTRIBUTE:
        if not req.attribute_key:
            errors.append(UserError(["attribute", "key"], Code.REQUIRED, "Name the attribute."))
            return args
        found: list[UserError] = []
        clean = await validate_attributes(ws, [(req.attribute_key, req.attribute_value)], principal, found)
        errors.extend(UserError(["attribute", *e.field[2:]], e.code, e.message) for e in found if e.field)
        if not found:
            definition = await AttributeDefinition.get(workspace_id=ws, key=req.attribute_key)
            args.update(key=req.attribute_key, value=clean[req.attribute_key], crm_managed=definition.crm_managed)
    elif req.action is BulkActionKind.ASSIGN_CONVERSATIONS:
        decoded = decode_global_id(req.assignee_gid) if req.assignee_gid else None
        agent = await ctx.scope.get(Agent, decoded[1]) if decoded and decoded[0] == "Agent" else None
        if agent is None or agent.deactivated_at is not None:
            errors.append(UserError(["assigneeId"], Code.NOT_FOUND, "No active agent with this id."))
        else:
            args["assignee_id"] = agent.id
    elif req.action is BulkActionKind.DELETE:
        who = await ctx.scope.get(Agent, principal.agent_id) if principal.agent_id else None
        args.update(
            deleted_by_id=who.id if who else None,
            deleted_by_name=who.name if who else f"API key {principal.api_key_id}",
        )
    return args


async def start(ctx: Context, req: BulkRequest) -> BulkOutcome:
    principal = _authorise(ctx, req.action)
    ws = ctx.scope.workspace_id
    errors: list[UserError] = []
    target = await _target(ctx, req, errors)
    args = await _args(ctx, principal, req, errors)
    if errors or target is None:
        raise UserFailure(*errors)
    at = datetime.now(UTC)
    count = await count_target(ws, target, at)
    if req.dry_run:
        return BulkOutcome(count, None)
    if req.action is BulkActionKind.DELETE and req.confirm != count:
        raise UserFailure.of(
            "confirm", Code.CONFLICT, f"Deleting needs confirm equal to the number of contacts: {count}."
        )
    running = (
        await ctx.scope.all(Job)
        .filter(kind=JobKind.BULK_ACTION, status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .count()
    )
    if running >= MAX_RUNNING:
        raise UserFailure.of(
            "action", Code.NOT_ALLOWED, f"At most {MAX_RUNNING} bulk actions run at once: wait or cancel one."
        )
    async with atomic(ctx.outbox):
        job = await create_job(
            ws, JobKind.BULK_ACTION, principal=principal, params={"action": req.action.value}, total=count
        )
        action = await BulkAction.create(
            workspace_id=ws, job_id=job.id, action=req.action, target=target, args=args, total=count, created_at=at
        )
        pool = ctx.jobs
        ctx.outbox.after_commit(lambda: _queue(pool, action.id, job.id))
    return BulkOutcome(count, action)


async def _queue(pool: Any, action_id: int, job_id: int) -> None:
    await enqueue(pool, "run_bulk_action", action_id, job_id=arq_job_id(job_id))


async def list_actions(ctx: Context, *, first: int | None, after: str | None) -> Page[BulkAction]:
    ctx.require(Permission.CONTACTS_WRITE)
    return await paginate(ctx.scope.all(BulkAction), NEWEST_FIRST, first=first, after=after)


async def get_action(ctx: Context, gid: str) -> BulkAction | None:
    """A bulk action of the caller's workspace, for a caller with contacts:write."""
    if ctx.lacks(Permission.CONTACTS_WRITE) is not None:
        return None
    return await ctx.scope.by_global_id(gid, "BulkAction", BulkAction)


async def job_of(ctx: Context, action: BulkAction) -> Job | None:
    return await ctx.scope.get(Job, action.job_id)


async def cancel(ctx: Context, gid: str) -> BulkAction:
    ctx.require(Permission.CONTACTS_WRITE)
    action = await get_action(ctx, gid)
    job = await job_of(ctx, action) if action is not None else None
    if action is None or job is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No bulk action with this id.")
    if not await cancel_job(job, ctx.hub, reason="Cancelled: the contacts done so far stay done."):
        raise UserFailure.of("id", Code.NOT_ALLOWED, f"This bulk action has finished ({job.status.value}).")
    return action
