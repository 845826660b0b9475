"""An export end to end on real processes: a uvicorn server queues it, an arq worker runs
it, a graphql-transport-ws subscriber follows `jobProgress` from QUEUED to SUCCEEDED, and
the file comes back from the server's download route."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from models.contacts import Contact
from tests.conftest import Tenant, start_server, start_worker, stop_process
from tests.realtime.wsclient import GraphQLWs

PROGRESS = "subscription($id: ID!) { jobProgress(jobId: $id) { id status processed total cursor downloadUrl error } }"
EXPORT = (
    "mutation($i: ExportContactsInput!) { exportContacts(input: $i) { job { id status } userErrors { field code } } }"
)
CONTACTS = 230


async def test_an_export_runs_in_the_worker_and_a_subscriber_follows_it(tenant: Tenant, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    await Contact.bulk_create(
        [
            Contact(
                workspace_id=tenant.workspace.id,
                name=f"Person {i:03}",
                email=f"p{i}@example.com",
                city="=Lyon" if i % 2 else "Lyon",
                last_seen_at=now,
                first_seen_at=now,
            )
            for i in range(CONTACTS)
        ]
    )
    server = start_server(tmp_path)
    worker = None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            headers = {"authorization": f"Bearer {tenant.owner_token}"}
            body = (
                await http.post(
                    "/graphql",
                    json={"query": EXPORT, "variables": {"i": {"columns": ["name", "city"]}}},
                    headers=headers,
                )
            ).json()
            job = body["data"]["exportContacts"]["job"]
            assert job["status"] == "QUEUED"
            async with GraphQLWs.open(server.ws_url, tenant.owner_token) as ws:
                sub = await ws.subscribe(PROGRESS, {"id": job["id"]})
                # The current state first: nothing runs it yet.
                events = [(await sub.next_data())["jobProgress"]]
                assert events[0]["status"] == "QUEUED" and events[0]["processed"] == 0
                # Small batches, so the run takes several of them.
                worker = start_worker(tmp_path, env={"EXPORT_BATCH_SIZE": "50"})
                while events[-1]["status"] in ("QUEUED", "RUNNING"):
                    events.append((await sub.next_data(timeout=30))["jobProgress"])
                assert (await sub.receive())["type"] == "complete"
        statuses = [e["status"] for e in events]
        assert statuses[0] == "QUEUED" and statuses[1] == "RUNNING" and statuses[-1] == "SUCCEEDED", statuses
        assert set(statuses[1:-1]) == {"RUNNING"}
        cursors = [int(e["cursor"]) for e in events]
        assert cursors == sorted(set(cursors)), cursors
        processed = [e["processed"] for e in events[1:]]
        assert processed == sorted(processed) and processed[-1] == CONTACTS
        final = events[-1]
        assert final["total"] == CONTACTS and final["error"] is None and final["downloadUrl"]

        url = urlsplit(final["downloadUrl"])
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.get(f"{url.path}?{url.query}")
        assert response.status_code == 200, response.text
        rows = list(csv.reader(io.StringIO(response.text, newline="")))
        assert rows[0] == ["name", "city"]
        assert rows[1:] == [[f"Person {i:03}", "'=Lyon" if i % 2 else "Lyon"] for i in range(CONTACTS)]
    finally:
        if worker is not None:
            stop_process(worker)
        server.stop()


async def test_a_subscriber_to_a_finished_job_gets_its_state_and_completes(
    app: Any, tenant: Tenant, live_server: Any
) -> None:
    from tests.exports.test_exports import run, start

    job = await start(tenant, columns=["email"])
    await run(app, job["id"])
    async with GraphQLWs.open(live_server.ws_url, tenant.owner_token) as ws:
        sub = await ws.subscribe(PROGRESS, {"id": job["id"]})
        state = (await sub.next_data())["jobProgress"]
        assert (state["status"], state["processed"], state["total"]) == ("SUCCEEDED", 0, 0)
        assert (await sub.receive())["type"] == "complete"
        # Someone who may not see exports learns nothing.
        _, agent = await tenant.agent("agent")
        async with GraphQLWs.open(live_server.ws_url, agent) as other:
            denied = await (await other.subscribe(PROGRESS, {"id": job["id"]})).receive()
            errors = denied["payload"]["errors"] if denied["type"] == "next" else denied["payload"]
            assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"]
