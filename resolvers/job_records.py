"""Job records through the API: `job(id)`, `jobs`, `cancelJob`, and who may see which.

A principal sees a workspace's jobs of the kinds its permissions cover (VIEW_PERMISSION):
exports need contacts:export, webhook deliveries workspace:manage, and so on. Contact
sessions see none.
"""

from __future__ import annotations

from core.context import Context
from core.errors import Code, UserFailure, forbidden
from core.permissions import Permission, Principal, PrincipalKind
from models.job_records import Job, JobKind, JobStatus
from models.workspaces import ApiKey
from resolvers.pagination import Order, Page, paginate
from services.job_records import cancel_job

NEWEST_FIRST = Order(("id",), descending=True)

VIEW_PERMISSION: dict[JobKind, Permission] = {
    JobKind.EXPORT: Permission.CONTACTS_EXPORT,
    JobKind.ATTRIBUTE_REPORT: Permission.CONTACTS_EXPORT,
    JobKind.SEGMENT_REFRESH: Permission.CONTACTS_READ,
    JobKind.WEBHOOK_DELIVERY: Permission.WEBHOOKS_MANAGE,
    JobKind.CAMPAIGN: Permission.CONVERSATIONS_WRITE,
    JobKind.SYNC: Permission.CONTACTS_WRITE,
    JobKind.BULK_ACTION: Permission.CONTACTS_WRITE,
    JobKind.CONTACT_DATA_EXPORT: Permission.CONTACTS_EXPORT,
}
# Kinds whose tasks stop when cancelled (they write progress through a JobTracker).
CANCELLABLE = frozenset({JobKind.EXPORT, JobKind.ATTRIBUTE_REPORT, JobKind.BULK_ACTION})


def visible_kinds(principal: Principal) -> list[JobKind]:
    if principal.kind is PrincipalKind.CONTACT:
        return []
    return [kind for kind in JobKind if principal.can(VIEW_PERMISSION.get(kind, Permission.WORKSPACE_MANAGE))]


def can_see_job(principal: Principal, job: Job) -> bool:
    return job.kind in visible_kinds(principal)


async def get_job(ctx: Context, gid: str) -> Job | None:
    """A job of the caller's workspace that the caller may see, else None."""
    principal = ctx.require_principal()
    job = await ctx.scope.by_global_id(gid, "Job", Job)
    return job if job is not None and can_see_job(principal, job) else None


async def job_by_id(ctx: Context, pk: int | None) -> Job | None:
    """The job record with this id in the caller's workspace (as it is now), else None."""
    return await ctx.scope.get(Job, pk)


async def api_key_by_id(ctx: Context, pk: int | None) -> ApiKey | None:
    """The API key with this id in the caller's workspace, else None."""
    return await ctx.scope.get(ApiKey, pk)


async def list_jobs(
    ctx: Context, *, kind: JobKind | None, status: JobStatus | None, first: int | None, after: str | None
) -> Page[Job]:
    principal = ctx.require_principal()
    if principal.kind is PrincipalKind.CONTACT:
        raise forbidden("Contact sessions have no jobs.")
    kinds = visible_kinds(principal)
    query = ctx.scope.all(Job).filter(kind__in=[k for k in kinds if kind is None or k is kind])
    if status is not None:
        query = query.filter(status=status)
    return await paginate(query, NEWEST_FIRST, first=first, after=after)


async def cancel(ctx: Context, gid: str) -> Job:
    job = await get_job(ctx, gid)
    if job is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No job with this id.")
    if job.kind not in CANCELLABLE:
        raise UserFailure.of("id", Code.NOT_ALLOWED, f"{job.kind.value} jobs cannot be cancelled.")
    if not await cancel_job(job, ctx.hub):
        raise UserFailure.of("id", Code.NOT_ALLOWED, f"This job has finished ({job.status.value}).")
    return job
