"""Live membership end to end: a contact changes, the worker's debounced refresh finds the
join (and later the leave), and a WebSocket subscriber on a real server hears both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from arq.constants import in_progress_key_prefix, job_key_prefix

from core import keys
from jobs.segments import refresh_dirty_contacts
from services.segments import schedule_dirty_refresh
from tests.conftest import pk, start_server, start_worker, stop_process
from tests.realtime.wsclient import GraphQLWs

CREATE_SEGMENT = (
    "mutation($input: CreateSegmentInput!) { createSegment(input: $input) { segment { id } userErrors { message } } }"
)
CREATE_CONTACT = "mutation($input: CreateContactInput!) { createContact(input: $input) { contact { id } } }"
SUBSCRIBE = """subscription($id: ID!) { segmentMembershipChanged(segmentId: $id) {
  cursor segmentId joinedContactIds leftContactIds } }"""


async def wait_for_subscribers(http: httpx.AsyncClient, count: int) -> None:
    """The server's hub holds the subscription (so no event can be missed)."""
    for _ in range(200):
        metrics = (await http.get("/metrics")).text
        if f"parley_hub_subscribers {count}" in metrics:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no subscriber registered: {metrics}")


def owner_api(http: httpx.AsyncClient, tenant: Any) -> Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]:
    """The owner's requests to a live server: the data, or the test fails on errors."""

    async def gql(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = (
            await http.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {tenant.owner_token}"},
            )
        ).json()
        assert not body.get("errors"), body
        return body["data"]  # type: ignore[no-any-return]

    return gql


async def test_join_and_leave_reach_a_subscriber(tenant: Any, tmp_path: Path) -> None:
    server = start_server(tmp_path)
    worker = start_worker(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            gql = owner_api(http, tenant)

            made = await gql(
                "mutation($input: CreateSegmentInput!) { createSegment(input: $input) { "
                "segment { id } userErrors { message } } }",
                {
                    "input": {
                        "name": "Pro plan",
                        "rules": {
                            "match": "ALL",
                            "conditions": [{"field": "tag", "operator": "EQUALS", "value": {"text": "pro"}}],
                        },
                    }
                },
            )
            segment_id = made["createSegment"]["segment"]["id"]
            async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
                sub = await ws.subscribe(SUBSCRIBE, {"id": segment_id})
                await wait_for_subscribers(http, 1)
                created = await gql(
                    "mutation($input: CreateContactInput!) { createContact(input: $input) { contact { id } } }",
                    {"input": {"name": "Joiner", "tags": ["pro"]}},
                )
                contact_id = created["createContact"]["contact"]["id"]
                joined = (await sub.next_data(timeout=20))["segmentMembershipChanged"]
                assert joined["joinedContactIds"] == [contact_id]
                assert joined["leftContactIds"] == []
                await gql(
                    "mutation($input: TagContactInput!) { untagContact(input: $input) { contact { tags } } }",
                    {"input": {"contactId": contact_id, "tags": ["pro"]}},
                )
                left = (await sub.next_data(timeout=20))["segmentMembershipChanged"]
                assert left["leftContactIds"] == [contact_id]
                assert int(left["cursor"]) > int(joined["cursor"])
            members = await gql("query($id: ID!) { segment(id: $id) { memberCount } }", {"id": segment_id})
            assert members["segment"]["memberCount"] == 0
    finally:
        stop_process(worker)
        server.stop()


async def test_an_agent_who_can_no_longer_see_the_segment_is_refused_at_the_next_event(
    tenant: Any, tmp_path: Path
) -> None:
    """The subscription checks again at each event (runtime/subscriptions.py, still_allowed):
    the owner makes the segment personal, and the agent's next event is a FORBIDDEN error."""
    _, agent_token = await tenant.agent(role="agent")
    server = start_server(tmp_path)
    worker = start_worker(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            gql = owner_api(http, tenant)

            made = await gql(
                CREATE_SEGMENT,
                {
                    "input": {
                        "name": "VIPs",
                        "visibility": "EVERYONE",
                        "rules": {
                            "match": "ALL",
                            "conditions": [{"field": "tag", "operator": "EQUALS", "value": {"text": "vip"}}],
                        },
                    }
                },
            )
            segment_id = made["createSegment"]["segment"]["id"]
            async with GraphQLWs.open(server.ws_url, agent_token) as ws:
                sub = await ws.subscribe(SUBSCRIBE, {"id": segment_id})
                await wait_for_subscribers(http, 1)
                await gql(CREATE_CONTACT, {"input": {"name": "First", "tags": ["vip"]}})
                assert (await sub.next_data(timeout=20))["segmentMembershipChanged"]["joinedContactIds"]

                hidden = await gql(
                    "mutation($input: UpdateSegmentInput!) { updateSegment(input: $input) { userErrors { message } } }",
                    {"input": {"id": segment_id, "visibility": "PERSONAL"}},
                )
                assert hidden["updateSegment"]["userErrors"] == []
                await gql(CREATE_CONTACT, {"input": {"name": "Second", "tags": ["vip"]}})
                refused = await sub.receive(timeout=20)
                assert refused["type"] == "next", refused
                [error] = refused["payload"]["errors"]
                assert error["extensions"]["code"] == "FORBIDDEN"
                assert error["message"] == "You can no longer see this segment."
                assert refused["payload"].get("data") is None
    finally:
        stop_process(worker)
        server.stop()


async def test_a_change_made_while_the_debounced_refresh_runs_is_refreshed_after_it(app: Any, tenant: Any) -> None:
    """A worker has taken the queued refresh and read the changed contacts when a second
    contact changes: that change gets a run of its own (it used to wait for the next change,
    as arq refused a second job under the running job's id)."""
    pool = app.state.jobs
    await pool.delete(keys.arq_queue())

    async def gql(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return await tenant.api(query, variables, token=tenant.owner_token)  # type: ignore[no-any-return]

    async def members(segment_id: str) -> list[str]:
        data = await gql(
            "query($id: ID!) { segment(id: $id) { contacts(first: 10) { edges { node { name } } } } }",
            {"id": segment_id},
        )
        return sorted(e["node"]["name"] for e in data["segment"]["contacts"]["edges"])

    async def take_refreshes() -> list[Any]:
        """What a worker does on taking a job: off the queue, marked in progress (arq's keys)."""
        taken = [job for job in await pool.queued_jobs() if job.function == "refresh_dirty_contacts"]
        for job in taken:
            await pool.zrem(keys.arq_queue(), job.job_id)
            await pool.set(in_progress_key_prefix + job.job_id, b"1")
        return taken

    made = await gql(
        CREATE_SEGMENT,
        {
            "input": {
                "name": "Pro plan",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "tag", "operator": "EQUALS", "value": {"text": "pro"}}],
                },
            }
        },
    )
    segment_id = made["createSegment"]["segment"]["id"]
    await gql(CREATE_CONTACT, {"input": {"name": "First", "tags": ["pro"]}})
    [running] = await take_refreshes()
    ctx = {"redis": pool}
    assert await refresh_dirty_contacts(ctx, tenant.workspace.id) == 1
    assert await members(segment_id) == ["First"]

    # The run has read the sets and not yet ended when the second contact changes.
    await gql(CREATE_CONTACT, {"input": {"name": "Second", "tags": ["pro"]}})
    await pool.delete(job_key_prefix + running.job_id, in_progress_key_prefix + running.job_id)  # it ends
    [queued] = await take_refreshes()
    assert queued.args == (tenant.workspace.id,)
    assert await refresh_dirty_contacts(ctx, tenant.workspace.id) == 1
    assert await members(segment_id) == ["First", "Second"]


async def test_a_contact_marked_as_changed_and_as_talked_to_is_re_evaluated_once(app: Any, tenant: Any) -> None:
    """Changed contacts are re-evaluated against every segment, those that count
    conversations included: a contact also marked for its conversations is not done twice."""
    rules = {
        "match": "ALL",
        "conditions": [{"field": "conversation_count", "operator": "AT_LEAST", "value": {"number": 0}}],
    }
    made = await tenant.api(CREATE_SEGMENT, {"input": {"name": "Any", "rules": rules}}, token=tenant.owner_token)
    assert made["createSegment"]["userErrors"] == []
    created = await tenant.api(CREATE_CONTACT, {"input": {"name": "Both"}}, token=tenant.owner_token)
    ws, contact_id = tenant.workspace.id, pk(created["createContact"]["contact"]["id"])
    hub, pool = app.state.hub, app.state.jobs
    # createContact marked it as changed; its conversations change too.
    await schedule_dirty_refresh(hub, pool, ws, [contact_id], conversations_only=True)
    assert await refresh_dirty_contacts({"redis": pool}, ws) == 1
    assert await refresh_dirty_contacts({"redis": pool}, ws) == 0
