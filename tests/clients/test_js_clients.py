"""docs/clients.md's Apollo Client and urql examples, run for real: Node runs the files the
document shows (clients/node/apollo.js, urql.js, through run.js) against a live server:
queries over HTTP by automatic persisted queries, a subscription over graphql-ws that gets
an event after a mutation, and a new token after the server closes the socket with 4403.

Needs node and `npm ci` in clients/node (CI runs it); skipped with the reason otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, LiveServer, Tenant, gql, hub_subscriptions

NODE_PROJECT = ROOT / "clients" / "node"
DOC = ROOT / "docs" / "clients.md"
EXAMPLES = ("apollo.js", "urql.js")
LIBRARIES = ("apollo", "urql")
RETRY_METHOD = {"apollo": "POST", "urql": "GET"}
TIMEOUT = 30.0

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_PROJECT / "node_modules").is_dir(),
    reason="needs node (20+) and `npm ci` in clients/node (.ci/run does it)",
)

CONTACT_UPDATED = "subscription Updated($id: ID!) { contactUpdated(id: $id) { kind contactId } }"
UPDATE_CONTACT = "mutation($input: UpdateContactInput!) { updateContact(input: $input) { userErrors { code } } }"


def test_the_document_shows_the_files_the_tests_run() -> None:
    """Each example is in docs/clients.md verbatim, in a ```js block after a line naming it."""
    text = DOC.read_text()
    for name in EXAMPLES:
        found = re.search(rf"<!-- clients/node/{re.escape(name)} -->\n```js\n(.*?)```\n", text, re.S)
        assert found, f"docs/clients.md has no block for clients/node/{name}"
        assert found.group(1) == (NODE_PROJECT / name).read_text(), f"docs/clients.md's {name} is not the file"


class Node:
    """`node run.js <library> <scenario>` and the JSON lines it writes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
        if not raw:
            assert self.process.stderr is not None
            raise AssertionError(f"node ended: {(await self.process.stderr.read()).decode()}")
        return json.loads(raw)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def node(library: str, scenario: str, server: LiveServer, **settings: str) -> AsyncIterator[Node]:
    env = {
        "PATH": str(Path(shutil.which("node") or "node").parent),
        "PARLEY_HTTP_URL": f"{server.url}/graphql",
        "PARLEY_WS_URL": server.ws_url,
        **{f"PARLEY_{k.upper()}": v for k, v in settings.items()},
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        "run.js",
        library,
        scenario,
        cwd=NODE_PROJECT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Node(process)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _sha256(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


@needs_node
@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_query_over_http_by_automatic_persisted_queries(
    server: LiveServer, tenant: Tenant, library: str
) -> None:
    # A document of its own: its hash is new to the server.
    document = f"query Workspace {{ workspace {{ name }} w{uuid.uuid4().hex}: workspace {{ id }} }}"
    async with node(library, "query", server, token=tenant.api_key, query=document) as run:
        answer = await run.line()
    assert "error" not in answer, answer
    assert [data["workspace"]["name"] for data in answer["results"]] == ["Acme", "Acme"]
    first, registered, again = answer["requests"]
    # The hash alone, by GET: unknown, and not to be cached.
    assert (first["method"], first["query"], first["status"]) == ("GET", False, 200)
    assert first["body"]["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert "no-cache" in first["cacheControl"]
    # The client sends it again with the document (Apollo by POST, urql by GET): kept, and answered.
    assert (registered["method"], registered["query"], registered["status"]) == (RETRY_METHOD[library], True, 200)
    assert registered["sha256Hash"] == first["sha256Hash"]
    assert registered["body"]["data"]["workspace"]["name"] == "Acme"
    # The next time, the hash alone by GET works; with a token, only the browser may keep it.
    assert (again["method"], again["query"], again["status"]) == ("GET", False, 200)
    assert again["sha256Hash"] == first["sha256Hash"] and again["body"]["data"]["workspace"]["name"] == "Acme"
    assert again["cacheControl"].startswith("private, max-age=")


@needs_node
@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_subscription_over_graphql_ws_gets_the_event_of_a_mutation(
    server: LiveServer, tenant: Tenant, library: str
) -> None:
    contact = await tenant.contact(name="Ada")
    variables = json.dumps({"id": contact["id"]})
    async with node(
        library, "subscribe", server, token=tenant.api_key, subscription=CONTACT_UPDATED, variables=variables
    ) as run:
        assert await run.line() == {"step": "subscribing"}
        await hub_subscriptions(server, 1)
        await gql(server, UPDATE_CONTACT, {"input": {"id": contact["id"], "name": "Ada L."}}, tenant.api_key)
        event = (await run.line())["event"]["contactUpdated"]
        assert (event["kind"], event["contactId"]) == ("UPDATED", contact["id"])


@needs_node
@pytest.mark.parametrize("library", LIBRARIES)
async def test_after_a_4403_close_the_client_gets_a_new_token_and_subscribes_again(
    server: LiveServer, tenant: Tenant, library: str
) -> None:
    agent, token = await tenant.agent()
    contact = await tenant.contact(name="Ada")
    login = json.dumps({"email": agent.email, "password": "correct horse battery", "workspace": tenant.workspace.slug})
    async with node(
        library,
        "subscribe",
        server,
        token=token,
        login=login,
        subscription=CONTACT_UPDATED,
        variables=json.dumps({"id": contact["id"]}),
    ) as run:
        assert await run.line() == {"step": "subscribing"}
        await hub_subscriptions(server, 1)
        # The agent signs out elsewhere: every token of theirs is revoked, the socket closed with 4403.
        await gql(server, "mutation { logout { ok } }", {}, token)
        await hub_subscriptions(server, 0)
        assert await run.line() == {"step": "refreshToken"}
        assert await run.line() == {"step": "refreshed"}
        # graphql-ws reconnects with the new token and subscribes again, by itself.
        await hub_subscriptions(server, 1)
        await gql(server, UPDATE_CONTACT, {"input": {"id": contact["id"], "name": "Ada L."}}, tenant.api_key)
        event = (await run.line())["event"]["contactUpdated"]
        assert (event["kind"], event["contactId"]) == ("UPDATED", contact["id"])
