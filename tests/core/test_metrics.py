"""/metrics under several processes: two API processes and a worker write to one
PROMETHEUS_MULTIPROC_DIR, and a scrape of either API process counts every request and
every job; the worker also serves its own on WORKER_METRICS_PORT."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from core.embedded_redis import free_port
from tests.conftest import Tenant, start_server, start_worker, stop_process

QUERIES = 24


def _sample(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else None


async def test_two_api_processes_and_a_worker_share_one_registry(tmp_path: Path, tenant: Tenant) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    server = start_server(tmp_path, env=env, workers=2)
    worker_port = free_port()
    worker = start_worker(tmp_path, env={**env, "WORKER_METRICS_PORT": str(worker_port)})
    try:
        # A connection each: the kernel hands them to either process.
        for _ in range(QUERIES):
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                answer = await http.post(
                    "/graphql",
                    json={"query": "{ workspace { name } }"},
                    headers={"authorization": f"Bearer {tenant.api_key}"},
                )
                assert answer.json()["data"]["workspace"]["name"] == "Acme"
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            refused = await http.post("/graphql", json={"query": "{ contacts { totalCount } }"})
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

        # Both processes answered some of them; each wrote its own file in the shared directory.
        pids = {m.group(1) for f in shared.iterdir() if (m := re.match(r"histogram_(\d+)\.db$", f.name))}
        assert len(pids) >= 2, sorted(f.name for f in shared.iterdir())

        # Whichever process answers the scrape, it counts all of them.
        for _ in range(6):
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                text = (await http.get("/metrics")).text
            assert (
                _sample(text, "parley_graphql_request_duration_seconds_count", operation_type="query", outcome="ok")
                == QUERIES
            )
            assert (
                _sample(text, "parley_graphql_request_duration_seconds_count", operation_type="query", outcome="error")
                == 1
            )
            assert _sample(text, "parley_graphql_errors_total", code="UNAUTHENTICATED") == 1
            assert "parley_hub_subscribers 0\n" in text and "parley_job_queue_depth " in text

        # The worker's jobs (wake_snoozed runs at its start), on its own port and through the API.
        deadline = time.monotonic() + 30
        while True:
            try:
                own = httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=2).text
            except httpx.HTTPError:
                own = ""
            if (_sample(own, "parley_jobs_total", function="wake_snoozed", outcome="ok") or 0) >= 1:
                break
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            await asyncio.sleep(0.2)
        assert _sample(own, "parley_job_duration_seconds_count", function="wake_snoozed") is not None
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            text = (await http.get("/metrics")).text
        assert (_sample(text, "parley_jobs_total", function="wake_snoozed", outcome="ok") or 0) >= 1
    finally:
        stop_process(worker)
        server.stop()


async def test_the_grafana_dashboard_charts_only_metrics_parley_exports(client: httpx.AsyncClient) -> None:
    import json

    from jobs.worker import retry_when_busy

    async def noop(ctx: dict[str, object]) -> None:
        return None

    await retry_when_busy(noop)({})  # the worker's job metrics get a sample in this process
    await client.post("/graphql", json={"query": "{ __typename }"})
    exported = set(re.findall(r"^# TYPE (\w+) ", (await client.get("/metrics")).text, re.M))
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    charted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(parley_\w+)", target["expr"])
    }
    assert charted and charted <= exported, charted - exported
