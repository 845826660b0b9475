"""Job records, written from the code that queues a job and from the arq task that runs it.
Every write is one UPDATE that commits on its own, then one event on
`keys.job_channel(workspace_id, job_id)`, which `jobProgress` subscribers hear.

Queue side (a resolver), inside or outside a transaction:

    job = await create_job(workspace_id, JobKind.EXPORT, principal=ctx.principal,
                           params={"columns": [...]})
    await enqueue(ctx.jobs, "export_contacts", job.id, job_id=arq_job_id(job.id))

Task side (an arq task; `ctx["hub"]` is the worker's Hub, None publishes nothing). Call
these outside any transaction: each commits its write before it publishes.

    tracker = await JobTracker.begin(job_id, ctx.get("hub"), total=n)
    if tracker is None:
        return                          # gone, cancelled or already finished: a retry no-op
    try:
        for batch in ...:
            await tracker.progress(done)  # throttled: at most one write per PROGRESS_INTERVAL
    except JobCancelled:
        return                          # cancelJob won: stop, the record already says so
    except Exception as exc:
        await tracker.fail(f"{type(exc).__name__}: {exc}")
        raise
    await tracker.succeed({"rows": done})

Between attempts of a job that arq retries, `await tracker.retry_later(error)` puts the
record back to QUEUED with the error kept; the next attempt's `begin` counts it.

Events: {"type": "job", "jobId", "status", "processed", "total", "cursor"}, where cursor
is the record's `seq` (bumped by every write), so a client that reconnects compares it
with `Job.cursor` from a query.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from tortoise.expressions import F

from core import keys
from core.permissions import Principal, PrincipalKind
from models.job_records import Job, JobKind, JobStatus

log = logging.getLogger("parley.jobs.tracking")

# Seconds between two progress writes of one job: bounded database and Redis traffic
# whatever the job's batch size.
PROGRESS_INTERVAL = 0.5
MAX_ERROR = 2000


class Publisher(Protocol):
    async def publish(self, events: Any) -> None: ...


class JobCancelled(Exception):
    """The record is no longer RUNNING (cancelJob): the task should stop."""


def arq_job_id(job_id: int) -> str:
    """The arq job id of a record's task: arq refuses a second task under it."""
    return f"{keys.arq_queue()}:job:{job_id}"


async def create_job(
    workspace_id: int,
    kind: JobKind,
    *,
    principal: Principal | None = None,
    params: dict[str, Any] | None = None,
    total: int | None = None,
) -> Job:
    """A QUEUED record, started by the principal's agent or API key (None: the system)."""
    return await Job.create(
        workspace_id=workspace_id,
        kind=kind,
        status=JobStatus.QUEUED,
        params=params or {},
        total=total,
        **_starter(principal),
    )


def _starter(principal: Principal | None) -> dict[str, int | None]:
    """Who started a job: the principal's agent or API key, or neither (the system)."""
    return {
        "agent_id": principal.agent_id if principal and principal.kind is PrincipalKind.AGENT else None,
        "api_key_id": principal.api_key_id if principal and principal.kind is PrincipalKind.API_KEY else None,
    }


async def record_finished(
    workspace_id: int,
    kind: JobKind,
    *,
    started_at: datetime,
    processed: int,
    result: dict[str, Any],
    principal: Principal | None = None,
    params: dict[str, Any] | None = None,
) -> Job:
    """A SUCCEEDED record of work already done (a sync batch, a refresh of changed
    contacts), written in the caller's transaction when it has one: no task to follow,
    so nothing is published."""
    return await Job.create(
        workspace_id=workspace_id,
        kind=kind,
        status=JobStatus.SUCCEEDED,
        params=params or {},
        processed=processed,
        total=processed,
        result=result,
        **_starter(principal),
        attempts=1,
        started_at=started_at,
        finished_at=datetime.now(UTC),
    )


def event(job: Job) -> dict[str, Any]:
    return {
        "type": "job",
        "jobId": job.id,
        "status": job.status.value,
        "processed": job.processed,
        "total": job.total,
        "cursor": str(job.seq),
    }


async def publish(hub: Publisher | None, job: Job) -> None:
    if hub is None:
        return
    try:
        await hub.publish([(keys.job_channel(job.workspace_id, job.id), event(job))])
    except Exception:
        # The write is committed; a subscriber that missed it catches up with a query.
        log.exception("could not publish progress of job %s", job.id)


async def cancel_job(job: Job, hub: Publisher | None, *, reason: str | None = None) -> bool:
    """Cancel a QUEUED or RUNNING job (`reason` becomes its error); False if it had
    already finished. A running task notices at its next progress write (JobCancelled)."""
    now = datetime.now(UTC)
    changed = await Job.filter(id=job.id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.CANCELLED, finished_at=now, seq=F("seq") + 1, error=reason
    )
    await job.refresh_from_db()
    if changed:
        await publish(hub, job)
    return bool(changed)


class JobTracker:
    def __init__(self, job: Job, hub: Publisher | None, *, interval: float = PROGRESS_INTERVAL) -> None:
        self.job = job
        self.hub = hub
        self.interval = interval
        self._last_write = time.monotonic()

    @classmethod
    async def begin(
        cls, job_id: int, hub: Publisher | None, *, total: int | None = None, interval: float = PROGRESS_INTERVAL
    ) -> JobTracker | None:
        """Mark the job RUNNING (from QUEUED, or RUNNING again when arq re-runs a job whose
        worker died); None when it is gone or already finished."""
        now = datetime.now(UTC)
        changed = await Job.filter(id=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.RUNNING,
            started_at=now,
            processed=0,
            total=total,
            attempts=F("attempts") + 1,
            seq=F("seq") + 1,
        )
        if not changed:
            return None
        job = await Job.get(id=job_id)
        await publish(hub, job)
        return cls(job, hub, interval=interval)

    async def progress(self, processed: int, *, total: int | None = None, force: bool = False) -> None:
        """Record progress; written and published at most once per `interval` unless
        `force`. Raises JobCancelled when the job was cancelled meanwhile."""
        self.job.processed = processed
        if total is not None:
            self.job.total = total
        if not force and time.monotonic() - self._last_write < self.interval:
            return
        await self._write(JobStatus.RUNNING, processed=processed, total=self.job.total)

    async def succeed(self, result: dict[str, Any] | None = None, *, using: Any = None) -> None:
        """Mark the job SUCCEEDED. With `using` (an open transaction), the write joins it
        and nothing is published: call `announce()` once it has committed."""
        processed = self.job.processed if self.job.total is None else max(self.job.processed, self.job.total)
        await self._write(
            JobStatus.SUCCEEDED,
            processed=processed,
            total=self.job.total,
            result=result,
            error=None,
            finished_at=datetime.now(UTC),
            using=using,
        )

    async def announce(self) -> None:
        """Publish the record as last written (after a write that joined a transaction)."""
        await publish(self.hub, self.job)

    async def fail(self, error: str) -> None:
        await self._write(JobStatus.FAILED, error=error[:MAX_ERROR], finished_at=datetime.now(UTC))

    async def retry_later(self, error: str) -> None:
        await self._write(JobStatus.QUEUED, error=error[:MAX_ERROR])

    async def _write(self, status: JobStatus, *, using: Any = None, **values: Any) -> None:
        changed = (
            await Job.filter(id=self.job.id, status=JobStatus.RUNNING)
            .using_db(using)
            .update(status=status, seq=F("seq") + 1, **values)
        )
        self._last_write = time.monotonic()
        if not changed:
            raise JobCancelled(self.job.id)
        self.job.status = status
        self.job.seq += 1
        for name, value in values.items():
            setattr(self.job, name, value)
        if using is None:
            await publish(self.hub, self.job)
