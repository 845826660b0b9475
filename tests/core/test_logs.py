"""Logs an operator can search: one JSON object a line in production, each line of a
request carrying its request id (the one the client sent, or one made for it and echoed as
X-Request-Id), its operation, principal and workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Tenant, start_server

ORIGIN = "https://app.example.com"


def _json_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for text in log.read_text().splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


async def test_a_requests_json_log_line_carries_its_request_id_operation_and_workspace(
    tmp_path: Path, tenant: Tenant
) -> None:
    server = start_server(
        tmp_path, env={"LOG_FORMAT": "json", "ALLOWED_ORIGINS": json.dumps([ORIGIN])}, log_level="info"
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            sent = await http.post(
                "/graphql",
                json={"query": "query Whoami { workspace { name } }", "operationName": "Whoami"},
                headers={
                    "authorization": f"Bearer {tenant.api_key}",
                    "x-request-id": "req-from-client-1",
                    "origin": ORIGIN,
                },
            )
            made = await http.get("/healthz", headers={"origin": ORIGIN})
    finally:
        server.stop()
    assert sent.status_code == 200, sent.text
    assert sent.headers["x-request-id"] == "req-from-client-1"
    # A browser app may read it (to quote it in a support request): CORS exposes it.
    assert "x-request-id" in sent.headers["access-control-expose-headers"].lower()
    made_id = made.headers["x-request-id"]
    assert len(made_id) == 16

    lines = _json_lines(server.log)
    assert lines, server.log.read_text()
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    ours = [line for line in lines if line.get("request_id") == "req-from-client-1"]
    assert ours, lines
    access = next(line for line in ours if line["logger"] == "uvicorn.access")
    assert "POST /graphql" in access["message"] and access["level"] == "INFO"
    assert access["operation"] == "Whoami"
    assert access["principal"] == "api_key" and access["workspace"] == tenant.workspace.id
    # The request with no id of its own got one, and its line says which.
    assert any(line.get("request_id") == made_id and "/healthz" in line["message"] for line in lines)


async def test_dev_logs_are_readable_text_with_the_request_id(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"ENV": "dev"}, log_level="info")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            await http.get("/healthz", headers={"x-request-id": "dev-req-7"})
    finally:
        server.stop()
    line = next(text for text in server.log.read_text().splitlines() if "dev-req-7" in text)
    assert not line.startswith("{")
    assert " INFO " in line and "uvicorn.access [dev-req-7]" in line and "GET /healthz" in line


def test_a_json_line_keeps_its_fields_in_order_with_the_exception_last() -> None:
    import logging
    import sys

    from core.logs import JsonFormatter, _ContextFilter, start_log_fields

    start_log_fields()["workspace"] = 7
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        record = logging.getLogger("parley.test").makeRecord(
            "parley.test",
            logging.ERROR,
            __file__,
            1,
            "héllo %s",
            ("wörld",),
            sys.exc_info(),
            extra={"color_message": "x"},
        )
    _ContextFilter().filter(record)
    text = JsonFormatter().format(record)
    line = json.loads(text)
    assert list(line) == ["time", "level", "logger", "message", "workspace", "exception"]
    assert line["message"] == "héllo wörld" and "héllo wörld" in text  # not escaped
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-12-07T21:14:03.512Z")
    assert line["exception"].endswith("ZeroDivisionError: division by zero")
