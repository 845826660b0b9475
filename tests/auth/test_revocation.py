"""Revocation end to end (issue 22, part 4): a live uvicorn, real Redis, a real
graphql-transport-ws client. A logout, a password change, a deactivation, a rotated
channel secret or verification turned on refuse the old token over HTTP and close its
open sockets within seconds, with no event needed. The revoking mutation goes through
another process (the test's own app) when it matters that every process hears it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.conftest import Api, LiveServer, Tenant
from tests.realtime.wsclient import GraphQLWs

TIMEOUT = 10  # turns a hang into a failure
# What "within seconds" means here: the guard acts on the change itself, in milliseconds.
CLOSED_WITHIN = 5.0

CONTACT_UPDATED = "subscription($id: ID!) { contactUpdated(id: $id) { kind contactId } }"
VIEWER = "{ viewer { kind } }"
AGENTS = "{ agents(first: 5) { edges { node { id } } } }"
ERRORS = "userErrors { field code message }"
LOGIN = f"mutation($input: LoginInput!) {{ login(input: $input) {{ token agent {{ id deactivatedAt }} {ERRORS} }} }}"
LOGOUT = f"mutation {{ logout {{ ok {ERRORS} }} }}"
CHANGE_PASSWORD = f"mutation($input: ChangePasswordInput!) {{ changePassword(input: $input) {{ token {ERRORS} }} }}"
DEACTIVATE = (
    f"mutation($input: AgentIdInput!) {{ deactivateAgent(input: $input) {{ agent {{ id deactivatedAt }} {ERRORS} }} }}"
)
REACTIVATE = (
    f"mutation($input: AgentIdInput!) {{ reactivateAgent(input: $input) {{ agent {{ id deactivatedAt }} {ERRORS} }} }}"
)
ROTATE = f"mutation($input: ChannelIdInput!) {{ rotateChannelSecret(input: $input) {{ channel {{ id }} {ERRORS} }} }}"
UPDATE_CHANNEL = (
    "mutation($input: UpdateChannelInput!) { updateChannel(input: $input) { "
    f"channel {{ identityVerification }} {ERRORS} }} }}"
)
START_SESSION = (
    "mutation($input: StartContactSessionInput!) { "
    f"startContactSession(input: $input) {{ token contact {{ id }} {ERRORS} }} }}"
)
ASSIGN = (
    "mutation($input: AssignConversationInput!) { "
    f"assignConversation(input: $input) {{ conversation {{ id }} {ERRORS} }} }}"
)
PASSWORD = "correct horse battery"


async def post(
    server: LiveServer, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def data(
    server: LiveServer, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    body = await post(server, query, variables, token)
    assert not body.get("errors"), body
    return body["data"]  # type: ignore[no-any-return]


async def assert_refused(server: LiveServer, token: str) -> None:
    """The token no longer authenticates: nobody is behind it, and what needs a login says so."""
    assert (await data(server, VIEWER, token=token))["viewer"] is None
    body = await post(server, AGENTS, token=token)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], body


async def assert_accepted(server: LiveServer, token: str) -> None:
    assert (await data(server, VIEWER, token=token))["viewer"] is not None


async def login(server: LiveServer, email: str, password: str, workspace: str) -> dict[str, Any]:
    return (await data(server, LOGIN, {"input": {"email": email, "password": password, "workspace": workspace}}))[
        "login"
    ]  # type: ignore[no-any-return]


async def listening(server: LiveServer, token: str, contact_id: str) -> tuple[Any, Any]:
    """An acknowledged socket holding one subscription."""
    manager = GraphQLWs.open(server.ws_url, token)
    ws = await manager.__aenter__()
    await ws.subscribe(CONTACT_UPDATED, {"id": contact_id})
    return manager, ws


async def closed_soon(ws: GraphQLWs) -> tuple[int | None, str, float]:
    started = time.monotonic()
    closed = await ws.wait_closed(TIMEOUT)
    return closed.code, closed.reason, time.monotonic() - started


async def still_open(ws: GraphQLWs, seconds: float = 1.0) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(ws._reader), seconds)
    except TimeoutError:
        return True
    return False


# -- agents ----------------------------------------------------------------------------------


async def test_logout_refuses_the_token_and_closes_its_socket_in_every_process(
    server: LiveServer, tenant: Tenant, api: Api
) -> None:
    contact = await tenant.contact(name="Watched")
    agent, _ = await tenant.agent()
    session = await login(server, agent.email, PASSWORD, tenant.workspace.slug)
    token = session["token"]
    await assert_accepted(server, token)
    manager, ws = await listening(server, token, contact["id"])
    other_manager, other = await listening(server, tenant.owner_token, contact["id"])
    try:
        # Through the test's own app: another process than the live server, which hears
        # of the change over Redis only.
        assert (await api(LOGOUT, token=token))["logout"] == {"ok": True, "userErrors": []}
        code, reason, took = await closed_soon(ws)
        assert (code, reason) == (4403, "Credentials revoked or expired") and took < CLOSED_WITHIN
        await assert_refused(server, token)
        assert await still_open(other), "another agent's socket was closed"
    finally:
        await manager.__aexit__(None, None, None)
        await other_manager.__aexit__(None, None, None)
    # Logging in again works: a logout ends sessions, not the account.
    again = await login(server, agent.email, PASSWORD, tenant.workspace.slug)
    assert again["userErrors"] == [] and again["token"] != token
    await assert_accepted(server, again["token"])


async def test_logout_is_for_agents(server: LiveServer, tenant: Tenant) -> None:
    body = await post(server, LOGOUT, token=tenant.api_key)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body


async def test_changing_the_password_needs_the_current_one_and_ends_older_tokens(
    server: LiveServer, tenant: Tenant
) -> None:
    contact = await tenant.contact(name="Watched")
    agent, _ = await tenant.agent()
    token = (await login(server, agent.email, PASSWORD, tenant.workspace.slug))["token"]

    wrong = await data(
        server,
        CHANGE_PASSWORD,
        {"input": {"currentPassword": "not it at all", "newPassword": "a new long password"}},
        token,
    )
    assert wrong["changePassword"] == {
        "token": None,
        "userErrors": [
            {"field": ["currentPassword"], "code": "INVALID_CREDENTIALS", "message": "The current password is wrong."}
        ],
    }
    short = await data(server, CHANGE_PASSWORD, {"input": {"currentPassword": PASSWORD, "newPassword": "short"}}, token)
    assert [(e["field"], e["code"]) for e in short["changePassword"]["userErrors"]] == [(["newPassword"], "INVALID")]
    await assert_accepted(server, token)  # failed attempts change nothing

    manager, ws = await listening(server, token, contact["id"])
    try:
        changed = (
            await data(
                server,
                CHANGE_PASSWORD,
                {"input": {"currentPassword": PASSWORD, "newPassword": "a new long password"}},
                token,
            )
        )["changePassword"]
        assert changed["userErrors"] == [] and changed["token"]
        code, _, took = await closed_soon(ws)
        assert code == 4403 and took < CLOSED_WITHIN
    finally:
        await manager.__aexit__(None, None, None)
    await assert_refused(server, token)
    await assert_accepted(server, changed["token"])  # this session goes on with the new token
    old = await login(server, agent.email, PASSWORD, tenant.workspace.slug)
    assert [e["code"] for e in old["userErrors"]] == ["INVALID_CREDENTIALS"]
    assert (await login(server, agent.email, "a new long password", tenant.workspace.slug))["userErrors"] == []


async def test_a_deactivated_agent_is_refused_everywhere_until_reactivated(server: LiveServer, tenant: Tenant) -> None:
    from strawberry.relay import GlobalID

    contact = await tenant.contact(name="Watched")
    agent, _ = await tenant.agent()
    gid = str(GlobalID("Agent", str(agent.id)))
    token = (await login(server, agent.email, PASSWORD, tenant.workspace.slug))["token"]
    manager, ws = await listening(server, token, contact["id"])
    try:
        payload = (await data(server, DEACTIVATE, {"input": {"id": gid}}, tenant.owner_token))["deactivateAgent"]
        assert payload["userErrors"] == [] and payload["agent"]["deactivatedAt"]
        code, _, took = await closed_soon(ws)
        assert code == 4403 and took < CLOSED_WITHIN
    finally:
        await manager.__aexit__(None, None, None)
    await assert_refused(server, token)
    refused = await login(server, agent.email, PASSWORD, tenant.workspace.slug)
    assert refused["token"] is None and [e["code"] for e in refused["userErrors"]] == ["DEACTIVATED"]

    payload = (await data(server, REACTIVATE, {"input": {"id": gid}}, tenant.owner_token))["reactivateAgent"]
    assert payload == {"agent": {"id": gid, "deactivatedAt": None}, "userErrors": []}
    await assert_refused(server, token)  # tokens from before stay void
    again = await login(server, agent.email, PASSWORD, tenant.workspace.slug)
    assert again["userErrors"] == []
    await assert_accepted(server, again["token"])


async def test_who_may_deactivate_whom(server: LiveServer, tenant: Tenant) -> None:
    from strawberry.relay import GlobalID

    owner_gid = str(GlobalID("Agent", str(tenant.owner.id)))
    _, admin_token = await tenant.agent("admin")
    _, agent_token = await tenant.agent("agent")

    by_admin = (await data(server, DEACTIVATE, {"input": {"id": owner_gid}}, admin_token))["deactivateAgent"]
    assert [(e["field"], e["code"]) for e in by_admin["userErrors"]] == [(["id"], "FORBIDDEN")]
    last = (await data(server, DEACTIVATE, {"input": {"id": owner_gid}}, tenant.owner_token))["deactivateAgent"]
    assert [(e["field"], e["code"]) for e in last["userErrors"]] == [(["id"], "CONFLICT")]
    body = await post(server, DEACTIVATE, {"input": {"id": owner_gid}}, agent_token)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    unknown = (
        await data(server, DEACTIVATE, {"input": {"id": str(GlobalID("Agent", "999999999"))}}, tenant.owner_token)
    )["deactivateAgent"]
    assert [(e["field"], e["code"]) for e in unknown["userErrors"]] == [(["id"], "NOT_FOUND")]
    await assert_accepted(server, tenant.owner_token)

    # With a second owner, the first may go; the second is then the last.
    second, second_token = await tenant.agent("owner")
    gone = (await data(server, DEACTIVATE, {"input": {"id": owner_gid}}, second_token))["deactivateAgent"]
    assert gone["userErrors"] == []
    await assert_refused(server, tenant.owner_token)
    second_gid = str(GlobalID("Agent", str(second.id)))
    kept = (await data(server, DEACTIVATE, {"input": {"id": second_gid}}, second_token))["deactivateAgent"]
    assert [e["code"] for e in kept["userErrors"]] == ["CONFLICT"]


async def test_nothing_new_is_assigned_to_a_deactivated_agent(server: LiveServer, tenant: Tenant) -> None:
    from strawberry.relay import GlobalID

    session = (await data(server, START_SESSION, {"input": {"channelKey": tenant.channel.public_key}}))[
        "startContactSession"
    ]
    started = await data(
        server,
        "mutation($input: StartConversationInput!) { "
        "startConversation(input: $input) { conversation { id } userErrors { code } } }",
        {"input": {"body": "Hello?"}},
        session["token"],
    )
    conversation = started["startConversation"]["conversation"]["id"]
    agent, _ = await tenant.agent()
    gid = str(GlobalID("Agent", str(agent.id)))
    assert (await data(server, DEACTIVATE, {"input": {"id": gid}}, tenant.owner_token))["deactivateAgent"][
        "userErrors"
    ] == []
    refused = (await data(server, ASSIGN, {"input": {"id": conversation, "assigneeId": gid}}, tenant.owner_token))[
        "assignConversation"
    ]
    assert refused == {
        "conversation": None,
        "userErrors": [{"field": ["assigneeId"], "code": "CONFLICT", "message": "This agent is deactivated."}],
    }


# -- contact sessions ------------------------------------------------------------------------


async def _session(server: LiveServer, tenant: Tenant) -> tuple[str, str]:
    started = (await data(server, START_SESSION, {"input": {"channelKey": tenant.channel.public_key}}))[
        "startContactSession"
    ]
    assert started["userErrors"] == []
    return started["token"], started["contact"]["id"]


async def test_rotating_the_channel_secret_ends_its_contact_sessions(
    server: LiveServer, tenant: Tenant, api: Api
) -> None:
    from strawberry.relay import GlobalID

    token, contact_id = await _session(server, tenant)
    await assert_accepted(server, token)
    manager, ws = await listening(server, token, contact_id)
    try:
        channel = str(GlobalID("Channel", str(tenant.channel.id)))
        assert (await api(ROTATE, {"input": {"id": channel}}, token=tenant.owner_token))["rotateChannelSecret"][
            "userErrors"
        ] == []
        code, _, took = await closed_soon(ws)
        assert code == 4403 and took < CLOSED_WITHIN
    finally:
        await manager.__aexit__(None, None, None)
    assert (await data(server, VIEWER, token=token))["viewer"] is None
    # Passing the old token back does not resume its contact: a new visitor starts.
    resumed = (
        await data(server, START_SESSION, {"input": {"channelKey": tenant.channel.public_key, "sessionToken": token}})
    )["startContactSession"]
    assert resumed["userErrors"] == [] and resumed["contact"]["id"] != contact_id
    await assert_accepted(server, resumed["token"])
    await assert_accepted(server, tenant.owner_token)  # agents are not touched


async def test_turning_verification_on_ends_the_channels_sessions_and_only_then(
    server: LiveServer, tenant: Tenant
) -> None:
    from strawberry.relay import GlobalID

    channel = str(GlobalID("Channel", str(tenant.channel.id)))
    token, _ = await _session(server, tenant)
    renamed = (await data(server, UPDATE_CHANNEL, {"input": {"id": channel, "name": "Renamed"}}, tenant.owner_token))[
        "updateChannel"
    ]
    assert renamed["userErrors"] == []
    await assert_accepted(server, token)  # other settings end nothing

    on = (
        await data(server, UPDATE_CHANNEL, {"input": {"id": channel, "identityVerification": True}}, tenant.owner_token)
    )["updateChannel"]
    assert on == {"channel": {"identityVerification": True}, "userErrors": []}
    assert (await data(server, VIEWER, token=token))["viewer"] is None

    later, _ = await _session(server, tenant)  # an anonymous visitor after the change
    again = (
        await data(server, UPDATE_CHANNEL, {"input": {"id": channel, "identityVerification": True}}, tenant.owner_token)
    )["updateChannel"]
    assert again["userErrors"] == []
    await assert_accepted(server, later)  # verification already on: nothing ended


# -- what a change costs others --------------------------------------------------------------

END_SESSION = f"mutation {{ endContactSession {{ ok {ERRORS} }} }}"


async def _socket_checks(server: LiveServer) -> int:
    import re

    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        found = re.search(r"^parley_socket_credential_checks_total (\d+)$", (await http.get("/metrics")).text, re.M)
    assert found
    return int(found.group(1))


async def test_a_stranger_ending_sessions_in_a_loop_re_checks_nobody_elses_socket(
    server: LiveServer, tenant: Tenant
) -> None:
    """The widget key is public: anyone may start sessions and end them as fast as the rate
    limit allows. Each end names its own contact, so the process re-checks that contact's
    sockets only; an agent's and another visitor's sockets are left alone (before, every
    end re-checked every socket of every process)."""
    contact = await tenant.contact(name="Watched")
    visitor, visitor_contact = await _session(server, tenant)
    agent_manager, agent_ws = await listening(server, tenant.owner_token, contact["id"])
    visitor_manager, visitor_ws = await listening(server, visitor, visitor_contact)
    try:

        async def stranger_starts_and_ends() -> None:
            token, _ = await _session(server, tenant)
            assert (await data(server, END_SESSION, token=token))["endContactSession"] == {"ok": True, "userErrors": []}

        # A first change resets the guard's periodic sweep (60 s), which would check every
        # socket; the rest of the test takes far less.
        await stranger_starts_and_ends()
        await asyncio.sleep(0.3)
        before = await _socket_checks(server)
        for _ in range(15):
            await stranger_starts_and_ends()
        await asyncio.sleep(0.3)
        assert await _socket_checks(server) == before, "a stranger's ended sessions re-checked other sockets"
        assert await still_open(agent_ws, 0.2) and await still_open(visitor_ws, 0.2)

        # The visitor ending its own session checks exactly its one credential and closes it.
        assert (await data(server, END_SESSION, token=visitor))["endContactSession"]["ok"] is True
        code, _, took = await closed_soon(visitor_ws)
        assert code == 4403 and took < CLOSED_WITHIN
        assert await _socket_checks(server) == before + 1
        assert await still_open(agent_ws, 0.2)
    finally:
        await agent_manager.__aexit__(None, None, None)
        await visitor_manager.__aexit__(None, None, None)
