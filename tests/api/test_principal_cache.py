"""Principals are cached per process for a few seconds (core/principal_cache.py): a
revoked key, a changed role or a deleted contact still take effect at once, in the
process that made the change and in every other one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Api, Tenant, start_server

VIEWER = "{ viewer { kind agent { role } contact { id } scopes } }"
CREATE_API_KEY = (
    "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret userErrors { code } } }"
)
REVOKE_API_KEY = (
    "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { apiKey { revokedAt } userErrors { code } } }"
)
UPDATE_AGENT = "mutation($i: UpdateAgentInput!) { updateAgent(input: $i) { agent { role } userErrors { code } } }"
DELETE_CONTACT = "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }"
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    "token contact { id } userErrors { code } } }"
)


async def _post(url: str, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        body = (
            await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers={"authorization": f"Bearer {token}"}
            )
        ).json()
    assert not body.get("errors"), body
    return body["data"]  # type: ignore[no-any-return]


async def test_a_revoked_key_and_a_demotion_stop_working_in_every_process_at_once(
    tenant: Tenant, tmp_path: Path
) -> None:
    one = start_server(tmp_path, name="one")
    two = start_server(tmp_path, name="two")
    try:
        made = (
            await _post(
                one.url, CREATE_API_KEY, {"i": {"name": "Temp", "scopes": ["contacts:read"]}}, tenant.owner_token
            )
        )["createApiKey"]
        key = made["secret"]
        agent, agent_token = await tenant.agent(role="admin")
        # Both processes have checked (and cached) both credentials.
        for server in (one, two):
            assert (await _post(server.url, VIEWER, {}, key))["viewer"]["kind"] == "API_KEY"
            assert (await _post(server.url, VIEWER, {}, agent_token))["viewer"]["agent"]["role"] == "ADMIN"

        # Changed through `one`: `two`, which holds both in its cache, hears of it within a
        # Redis round trip (the mutation answers after the commit and the publication).
        revoked = (await _post(one.url, REVOKE_API_KEY, {"i": {"id": made["apiKey"]["id"]}}, tenant.owner_token))[
            "revokeApiKey"
        ]
        assert revoked["userErrors"] == [] and revoked["apiKey"]["revokedAt"]
        assert await _eventually(two.url, key, lambda data: data["viewer"] is None)
        assert (await _post(two.url, VIEWER, {}, agent_token))["viewer"]["agent"]["role"] == "ADMIN"  # cached again
        demoted = await _post(
            one.url, UPDATE_AGENT, {"i": {"id": _agent_gid(agent.id), "role": "AGENT"}}, tenant.owner_token
        )
        assert demoted["updateAgent"] == {"agent": {"role": "AGENT"}, "userErrors": []}
        assert await _eventually(two.url, agent_token, lambda data: data["viewer"]["agent"]["role"] == "AGENT")
        for server in (one, two):
            assert (await _post(server.url, VIEWER, {}, key))["viewer"] is None
            assert (await _post(server.url, VIEWER, {}, agent_token))["viewer"]["agent"]["role"] == "AGENT"
        assert (await _post(two.url, VIEWER, {}, tenant.api_key))["viewer"]["kind"] == "API_KEY"
    finally:
        one.stop()
        two.stop()


async def test_a_deleted_contacts_session_is_anonymous_at_once(api: Api, tenant: Tenant) -> None:
    session = (await api(SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": "u-1"}}))[
        "startContactSession"
    ]
    assert session["userErrors"] == []
    assert (await api(VIEWER, token=session["token"]))["viewer"]["kind"] == "CONTACT"  # cached now
    deleted = await api(DELETE_CONTACT, {"i": {"id": session["contact"]["id"]}}, token=tenant.owner_token)
    assert deleted["deleteContact"]["userErrors"] == []
    assert (await api(VIEWER, token=session["token"]))["viewer"] is None


async def test_a_role_change_takes_effect_on_the_next_request(api: Api, tenant: Tenant) -> None:
    agent, token = await tenant.agent(role="admin")
    assert (await api(VIEWER, token=token))["viewer"]["agent"]["role"] == "ADMIN"
    await api(UPDATE_AGENT, {"i": {"id": _agent_gid(agent.id), "role": "AGENT"}}, token=tenant.owner_token)
    assert (await api(VIEWER, token=token))["viewer"]["agent"]["role"] == "AGENT"


def _agent_gid(pk: int) -> str:
    from core.scoping import encode_global_id

    return encode_global_id("Agent", pk)


async def _eventually(url: str, token: str, check: Any, attempts: int = 40) -> bool:
    """Within 0.4 s (the cache's TTL is 5 s): the change did not wait for the TTL."""
    import asyncio

    for _ in range(attempts):
        if check(await _post(url, VIEWER, {}, token)):
            return True
        await asyncio.sleep(0.01)
    return False


END_SESSION = "mutation { endContactSession { ok } }"


async def test_a_stranger_ending_its_sessions_keeps_everyone_elses_cached(api: Api, tenant: Tenant) -> None:
    """An ended session drops its own contact's cached principal, in every process, and
    nobody else's: a stranger with the public widget key cannot empty the cache (each
    request after it would cost an authentication query) by ending sessions in a loop."""
    from core.principal_cache import principal_cache

    visitor = (await api(SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": "u-2"}}))[
        "startContactSession"
    ]["token"]
    stranger = (await api(SESSION, {"i": {"channelKey": tenant.channel.public_key}}))["startContactSession"]["token"]
    for token in (tenant.owner_token, tenant.api_key, visitor, stranger):
        assert (await api(VIEWER, token=token))["viewer"] is not None
        assert token in principal_cache.entries
    assert (await api(END_SESSION, token=stranger))["endContactSession"]["ok"] is True
    assert stranger not in principal_cache.entries
    assert all(token in principal_cache.entries for token in (tenant.owner_token, tenant.api_key, visitor))
    assert (await api(VIEWER, token=stranger))["viewer"] is None
    assert (await api(VIEWER, token=visitor))["viewer"]["kind"] == "CONTACT"
