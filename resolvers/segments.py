"""Segments: saved rule trees, visibility and sharing, preview, members."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from core import keys
from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.permissions import Permission, Principal, PrincipalKind
from core.queue import enqueue
from domain import segments as rules_lang
from models.contacts import Contact
from models.segments import Segment, SegmentMembership, SegmentShare, SegmentVisibility
from models.workspaces import Agent, Team
from resolvers.pagination import Cursors, Order, Page, paginate
from services.job_records import cancel_job, create_job
from services.segments import attribute_types, matching_sql

BY_NAME = Order(("name", "id"), descending=False)
MAX_PREVIEW = 50

# The predefined shared segments every workspace starts with. Their thresholds are plain
# rules: owners and admins edit them like any shared segment.
PREDEFINED: list[tuple[str, str, str, dict[str, Any]]] = [
    ("all_users", "All users", "Everyone who has ever reached you.", {"match": "all", "conditions": []}),
    (
        "new_users",
        "New users",
        "First seen in the last 7 days.",
        {"match": "all", "conditions": [{"field": "first_seen_at", "operator": "within_last_days", "days": 7}]},
    ),
    (
        "recently_active",
        "Recently active",
        "Seen in the last 7 days.",
        {"match": "all", "conditions": [{"field": "last_seen_at", "operator": "within_last_days", "days": 7}]},
    ),
    (
        "lapsed",
        "Lapsed",
        "Last seen between 30 and 90 days ago.",
        {
            "match": "all",
            "conditions": [
                {"field": "last_seen_at", "operator": "more_than_days_ago", "days": 30},
                {"field": "last_seen_at", "operator": "within_last_days", "days": 90},
            ],
        },
    ),
    (
        "inactive",
        "Inactive",
        "Not seen for more than 90 days.",
        {"match": "all", "conditions": [{"field": "last_seen_at", "operator": "more_than_days_ago", "days": 90}]},
    ),
]


async def create_predefined(workspace_id: int) -> None:
    await Segment.bulk_create(
        [
            Segment(
                workspace_id=workspace_id,
                name=name,
                description=description,
                rules=rules,
                visibility=SegmentVisibility.EVERYONE,
                predefined_key=key,
            )
            for key, name, description, rules in PREDEFINED
        ]
    )


# -- visibility ------------------------------------------------------------------------------


async def _my_team_ids(agent_id: int) -> list[int]:
    return list(await Team.filter(members__id=agent_id).values_list("id", flat=True))


async def visible_filter(principal: Principal) -> Q:
    """Which segments the principal may see: everyone's, its own personal ones, and the
    shared ones that name it or one of its teams (owners and admins: every shared one)."""
    everyone = Q(visibility=SegmentVisibility.EVERYONE)
    if principal.kind is not PrincipalKind.AGENT:
        return everyone
    own = Q(visibility=SegmentVisibility.PERSONAL, owner_id=principal.agent_id)
    if principal.is_admin:
        return everyone | own | Q(visibility=SegmentVisibility.SHARED)
    teams = await _my_team_ids(principal.agent_id or 0)
    shared_ids = SegmentShare.filter(Q(agent_id=principal.agent_id) | Q(team_id__in=teams or [0])).values("segment_id")
    return everyone | own | Q(visibility=SegmentVisibility.SHARED, id__in=Subquery(shared_ids))


def can_edit(principal: Principal, segment: Segment) -> bool:
    if segment.visibility is SegmentVisibility.PERSONAL:
        return principal.kind is PrincipalKind.AGENT and segment.owner_id == principal.agent_id
    return principal.is_admin


async def get_visible(ctx: Context, gid: str, field: str = "id") -> Segment:
    principal = ctx.require(Permission.CONTACTS_READ)
    segment = await ctx.scope.by_global_id(gid, "Segment", Segment)
    if (
        segment is None
        or not await ctx.scope.all(Segment).filter(await visible_filter(principal), id=segment.id).exists()
    ):
        raise UserFailure.of(field, Code.NOT_FOUND, "No segment with this id.")
    return segment


async def segment_by_id(ctx: Context, pk: int | None) -> Segment | None:
    """The segment with this id in the caller's workspace, else None: for a field of a
    segment already shown."""
    return await ctx.scope.get(Segment, pk)


async def find_segment(ctx: Context, gid: str) -> Segment | None:
    try:
        return await get_visible(ctx, gid)
    except UserFailure:
        return None


# -- reading ---------------------------------------------------------------------------------


async def list_segments(ctx: Context, *, search: str | None, first: int | None, after: str | None) -> Page[Segment]:
    principal = ctx.require(Permission.CONTACTS_READ)
    query = ctx.scope.all(Segment).filter(await visible_filter(principal))
    if search and search.strip():
        query = query.filter(name__icontains=search.strip()[:120])
    return await paginate(query, BY_NAME, first=first, after=after, default_size=50)


async def shares(segment_id: int) -> tuple[list[int], list[int]]:
    rows = await SegmentShare.filter(segment_id=segment_id).values_list("team_id", "agent_id")
    return sorted(t for t, _ in rows if t), sorted(a for _, a in rows if a)


# A segment this small is paged from its member ids given as literals: the planner then
# fetches them by primary key and sorts a handful of rows, whatever the statistics say
# (with a subquery it may walk every contact by last-seen time, expecting many members).
SMALL_SEGMENT = 1000


async def members_query(ctx: Context, segment: Segment) -> Any:
    """Contacts in the segment's materialised membership, as of its last refresh."""
    if segment.member_count <= SMALL_SEGMENT:
        ids = (
            await SegmentMembership.filter(segment_id=segment.id)
            .limit(SMALL_SEGMENT + 1)
            .values_list("contact_id", flat=True)
        )
        if len(ids) <= SMALL_SEGMENT:
            return ctx.scope.all(Contact).filter(id__in=list(ids) or [-1])
    members = SegmentMembership.filter(segment_id=segment.id).values("contact_id")
    return ctx.scope.all(Contact).filter(id__in=Subquery(members))


# Segment.contacts: the membership paged on its own index (segment_id, last_seen_at,
# contact_id), by the last-seen time each member had at the refresh that last saw it. A
# page is read from the index alone, whatever the segment's size and wherever its members
# sit in the contacts' last-seen order (walking the contacts and probing the membership
# took 228 ms to 1.2 s for a segment of the least recently seen: see BENCHMARKS.md).
MEMBER_ORDER = Order(("last_seen_at", "contact_id"), descending=True)


async def list_members(ctx: Context, segment: Segment, *, first: int | None, after: str | None) -> Page[Contact]:
    """The segment's members as of its last refresh, most recently seen first."""
    ctx.require(Permission.CONTACTS_READ)
    members = SegmentMembership.filter(workspace_id=ctx.scope.workspace_id, segment_id=segment.id)
    page = await paginate(members, MEMBER_ORDER, first=first, after=after, values=("contact_id",))
    rows: list[dict[str, Any]] = page.items
    ids = [row["contact_id"] for row in rows]
    found = {c.id: c for c in await ctx.scope.all(Contact).filter(id__in=ids)} if ids else {}
    if len(found) == len(rows):
        return replace(page, items=[found[i] for i in ids])
    # A contact deleted between the two reads (its membership went with it) leaves the page.
    kept = [row for row in rows if row["contact_id"] in found]
    return replace(
        page,
        items=[found[row["contact_id"]] for row in kept],
        cursors=Cursors([[row[c] for c in MEMBER_ORDER.columns] for row in kept]),
    )


# -- rules -----------------------------------------------------------------------------------


async def parse_rules(workspace_id: int, rules: dict[str, Any], path: str = "rules") -> rules_lang.Group:
    try:
        return rules_lang.parse(rules, await attribute_types(workspace_id))
    except rules_lang.RuleError as exc:
        code = Code(exc.code) if exc.code in Code.__members__ else Code.INVALID
        raise UserFailure(UserError([path, *exc.path], code, str(exc))) from None


async def _matching(ctx: Context, rules: dict[str, Any]) -> tuple[str, list[Any]]:
    ctx.require(Permission.CONTACTS_READ)
    workspace_id = ctx.scope.workspace_id
    group = await parse_rules(workspace_id, rules)
    return matching_sql(group, workspace_id, now=datetime.now(UTC))


async def count_matching(ctx: Context, rules: dict[str, Any]) -> int:
    """How many contacts the rules match right now, counted in the database."""
    where, params = await _matching(ctx, rules)
    rows = await connections.get("default").execute_query_dict(
        f"SELECT count(*) AS n FROM contacts c WHERE {where}",  # noqa: S608
        params,
    )
    return int(rows[0]["n"])


async def preview(ctx: Context, rules: dict[str, Any], first: int) -> tuple[int, list[Contact]]:
    """The count and first contacts a rule tree matches now, without saving it."""
    if not 0 <= first <= MAX_PREVIEW:
        raise UserFailure.of("first", Code.INVALID, f"first is 0 to {MAX_PREVIEW}.")
    where, params = await _matching(ctx, rules)
    rows = await connections.get("default").execute_query_dict(
        f"SELECT c.id FROM contacts c WHERE {where} ORDER BY c.last_seen_at DESC, c.id DESC LIMIT {int(first)}",  # noqa: S608
        params,
    )
    ids = [r["id"] for r in rows]
    by_id = {c.id: c for c in await Contact.filter(id__in=ids)} if ids else {}
    return await count_matching(ctx, rules), [by_id[i] for i in ids if i in by_id]


# -- writing ---------------------------------------------------------------------------------


async def _validate(
    ctx: Context, principal: Principal, values: dict[str, Any], errors: list[UserError], segment: Segment | None
) -> tuple[list[int], list[int]] | None:
    if "name" in values:
        name = (values["name"] or "").strip()
        if not name or len(name) > 120:
            errors.append(UserError(["name"], Code.INVALID, "name has 1 to 120 characters."))
        values["name"] = name
    if "description" in values:
        description = (values["description"] or "").strip()
        if len(description) > 500:
            errors.append(UserError(["description"], Code.TOO_LONG, "description has at most 500 characters."))
        values["description"] = description
    if "rules" in values:
        try:
            await parse_rules(ctx.scope.workspace_id, values["rules"])
        except UserFailure as failure:
            errors.extend(failure.errors)
    visibility = values.get("visibility") or (segment.visibility if segment else SegmentVisibility.PERSONAL)
    if visibility is not SegmentVisibility.PERSONAL and not principal.is_admin:
        errors.append(UserError(["visibility"], Code.FORBIDDEN, "Only owners and admins share segments."))
    if "team_ids" not in values and "agent_ids" not in values:
        return None
    team_ids = await resolve_ids(ctx, values.get("team_ids") or [], "Team", Team, "teamIds", errors)
    agent_ids = await resolve_ids(ctx, values.get("agent_ids") or [], "Agent", Agent, "agentIds", errors)
    if (team_ids or agent_ids) and visibility is not SegmentVisibility.SHARED:
        errors.append(UserError(["visibility"], Code.INVALID, "Teams and agents are named only for SHARED segments."))
    return team_ids, agent_ids


async def resolve_ids(
    ctx: Context, gids: list[str], type_name: str, model: type[Team] | type[Agent], field: str, errors: list[UserError]
) -> list[int]:
    """Primary keys of the workspace's rows behind global ids; a NOT_FOUND error per miss."""
    found: list[int] = []
    for i, gid in enumerate(gids[:200]):
        row = await ctx.scope.by_global_id(gid, type_name, model)
        if row is None:
            errors.append(UserError([field, str(i)], Code.NOT_FOUND, f"No {type_name.lower()} with this id."))
        else:
            found.append(row.pk)
    return found


async def _save_shares(segment: Segment, shared: tuple[list[int], list[int]] | None) -> None:
    if segment.visibility is not SegmentVisibility.SHARED:
        await SegmentShare.filter(segment_id=segment.id).delete()
        return
    if shared is None:
        return
    await SegmentShare.filter(segment_id=segment.id).delete()
    team_ids, agent_ids = shared
    await SegmentShare.bulk_create(
        [SegmentShare(segment_id=segment.id, team_id=t) for t in team_ids]
        + [SegmentShare(segment_id=segment.id, agent_id=a) for a in agent_ids]
    )


async def schedule_refresh(ctx: Context, segment: Segment) -> None:
    """Queue a full refresh, with a job record (kind SEGMENT_REFRESH) that follows it."""
    from models.job_records import JobKind

    job = await create_job(
        segment.workspace_id, JobKind.SEGMENT_REFRESH, principal=ctx.principal, params={"segment_id": segment.id}
    )
    if not await enqueue(
        ctx.jobs, "refresh_segment", segment.id, job.id, job_id=f"{keys.arq_queue()}:segment:{segment.id}"
    ):
        # A refresh already queued reads the rules when it runs: it does this one's work.
        await cancel_job(job, ctx.hub, reason="Merged into a refresh of this segment that was already queued.")


async def create_segment(ctx: Context, values: dict[str, Any]) -> Segment:
    principal = ctx.require_agent()
    ctx.require(Permission.CONTACTS_READ)
    values.setdefault("rules", {"match": "all", "conditions": []})
    errors: list[UserError] = []
    shared = await _validate(ctx, principal, values, errors, None)
    if errors:
        raise UserFailure(*errors)
    async with in_transaction():
        segment = await Segment.create(
            workspace_id=ctx.scope.workspace_id,
            name=values["name"],
            description=values.get("description") or "",
            owner_id=principal.agent_id,
            visibility=values.get("visibility") or SegmentVisibility.PERSONAL,
            rules=values["rules"],
        )
        await _save_shares(segment, shared)
    await schedule_refresh(ctx, segment)
    return segment


async def update_segment(ctx: Context, gid: str, values: dict[str, Any]) -> Segment:
    principal = ctx.require_agent()
    segment = await get_visible(ctx, gid)
    if not can_edit(principal, segment):
        raise UserFailure.of(
            "id", Code.FORBIDDEN, "Only owners and admins edit shared segments; personal ones only their owner."
        )
    errors: list[UserError] = []
    shared = await _validate(ctx, principal, values, errors, segment)
    if errors:
        raise UserFailure(*errors)
    rules_changed = "rules" in values and values["rules"] != segment.rules
    async with in_transaction():
        for name in ("name", "description", "visibility", "rules"):
            if values.get(name) is not None:
                setattr(segment, name, values[name])
        await segment.save()
        await _save_shares(segment, shared)
    if rules_changed:
        await schedule_refresh(ctx, segment)
    return segment


async def delete_segment(ctx: Context, gid: str) -> str:
    principal = ctx.require_agent()
    segment = await get_visible(ctx, gid)
    if not can_edit(principal, segment):
        raise UserFailure.of(
            "id", Code.FORBIDDEN, "Only owners and admins delete shared segments; personal ones only their owner."
        )
    if segment.predefined_key:
        raise UserFailure.of("id", Code.READ_ONLY, "Predefined segments cannot be deleted; edit their rules instead.")
    await segment.delete()
    return gid
