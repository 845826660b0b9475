"""Every kind of job leaves a record (issue 29, item 6): each syncContacts batch (kind SYNC,
started by its API key, none for a replay), the periodic refresh of every segment, and the
debounced refresh of changed contacts (kind SEGMENT_REFRESH), all seen through `jobs`."""

from __future__ import annotations

from typing import Any

from jobs.segments import refresh_all_segments, refresh_dirty_contacts
from models.job_records import Job, JobKind, JobStatus
from models.segments import Segment
from tests.conftest import Tenant, pk

SYNC = """mutation($i: SyncContactsInput!) { syncContacts(input: $i) { replayed created updated unchanged failed
  userErrors { field code message } } }"""
JOBS = """query($k: JobKind) { jobs(first: 50, kind: $k) { totalCount edges { node {
  id kind status processed total result startedBy { id } startedByApiKey { id } } } } }"""
CREATE_SEGMENT = (
    """mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { code } } }"""
)


async def jobs(tenant: Tenant, kind: str) -> list[dict[str, Any]]:
    found = await tenant.api(JOBS, {"k": kind}, token=tenant.owner_token)
    return [edge["node"] for edge in found["jobs"]["edges"]]


async def test_each_sync_batch_leaves_a_sync_job_and_a_replay_none(tenant: Tenant) -> None:
    rows = [{"externalId": "crm-1", "name": "Grace"}, {"externalId": "crm-2", "email": "bad address"}]
    variables = {"i": {"contacts": rows, "idempotencyKey": "batch-1"}}
    first = (await tenant.api(SYNC, variables, token=tenant.api_key))["syncContacts"]
    assert (first["created"], first["failed"]) == (1, 1)
    [record] = await jobs(tenant, "SYNC")
    assert record["kind"] == "SYNC" and record["status"] == "SUCCEEDED"
    assert record["processed"] == 2 and record["total"] == 2
    assert record["result"] == {"created": 1, "updated": 0, "unchanged": 0, "error": 1}
    assert record["startedBy"] is None and record["startedByApiKey"] is not None
    # The same call again is a replay: no second record.
    assert (await tenant.api(SYNC, variables, token=tenant.api_key))["syncContacts"]["replayed"] is True
    assert len(await jobs(tenant, "SYNC")) == 1
    await tenant.api(
        SYNC, {"i": {"contacts": [{"externalId": "crm-1", "city": "Arlington"}]}}, token=tenant.owner_token
    )
    newest = (await jobs(tenant, "SYNC"))[0]
    assert newest["result"]["updated"] == 1 and newest["startedBy"]["id"] is not None


async def test_every_kind_of_segment_refresh_leaves_a_record(app: Any, tenant: Tenant) -> None:
    made = (
        await tenant.api(
            CREATE_SEGMENT,
            {
                "i": {
                    "name": "Pros",
                    "rules": {
                        "match": "ALL",
                        "conditions": [{"field": "tag", "operator": "EQUALS", "value": {"text": "pro"}}],
                    },
                }
            },
            token=tenant.owner_token,
        )
    )["createSegment"]["segment"]
    segment_id = pk(made["id"])
    # createSegment's own refresh already has its record (queued: no worker runs it here).
    before = await Job.filter(workspace_id=tenant.workspace.id, kind=JobKind.SEGMENT_REFRESH).count()

    # The periodic refresh of every segment: one record per segment refreshed.
    ctx = {"redis": app.state.jobs, "hub": app.state.hub}
    assert await refresh_all_segments(ctx) >= 1
    segments = await Segment.filter(workspace_id=tenant.workspace.id).count()  # the predefined ones too
    scheduled = await Job.filter(workspace_id=tenant.workspace.id, kind=JobKind.SEGMENT_REFRESH).order_by("-id")
    assert len(scheduled) == before + segments
    assert {job.status for job in scheduled[:segments]} == {JobStatus.SUCCEEDED}
    assert {"segment_id": segment_id, "trigger": "schedule"} in [job.params for job in scheduled[:segments]]

    # The debounced refresh of changed contacts: one record per run that handled any.
    await tenant.contact(name="Pat", tags=["pro"])
    assert await refresh_dirty_contacts(ctx, tenant.workspace.id) == 1
    latest = await Job.filter(workspace_id=tenant.workspace.id, kind=JobKind.SEGMENT_REFRESH).order_by("-id").first()
    assert latest is not None and latest.status is JobStatus.SUCCEEDED
    assert latest.params == {"trigger": "changed_contacts"}
    assert latest.result == {"contacts": 1, "segments": segments} and latest.processed == 1
    # A run with nothing to do records nothing.
    count = await Job.filter(workspace_id=tenant.workspace.id, kind=JobKind.SEGMENT_REFRESH).count()
    assert await refresh_dirty_contacts(ctx, tenant.workspace.id) == 0
    assert await Job.filter(workspace_id=tenant.workspace.id, kind=JobKind.SEGMENT_REFRESH).count() == count
    shown = await jobs(tenant, "SEGMENT_REFRESH")
    assert len(shown) == count and shown[0]["result"] == {"contacts": 1, "segments": segments}
