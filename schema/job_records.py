"""Job records: `job(id)`, `jobs`, `cancelJob`, and the `jobProgress` subscription."""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.types import Info

from core import keys
from core.context import Context
from core.errors import Code, PublicError
from core.permissions import Permission
from models import job_records as m
from resolvers import job_records as r
from resolvers.contacts import load_agent
from resolvers.exports import download_url
from runtime.subscriptions import listen, still_allowed
from schema.common import JSON, Connection, UserError, mutate, to_connection
from schema.workspaces import Agent, ApiKey

JobKind = strawberry.enum(m.JobKind, name="JobKind")
JobStatus = strawberry.enum(m.JobStatus, name="JobStatus")


@strawberry.type(description="A background job (export, segment refresh, webhook delivery, …) and how it is going.")
class Job(relay.Node):
    id: relay.NodeID[int]
    kind: JobKind  # type: ignore[valid-type]
    status: JobStatus  # type: ignore[valid-type]
    processed: int = strawberry.field(description="Items done so far (contacts exported, rows synced, …).")
    total: int | None = strawberry.field(description="Items to do, once the job has counted them.")
    result: JSON | None = strawberry.field(description="What a finished job reports, e.g. {rows, bytes} for exports.")
    error: str | None
    cursor: str = strawberry.field(description="Bumped by every change; jobProgress events carry it too.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    _row: strawberry.Private[m.Job]

    @strawberry.field(description="The agent who started it; null for the system or an API key.")
    async def started_by(self, info: Info[Context, None]) -> Agent | None:
        agent = await load_agent(info.context, self._row.agent_id)
        return Agent.from_model(agent) if agent else None

    @strawberry.field(description="The API key that started it (visible with workspace:manage).")
    async def started_by_api_key(self, info: Info[Context, None]) -> ApiKey | None:
        ctx = info.context
        if self._row.api_key_id is None or not ctx.require_principal().can(Permission.WORKSPACE_MANAGE):
            return None
        key = await r.api_key_by_id(ctx, self._row.api_key_id)
        return ApiKey.from_model(key) if key else None

    @strawberry.field(
        description="""Finished exports: a signed link to the file (CSV; a contact's data archive: JSON), valid
for a limited time (EXPORT_LINK_TTL_SECONDS). Anyone holding it may download the file; a request that also sends an
Authorization header must come from the export's workspace."""
    )
    def download_url(self) -> str | None:
        return download_url(self._row)

    @classmethod
    def from_model(cls, j: m.Job) -> Job:
        return cls(
            id=j.id,
            kind=j.kind,
            status=j.status,
            processed=j.processed,
            total=j.total,
            result=j.result,
            error=j.error,
            cursor=str(j.seq),
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
            _row=j,
        )


@strawberry.input
class CancelJobInput:
    id: relay.GlobalID


@strawberry.type
class JobPayload:
    job: Job | None = None
    user_errors: list[UserError]


@strawberry.type
class JobQuery:
    @strawberry.field(description="A job you may see (by its kind's permission), else null.")
    async def job(self, info: Info[Context, None], id: relay.GlobalID) -> Job | None:
        found = await r.get_job(info.context, str(id))
        return Job.from_model(found) if found else None

    @strawberry.field(description="Jobs of the kinds you may see, newest first.")
    async def jobs(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        kind: JobKind | None = None,
        status: JobStatus | None = None,  # type: ignore[valid-type]
    ) -> Connection[Job]:
        page = await r.list_jobs(info.context, kind=kind, status=status, first=first, after=after)
        return to_connection(page, Job.from_model)


@strawberry.type
class JobMutation:
    @strawberry.mutation(description="Stops a queued or running export; its partial file is removed.")
    async def cancel_job(self, info: Info[Context, None], input: CancelJobInput) -> JobPayload:
        return await mutate(JobPayload, r.cancel(info.context, str(input.id)), lambda j: {"job": Job.from_model(j)})


@strawberry.type
class JobSubscription:
    @strawberry.subscription(description="The job as it is now, then after each change, until it finishes.")
    async def job_progress(self, info: Info[Context, None], job_id: relay.GlobalID) -> AsyncGenerator[Job, None]:
        ctx = info.context
        job = await r.get_job(ctx, str(job_id))
        if job is None:
            raise PublicError("No job with this id.", Code.NOT_FOUND)
        too_slow = "This subscription fell too far behind and was closed; resubscribe."
        async with listen(ctx, keys.job_channel(job.workspace_id, job.id), too_slow=too_slow) as events:
            # Read after subscribing: a change made in between is both read and heard.
            current = await r.job_by_id(ctx, job.id)
            if current is None:
                return
            yield Job.from_model(current)
            seen = current.seq
            if current.status.finished:
                return
            async for event in events:
                if int(event["cursor"]) <= seen:
                    continue  # already delivered: the state read above included it
                # Authorisation again at send time: the principal may have lost access.
                await still_allowed(
                    ctx, lambda p, current=current: r.can_see_job(p, current), "You can no longer see this job."
                )
                status = m.JobStatus(event["status"])
                if status.finished:
                    # The final state in full (result, error), from the database.
                    final = await r.job_by_id(ctx, job.id)
                    if final is not None:
                        yield Job.from_model(final)
                    return
                # Progress as the event tells it: each one is delivered, none coalesced.
                current = copy.copy(current)
                current.status, current.processed, current.total = status, event["processed"], event["total"]
                current.seq = seen = int(event["cursor"])
                yield Job.from_model(current)
