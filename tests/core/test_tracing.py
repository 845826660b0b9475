"""Traces, as an OpenTelemetry collector receives them: a loopback OTLP/HTTP receiver
decodes what the API and the worker send when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import Tenant, gql, hub_subscriptions, start_server, start_worker, stop_process
from tests.loopback import HttpSink
from tests.realtime.wsclient import GraphQLWs

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _spans(sink: HttpSink) -> list[dict[str, Any]]:
    spans = []
    for request in sink.requests:
        assert request.path == "/v1/traces" and request.headers["content-type"] == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
            for scope in resource.scope_spans:
                for s in scope.spans:
                    attributes = {a.key: (a.value.string_value or a.value.int_value) for a in s.attributes}
                    spans.append(
                        {
                            "service": service,
                            "name": s.name,
                            "kind": s.kind,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            **attributes,
                        }
                    )
    return spans


async def _until(sink: HttpSink, found: Any, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not found(spans := _spans(sink)):
        assert time.monotonic() < deadline, spans
        await asyncio.sleep(0.1)
    return spans


async def test_a_request_and_its_operation_and_a_job_reach_the_collector(tmp_path: Path, tenant: Tenant) -> None:
    with HttpSink() as sink:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "parley-test",
        }
        server = start_server(tmp_path, env=env)
        worker = start_worker(tmp_path, env=env)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                answer = await http.post(
                    "/graphql",
                    json={"query": "query Workspace { workspace { name } }", "operationName": "Workspace"},
                    headers={
                        "authorization": f"Bearer {tenant.api_key}",
                        "x-request-id": "traced-1",
                        "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
                    },
                )
            assert answer.json()["data"]["workspace"]["name"] == "Acme"
            spans = await _until(
                sink,
                lambda spans: (
                    any(s["name"] == "query Workspace" for s in spans)
                    and any(s["name"] == "job wake_snoozed" for s in spans)
                ),
            )
        finally:
            stop_process(worker)
            server.stop()

    request = next(s for s in spans if s.get("parley.request_id") == "traced-1")
    # The caller's trace goes on: same trace id, its span the parent.
    assert request["trace_id"] == TRACE_ID and request["parent"] == CALLER_SPAN
    assert request["name"] == "HTTP POST" and request["kind"] == 2  # SERVER
    assert request["http.request.method"] == "POST" and request["url.path"] == "/graphql"
    assert request["http.response.status_code"] == 200
    assert request["service"] == "parley-test"
    operation = next(s for s in spans if s["name"] == "query Workspace")
    assert operation["trace_id"] == TRACE_ID and operation["parent"] == request["span_id"]
    assert operation["graphql.operation.type"] == "query" and operation["graphql.operation.name"] == "Workspace"
    assert operation["parley.outcome"] == "ok"
    job = next(s for s in spans if s["name"] == "job wake_snoozed")
    assert (
        job["kind"] == 5 and job["parley.job.function"] == "wake_snoozed" and job["parley.outcome"] == "ok"
    )  # CONSUMER


async def test_a_request_traces_its_sql_and_redis_calls_without_values(tmp_path: Path, tenant: Tenant) -> None:
    needle = "needle-7f3a"  # a bound value: in the statements' parameters, never on a span
    with HttpSink() as sink:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        server = start_server(tmp_path, env=env)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                answer = await http.post(
                    "/graphql",
                    json={
                        "query": "query Find($q: String) { contacts(search: $q) { totalCount } }",
                        "operationName": "Find",
                        "variables": {"q": needle},
                    },
                    headers={
                        "authorization": f"Bearer {tenant.api_key}",
                        "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
                    },
                )
            assert answer.json() == {"data": {"contacts": {"totalCount": 0}}}
            spans = await _until(sink, lambda spans: any(s["name"] == "HTTP POST" for s in spans))
        finally:
            server.stop()

    traced = [s for s in spans if s["trace_id"] == TRACE_ID]
    request = next(s for s in traced if s["name"] == "HTTP POST")
    operation = next(s for s in traced if s["name"] == "query Find")
    assert operation["parent"] == request["span_id"]
    # The request → operation (a JSON POST: the plain path) → SQL tree, each statement a CLIENT span.
    system = "postgresql" if os.environ.get("TEST_DATABASE_URL") else "sqlite"
    statements = [s for s in traced if s.get("db.system") == system]
    assert statements and all(s["parent"] in (request["span_id"], operation["span_id"]) for s in statements)
    assert all(s["kind"] == 3 for s in statements)
    counted = next(s for s in statements if "count(" in s["db.query.text"].lower())
    assert counted["parent"] == operation["span_id"]
    assert counted["name"] == counted["db.operation.name"] == "SELECT"
    # Redis (the request's rate limit), the command without its keys or arguments.
    commands = [s for s in traced if s.get("db.system") == "redis"]
    assert commands and all(set(s["db.query.text"].split()[1:]) <= {"?"} for s in commands)
    # Neither the search value nor the API key anywhere on any span.
    for s in spans:
        for value in s.values():
            assert needle not in str(value) and tenant.api_key not in str(value), s


async def test_a_websocket_operation_is_a_span_for_as_long_as_it_runs(tmp_path: Path, tenant: Tenant) -> None:
    contact = await tenant.contact(name="Ada")
    subscribe = {
        "id": "traced",
        "type": "subscribe",
        "payload": {
            "query": "subscription Updated($id: ID!) { contactUpdated(id: $id) { kind } }",
            "operationName": "Updated",
            "variables": {"id": contact["id"]},
        },
    }
    update = "mutation($input: UpdateContactInput!) { updateContact(input: $input) { userErrors { code } } }"
    with HttpSink() as sink:
        server = start_server(tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_BSP_SCHEDULE_DELAY": "100"})
        try:
            async with GraphQLWs.open(server.ws_url, tenant.api_key) as ws:
                await ws.send(subscribe)  # an id the client does not track: its messages come as control ones
                await hub_subscriptions(server, 1)
                await gql(server, update, {"input": {"id": contact["id"], "name": "Ada L."}}, tenant.api_key)
                event = await ws.control()
                assert event["payload"]["data"] == {"contactUpdated": {"kind": "UPDATED"}}
                await _until(sink, lambda spans: any(s["name"] == "mutation" for s in spans))
                # Still running: no span yet.
                assert not [s for s in _spans(sink) if s["name"] == "subscription Updated"]
                await ws.send({"id": "traced", "type": "complete"})
                spans = await _until(sink, lambda spans: any(s["name"] == "subscription Updated" for s in spans))
        finally:
            server.stop()

    operation = next(s for s in spans if s["name"] == "subscription Updated")
    assert operation["kind"] == 2 and operation["parent"] == ""  # SERVER, the root of its trace
    assert operation["graphql.operation.type"] == "subscription" and operation["graphql.operation.name"] == "Updated"
    assert operation["parley.outcome"] == "stopped"  # by the client's complete
    assert operation["parley.request_id"] not in ("", "-")


async def test_an_outbound_call_makes_an_http_span(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import outbound, tracing
    from core.config import settings

    with HttpSink() as collector, HttpSink() as receiver:
        monkeypatch.setattr(settings, "otel_exporter_otlp_endpoint", collector.url)
        tracing.setup_tracing()
        try:
            with tracing.span("test") as parent:
                answer = await outbound.post(
                    f"{receiver.url}/hook?token=query-secret",
                    content=b"{}",
                    headers={"authorization": "Bearer header-secret"},
                )
            assert answer.ok and parent is not None
        finally:
            tracing.shutdown_tracing()  # sends what is buffered
        spans = _spans(collector)
    assert receiver.requests[0].path == "/hook?token=query-secret"
    call = next(s for s in spans if s["name"] == "POST")
    assert call["kind"] == 3 and call["parent"] == next(s for s in spans if s["name"] == "test")["span_id"]  # CLIENT
    assert call["http.request.method"] == "POST" and call["http.response.status_code"] == 200
    assert call["server.address"] == "127.0.0.1" and call["server.port"] == receiver.port
    assert not any("secret" in str(value) for value in call.values()), call


async def test_no_endpoint_no_spans(tmp_path: Path, tenant: Tenant) -> None:
    from core import tracing

    assert not tracing.enabled()  # this test process has no OTEL_EXPORTER_OTLP_ENDPOINT
    with tracing.span("anything") as current:
        assert current is None


def test_statements_lose_their_literals() -> None:
    from core.tracing import sanitized

    statement = "SELECT 1 FROM t1 WHERE a = 'O''Brien' AND b = $2 AND c = ? LIMIT 20 OFFSET 1.5"
    assert sanitized(statement) == "SELECT ? FROM t1 WHERE a = ? AND b = $2 AND c = ? LIMIT ? OFFSET ?"
