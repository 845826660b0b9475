"""Segment refreshes queued by a rule change leave a job record that follows the run."""

from __future__ import annotations

from typing import Any

from jobs.segments import refresh_segment
from tests.conftest import Tenant, pk

CREATE = "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } userErrors { code } } }"
UPDATE = "mutation($i: UpdateSegmentInput!) { updateSegment(input: $i) { segment { id } userErrors { code } } }"
JOBS = """{ jobs(kind: SEGMENT_REFRESH) { edges { node { id status result error startedBy { id } } } } }"""


def city(name: str) -> dict[str, Any]:
    return {"match": "ALL", "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": name}}]}


async def test_a_rule_change_queues_a_recorded_refresh(app: Any, tenant: Tenant) -> None:
    await tenant.contact(name="Ada", city="Lyon")
    made = await tenant.api(CREATE, {"i": {"name": "Lyon", "rules": city("Lyon")}}, token=tenant.owner_token)
    segment = made["createSegment"]["segment"]["id"]
    [queued] = [e["node"] for e in (await tenant.api(JOBS, token=tenant.owner_token))["jobs"]["edges"]]
    assert queued["status"] == "QUEUED" and queued["startedBy"] is not None
    # While that refresh waits in the queue, another rule change merges into it.
    await tenant.api(UPDATE, {"i": {"id": segment, "rules": city("Paris")}}, token=tenant.owner_token)
    merged, first = [e["node"] for e in (await tenant.api(JOBS, token=tenant.owner_token))["jobs"]["edges"]]
    assert first["id"] == queued["id"]
    assert merged["status"] == "CANCELLED" and "Merged" in merged["error"]

    # What the worker does with the queued one (its arguments: the segment, the record).
    await refresh_segment({"hub": app.state.hub}, pk(segment), pk(queued["id"]))
    _, done = [e["node"] for e in (await tenant.api(JOBS, token=tenant.owner_token))["jobs"]["edges"]]
    assert done["status"] == "SUCCEEDED"
    assert done["result"]["members"] == 0  # the rules as they are when it runs: Paris
    # An agent with contacts:read follows refreshes too (not exports).
    _, agent = await tenant.agent("agent")
    assert len((await tenant.api(JOBS, token=agent))["jobs"]["edges"]) == 2
