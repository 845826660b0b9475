"""Fixtures: the app with its lifespan, a GraphQL client, tenants (fresh workspaces, so
tests never share rows), and a real uvicorn server for WebSocket tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from strawberry.relay import GlobalID

from core.embedded_redis import free_port
from tests.loopback import HttpSink, SmtpSink

ROOT = Path(__file__).resolve().parent.parent


def pk(gid: str) -> int:
    """The database id behind a GraphQL global id."""
    return int(GlobalID.from_id(gid).node_id)


@pytest.fixture(scope="session")
async def app() -> AsyncIterator[Any]:
    from asgi import app as starlette_app

    async with starlette_app.router.lifespan_context(starlette_app):
        yield starlette_app


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
        yield c


class GraphQLErrors(AssertionError):
    pass


@dataclass
class Api:
    client: httpx.AsyncClient

    async def raw(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = {"authorization": f"Bearer {token}"} if token else {}
        h.update(headers or {})
        return await self.client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=h)

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The `data` of a successful response; raises if there were errors."""
        body = (await self.raw(query, variables, token=token)).json()
        if body.get("errors"):
            raise GraphQLErrors(body["errors"])
        return body["data"]  # type: ignore[no-any-return]

    async def errors(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> list[dict[str, Any]]:
        body = (await self.raw(query, variables, token=token)).json()
        assert body.get("errors"), f"expected errors, got {body}"
        return body["errors"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


@dataclass
class Tenant:
    """A fresh workspace with its owner, an all-scopes API key and a widget channel."""

    api: Api
    workspace: Any
    owner: Any
    owner_token: str
    api_key: str
    channel: Any
    _n: list[int] = field(default_factory=lambda: [0])

    async def agent(self, role: str = "agent", **extra: Any) -> tuple[Any, str]:
        from core.auth import TokenKind, hash_password, issue_token
        from models.workspaces import Agent

        self._n[0] += 1
        agent = await Agent.create(
            workspace_id=self.workspace.id,
            email=f"agent{self._n[0]}@example.com",
            name=f"Agent {self._n[0]}",
            password_hash=await hash_password("correct horse battery"),
            role=role,
            **extra,
        )
        return agent, issue_token(TokenKind.AGENT, workspace_id=self.workspace.id, subject_id=agent.id)

    async def contact(self, **fields: Any) -> dict[str, Any]:
        data = await self.api(
            "mutation($input: CreateContactInput!) { createContact(input: $input) { "
            "contact { id name email } userErrors { field code message } } }",
            {"input": fields},
            token=self.owner_token,
        )
        payload = data["createContact"]
        assert payload["userErrors"] == [], payload["userErrors"]
        return payload["contact"]  # type: ignore[no-any-return]


@pytest.fixture
async def make_tenant(api: Api) -> Any:
    from core.auth import TokenKind, issue_token
    from resolvers.workspaces import create_workspace

    async def make(name: str = "Acme", *, identity_verification: bool = False) -> Tenant:
        # The widget verifies identities only when asked: most tests open sessions without a
        # userHash. (A new workspace's widget verifies by default: tests/contacts/test_verified_contacts.py.)
        boot = await create_workspace(
            name,
            "owner@example.com",
            "correct horse battery",
            owner_name="Olive Owner",
            identity_verification=identity_verification,
        )
        token = issue_token(TokenKind.AGENT, workspace_id=boot.workspace.id, subject_id=boot.owner.id)
        return Tenant(
            api=api,
            workspace=boot.workspace,
            owner=boot.owner,
            owner_token=token,
            api_key=boot.api_key,
            channel=boot.channel,
        )

    return make


@pytest.fixture
async def tenant(make_tenant: Any) -> Tenant:
    return await make_tenant()  # type: ignore[no-any-return]


# -- a real server ---------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    ws_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp_path: Path,
    env: dict[str, str] | None = None,
    name: str = "server",
    log_level: str = "warning",
    workers: int = 1,
) -> LiveServer:
    """uvicorn asgi:app on a free port, with this test run's database and Redis (uvicorn's
    `--log-level`: "info" writes an access line a request; `--workers`)."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "asgi:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                log_level,
                "--no-proxy-headers",
                "--workers",
                str(workers),
            ],  # the app reads X-Forwarded-For itself (core/client_ip.py)
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(
        url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}/graphql", process=process, log=log
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """One live server for a test module whose tests need only one; they use fresh tenants.
    Its log is `<module>.log` in a folder of its own."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    live = start_server(tmp_path_factory.mktemp(name), name=name)
    yield live
    live.stop()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path)
    yield server
    server.stop()


async def gql(server: LiveServer, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    """The `data` of a request to a live server; fails on any GraphQL error."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = (await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)).json()
    assert not body.get("errors"), body
    return body["data"]  # type: ignore[no-any-return]


async def hub_subscriptions(server: LiveServer, count: int) -> None:
    """Wait until the live server's hub holds exactly `count` local subscriptions: no event
    published from then on can be missed. (Redis's own count is per channel.)"""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for _ in range(400):
            if f"parley_hub_subscribers {count}\n" in (await http.get("/metrics")).text:
                return
            await asyncio.sleep(0.025)
    raise AssertionError(f"{server.url} never held {count} subscriptions")


def start_worker(tmp_path: Path, env: dict[str, str] | None = None, name: str = "worker") -> subprocess.Popen[bytes]:
    """A real arq worker on this test run's database, Redis and queue."""
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- real mail and HTTP servers on loopback --------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    with HttpSink() as sink:
        yield sink


@dataclass
class SmtpSettings:
    """Outbound mail pointed at `sink`: in this process through the settings, and for a
    server or worker started here through `env` (`start_server(tmp_path, env=...)`)."""

    sink: SmtpSink
    env: dict[str, str]


@pytest.fixture
def smtp_settings(smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> SmtpSettings:
    from core.config import settings

    monkeypatch.setattr(settings, "smtp_host", smtp_sink.host)
    monkeypatch.setattr(settings, "smtp_port", smtp_sink.port)
    monkeypatch.setattr(settings, "smtp_tls", "none")
    monkeypatch.setattr(settings, "smtp_username", None)
    monkeypatch.setattr(settings, "smtp_password", None)
    return SmtpSettings(sink=smtp_sink, env=smtp_sink.env)
