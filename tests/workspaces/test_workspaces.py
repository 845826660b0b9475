"""Managing a workspace's people and settings through the API: only owners and admins
manage attribute definitions, agents, teams, API keys and the workspace; agents cannot
promote themselves, admins cannot touch owners, the last owner stays."""

from __future__ import annotations

import secrets
from typing import Any

from tests.api.test_permissions import CREATE_DEFINITION, PASSWORD, UPDATE_AGENT, VIEWER, forbidden, user_errors
from tests.conftest import Api


async def test_only_owners_and_admins_manage_definitions_agents_teams_and_keys(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    agent_model, agent = await tenant.agent(role="agent")
    _, admin = await tenant.agent(role="admin")
    agent_gid = (await api(VIEWER, token=agent))["viewer"]["agent"]["id"]

    team = (
        await api(
            'mutation { createTeam(input: {name: "Support"}) { team { id } userErrors { code } } }',
            token=tenant.owner_token,
        )
    )["createTeam"]["team"]
    definition = (
        await api(CREATE_DEFINITION, {"i": {"key": "tier", "label": "Tier", "type": "TEXT"}}, token=tenant.owner_token)
    )["createAttributeDefinition"]["attributeDefinition"]
    defs = await api("{ attributeDefinitions { edges { node { id } } } }", token=tenant.owner_token)
    def_ids = [e["node"]["id"] for e in defs["attributeDefinitions"]["edges"]]
    key_id = (await api("{ apiKeys { edges { node { id } } } }", token=tenant.owner_token))["apiKeys"]["edges"][0][
        "node"
    ]["id"]

    def mutation(name: str, input_type: str, select: str = "userErrors { field code }") -> str:
        return f"mutation($i: {input_type}!) {{ {name}(input: $i) {{ {select} }} }}"

    attempts = [
        (
            mutation("createAttributeDefinition", "CreateAttributeDefinitionInput"),
            {"key": "hacked", "label": "H", "type": "TEXT"},
        ),
        (
            mutation("updateAttributeDefinition", "UpdateAttributeDefinitionInput"),
            {"id": definition["id"], "label": "Hacked"},
        ),
        (mutation("deleteAttributeDefinition", "ContactIdInput"), {"id": definition["id"]}),
        (mutation("reorderAttributeDefinitions", "ReorderAttributeDefinitionsInput"), {"ids": list(reversed(def_ids))}),
        (
            mutation("createAgent", "CreateAgentInput"),
            {"email": f"new-{secrets.token_hex(3)}@example.com", "name": "New", "password": PASSWORD},
        ),
        (mutation("updateAgent", "UpdateAgentInput"), {"id": agent_gid, "canEditContactIdentity": True}),
        (mutation("createTeam", "CreateTeamInput"), {"name": "Mine"}),
        (mutation("addTeamMembers", "TeamMembersInput"), {"teamId": team["id"], "agentIds": [agent_gid]}),
        (mutation("removeTeamMembers", "TeamMembersInput"), {"teamId": team["id"], "agentIds": [agent_gid]}),
        (mutation("createApiKey", "CreateApiKeyInput"), {"name": "Mine", "scopes": ["contacts:read"]}),
        (mutation("revokeApiKey", "RevokeApiKeyInput"), {"id": key_id}),
        (mutation("updateWorkspace", "UpdateWorkspaceInput"), {"name": "Hacked"}),
    ]
    state = """{ workspace { name } agents { totalCount edges { node { id role canEditContactIdentity } } }
      teams { edges { node { id name members { id } } } } apiKeys { edges { node { id revokedAt } } }
      attributeDefinitions { edges { node { id label position } } } }"""
    before = await api(state, token=tenant.owner_token)
    for query, variables in attempts:
        await forbidden(api, query, {"i": variables}, agent)
    await forbidden(api, "{ apiKeys { totalCount } }", None, agent)
    assert await api(state, token=tenant.owner_token) == before

    # The admin does each of them.
    for query, variables in attempts:
        if "deleteAttributeDefinition" in query:  # keep it for reorder's full list
            continue
        if "reorderAttributeDefinitions" in query:  # the list now has the admin's new one
            defs = await api("{ attributeDefinitions { edges { node { id } } } }", token=admin)
            variables = {"ids": [e["node"]["id"] for e in reversed(defs["attributeDefinitions"]["edges"])]}
        body = (await api.raw(query, {"i": variables}, token=admin)).json()
        assert "errors" not in body, (query, body)
        assert next(iter(body["data"].values()))["userErrors"] == [], (query, body)
    assert (await api("{ apiKeys { totalCount } }", token=admin))["apiKeys"]["totalCount"] >= 1
    assert agent_model.id  # the agent still exists and is a plain agent
    assert (await api(VIEWER, token=agent))["viewer"]["agent"]["role"] == "AGENT"


async def test_agents_cannot_promote_themselves_and_admins_cannot_touch_owners(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    _, agent = await tenant.agent(role="agent")
    _, admin = await tenant.agent(role="admin")
    agent_gid = (await api(VIEWER, token=agent))["viewer"]["agent"]["id"]
    admin_gid = (await api(VIEWER, token=admin))["viewer"]["agent"]["id"]
    owner_gid = (await api(VIEWER, token=tenant.owner_token))["viewer"]["agent"]["id"]

    for role in ("ADMIN", "OWNER"):
        await forbidden(api, UPDATE_AGENT, {"i": {"id": agent_gid, "role": role}}, agent)
    assert (await api(VIEWER, token=agent))["viewer"]["agent"]["role"] == "AGENT"

    payload = (await api(UPDATE_AGENT, {"i": {"id": admin_gid, "role": "OWNER"}}, token=admin))["updateAgent"]
    assert user_errors(payload) == [(["role"], "FORBIDDEN")]
    payload = (await api(UPDATE_AGENT, {"i": {"id": owner_gid, "role": "AGENT"}}, token=admin))["updateAgent"]
    assert user_errors(payload) == [(["role"], "FORBIDDEN")]
    create = "mutation($i: CreateAgentInput!) { createAgent(input: $i) { agent { id } userErrors { field code } } }"
    payload = (
        await api(
            create,
            {
                "i": {
                    "email": f"o-{secrets.token_hex(3)}@example.com",
                    "name": "O",
                    "password": PASSWORD,
                    "role": "OWNER",
                }
            },
            token=admin,
        )
    )["createAgent"]
    assert user_errors(payload) == [(["role"], "FORBIDDEN")]
    assert (await api(VIEWER, token=admin))["viewer"]["agent"]["role"] == "ADMIN"
    assert (await api(VIEWER, token=tenant.owner_token))["viewer"]["agent"]["role"] == "OWNER"

    # The admin does promote the agent to admin.
    payload = (await api(UPDATE_AGENT, {"i": {"id": agent_gid, "role": "ADMIN"}}, token=admin))["updateAgent"]
    assert payload == {"agent": {"id": agent_gid, "role": "ADMIN"}, "userErrors": []}


async def test_the_last_owner_cannot_be_demoted(api: Api, make_tenant: Any) -> None:
    tenant = await make_tenant()
    _, other = await tenant.agent(role="admin")
    owner_gid = (await api(VIEWER, token=tenant.owner_token))["viewer"]["agent"]["id"]
    other_gid = (await api(VIEWER, token=other))["viewer"]["agent"]["id"]

    for role in ("ADMIN", "AGENT"):
        payload = (await api(UPDATE_AGENT, {"i": {"id": owner_gid, "role": role}}, token=tenant.owner_token))[
            "updateAgent"
        ]
        assert user_errors(payload) == [(["role"], "CONFLICT")]
    assert (await api(VIEWER, token=tenant.owner_token))["viewer"]["agent"]["role"] == "OWNER"

    # With a second owner, the first may step down.
    promoted = (await api(UPDATE_AGENT, {"i": {"id": other_gid, "role": "OWNER"}}, token=tenant.owner_token))[
        "updateAgent"
    ]
    assert promoted["userErrors"] == []
    stepped = (await api(UPDATE_AGENT, {"i": {"id": owner_gid, "role": "ADMIN"}}, token=tenant.owner_token))[
        "updateAgent"
    ]
    assert stepped == {"agent": {"id": owner_gid, "role": "ADMIN"}, "userErrors": []}
    # ... and now the other is the last one.
    payload = (await api(UPDATE_AGENT, {"i": {"id": other_gid, "role": "AGENT"}}, token=other))["updateAgent"]
    assert user_errors(payload) == [(["role"], "CONFLICT")]
