"""Routing through the GraphQL API, on the real database and Redis: rules in order (VIP,
segment, channel; first match wins), round-robin among online agents within their
capacity, fair when conversations arrive together, the offline sweep (the arq job's
function, called as the worker calls it), and who may manage rules."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx

from core import presence
from core.clock import frozen, now
from core.events import Outbox
from jobs.routing import reassign_offline
from models.channels import ChannelKind
from services.routing import OFFLINE_TIMEOUT, assign_next
from tests.conftest import Api, Tenant, pk
from tests.conversations.test_inbound import inbound, job_ctx, make_channel

ERRORS = "userErrors { field code message }"
CREATE_RULE = (
    f"mutation($i: CreateRoutingRuleInput!) {{ createRoutingRule(input: $i) {{ "
    f"routingRule {{ id name position enabled autoAssign channelIds segmentId teamId rules }} {ERRORS} }} }}"
)
UPDATE_RULE = (
    "mutation($i: UpdateRoutingRuleInput!) { updateRoutingRule(input: $i) { "
    f"routingRule {{ id enabled }} {ERRORS} }} }}"
)
CAPACITY = (
    "mutation($i: SetAgentCapacityInput!) { setAgentCapacity(input: $i) { "
    f"agent {{ id routingCapacity }} {ERRORS} }} }}"
)
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    f"token contact {{ id }} {ERRORS} }} }}"
)
START = f"mutation($i: StartConversationInput!) {{ startConversation(input: $i) {{ conversation {{ id }} {ERRORS} }} }}"
GET = "query($id: ID!) { conversation(id: $id) { id status team { id } assignee { id } } }"
VIP = {"match": "ALL", "conditions": [{"field": "vip", "operator": "EQUALS", "value": {"boolean": True}}]}


async def ok(api: Api, doc: str, variables: dict[str, Any], token: str, field: str) -> dict[str, Any]:
    payload = (await api(doc, variables, token=token))[field]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload  # type: ignore[no-any-return]


async def team(tenant: Tenant, name: str, members: list[Any]) -> str:
    made = await ok(
        tenant.api,
        f"mutation($i: CreateTeamInput!) {{ createTeam(input: $i) {{ team {{ id }} {ERRORS} }} }}",
        {"i": {"name": name}},
        tenant.owner_token,
        "createTeam",
    )
    team_id: str = made["team"]["id"]
    if members:
        await ok(
            tenant.api,
            f"mutation($i: TeamMembersInput!) {{ addTeamMembers(input: $i) {{ team {{ id }} {ERRORS} }} }}",
            {"i": {"teamId": team_id, "agentIds": [gid("Agent", a.id) for a in members]}},
            tenant.owner_token,
            "addTeamMembers",
        )
    return team_id


def gid(type_name: str, pk_: int) -> str:
    from strawberry import relay

    return str(relay.GlobalID(type_name, str(pk_)))


async def rule(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    made = await ok(tenant.api, CREATE_RULE, {"i": {"name": "Rule", **fields}}, tenant.owner_token, "createRoutingRule")
    return made["routingRule"]  # type: ignore[no-any-return]


async def capacity(tenant: Tenant, agent: Any, n: int) -> None:
    await ok(
        tenant.api,
        CAPACITY,
        {"i": {"agentId": gid("Agent", agent.id), "capacity": n}},
        tenant.owner_token,
        "setAgentCapacity",
    )


async def contact_starts(tenant: Tenant, external_id: str, **contact: Any) -> str:
    """A widget visitor (with these contact fields, set by the owner) starts a conversation."""
    session = await ok(
        tenant.api,
        SESSION,
        {"i": {"channelKey": tenant.channel.public_key, "externalId": external_id}},
        "",
        "startContactSession",
    )
    if contact:
        doc = f"mutation($i: UpdateContactInput!) {{ updateContact(input: $i) {{ contact {{ id }} {ERRORS} }} }}"
        await ok(
            tenant.api, doc, {"i": {"id": session["contact"]["id"], **contact}}, tenant.owner_token, "updateContact"
        )
    started = await ok(tenant.api, START, {"i": {"body": "Hello"}}, session["token"], "startConversation")
    return started["conversation"]["id"]  # type: ignore[no-any-return]


async def seen(tenant: Tenant, conversation_id: str) -> tuple[str | None, str | None]:
    """(team id, assignee id) as the owner sees them."""
    c = (await tenant.api(GET, {"id": conversation_id}, token=tenant.owner_token))["conversation"]
    return (c["team"] or {}).get("id"), (c["assignee"] or {}).get("id")


@contextlib.asynccontextmanager
async def online(app: Any, tenant: Tenant, *agents: Any) -> AsyncIterator[None]:
    """These agents online, as an open inbox subscription keeps them (core/presence.py)."""
    async with contextlib.AsyncExitStack() as stack:
        for agent in agents:
            await stack.enter_async_context(
                presence.present(app.state.hub.redis, tenant.workspace.id, "agent", agent.id)
            )
        yield


# -- rules ---------------------------------------------------------------------------------------


async def test_the_first_matching_rule_routes_by_vip_segment_and_channel(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    vip_team = await team(tenant, "VIP", [])
    lyon_team = await team(tenant, "Lyon", [])
    mail_team = await team(tenant, "Mail", [])
    email = await make_channel(tenant, ChannelKind.EMAIL)
    segment = await ok(
        tenant.api,
        f"mutation($i: CreateSegmentInput!) {{ createSegment(input: $i) {{ segment {{ id }} {ERRORS} }} }}",
        {
            "i": {
                "name": "Lyon",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Lyon"}}],
                },
            }
        },
        tenant.owner_token,
        "createSegment",
    )
    # Created out of order: position decides.
    await rule(
        tenant, name="By mail", teamId=mail_team, channelIds=[gid("Channel", email.id)], position=3, autoAssign=False
    )
    await rule(tenant, name="Lyon", teamId=lyon_team, segmentId=segment["segment"]["id"], position=2, autoAssign=False)
    made = await rule(tenant, name="VIPs", teamId=vip_team, rules=VIP, position=1, autoAssign=False)
    assert made["rules"] == {
        "match": "all",
        "conditions": [{"field": "vip", "operator": "equals", "value": True}],
        "groups": [],
    }

    both = await contact_starts(tenant, "ada", vip=True, city="Lyon")
    lyon = await contact_starts(tenant, "bob", city="Lyon")
    other = await contact_starts(tenant, "cy", city="Paris")
    assert await seen(tenant, both) == (vip_team, None)  # first match wins
    assert await seen(tenant, lyon) == (lyon_team, None)
    assert await seen(tenant, other) == (None, None)
    by_mail = await inbound(
        client,
        email,
        {"from": "dee@example.com", "subject": "Hi", "text": "Hello", "messageId": "<r1@mail.example.com>"},
    )
    assert await seen(tenant, by_mail["conversationId"]) == (mail_team, None)

    # A disabled rule is skipped.
    await ok(
        tenant.api, UPDATE_RULE, {"i": {"id": made["id"], "enabled": False}}, tenant.owner_token, "updateRoutingRule"
    )
    later = await contact_starts(tenant, "ed", vip=True, city="Lyon")
    assert await seen(tenant, later) == (lyon_team, None)


# -- round-robin -----------------------------------------------------------------------------


async def test_online_agents_take_turns_up_to_their_capacity(tenant: Tenant, app: Any) -> None:
    ann, _ = await tenant.agent()
    ben, _ = await tenant.agent()
    cat, _ = await tenant.agent()  # offline: never chosen
    support = await team(tenant, "Support", [ann, ben, cat])
    await rule(tenant, teamId=support)
    await capacity(tenant, ann, 2)
    await capacity(tenant, ben, 1)
    async with online(app, tenant, ann, ben):
        assigned = [(await seen(tenant, await contact_starts(tenant, f"v{i}")))[1] for i in range(4)]
    assert assigned == [gid("Agent", ann.id), gid("Agent", ben.id), gid("Agent", ann.id), None]


async def test_conversations_arriving_together_never_overfill_an_agent(tenant: Tenant, app: Any) -> None:
    """Four conversations wait in the queue (nobody was online); two agents with room for
    one each come online, and four assignments run at once, as four API processes' would
    after their commits: two are assigned, one to each agent."""
    ann, _ = await tenant.agent()
    ben, _ = await tenant.agent()
    support = await team(tenant, "Support", [ann, ben])
    await rule(tenant, teamId=support)
    await capacity(tenant, ann, 1)
    await capacity(tenant, ben, 1)
    waiting = [await contact_starts(tenant, f"rush-{i}") for i in range(4)]
    assert {await seen(tenant, c) for c in waiting} == {(support, None)}
    hub = app.state.hub
    async with online(app, tenant, ann, ben):
        await asyncio.gather(*(assign_next(Outbox(hub, app.state.jobs), hub.redis, pk(c)) for c in waiting))
    assignees = [(await seen(tenant, c))[1] for c in waiting]
    assert sorted(a or "" for a in assignees) == sorted(["", "", gid("Agent", ann.id), gid("Agent", ben.id)])


# -- the offline sweep -----------------------------------------------------------------------


async def test_the_sweep_moves_conversations_of_agents_offline_past_the_timeout(tenant: Tenant, app: Any) -> None:
    ann, _ = await tenant.agent()
    ben, _ = await tenant.agent()
    support = await team(tenant, "Support", [ann, ben])
    await rule(tenant, teamId=support)
    ctx = job_ctx(app)
    async with online(app, tenant, ann):
        conversation = await contact_starts(tenant, "ada")
    assert await seen(tenant, conversation) == (support, gid("Agent", ann.id))

    # (The sweep covers every workspace: what it did here is read from this workspace.)
    async with online(app, tenant, ben):
        start = now()
        await reassign_offline(ctx)  # ann is seen offline from now on
        with frozen(start + OFFLINE_TIMEOUT - timedelta(seconds=5)):
            await reassign_offline(ctx)  # not yet
        assert await seen(tenant, conversation) == (support, gid("Agent", ann.id))
        with frozen(start + OFFLINE_TIMEOUT + timedelta(seconds=1)):
            await reassign_offline(ctx)
            assert await seen(tenant, conversation) == (support, gid("Agent", ben.id))
            await reassign_offline(ctx)  # idempotent
        assert await seen(tenant, conversation) == (support, gid("Agent", ben.id))

    # Ben leaves too and nobody is online: back to the team's queue after the timeout ...
    start = now()
    await reassign_offline(ctx)
    assert await seen(tenant, conversation) == (support, gid("Agent", ben.id))
    with frozen(start + OFFLINE_TIMEOUT + timedelta(seconds=1)):
        await reassign_offline(ctx)
    assert await seen(tenant, conversation) == (support, None)
    # ... and the next agent to come online gets it.
    async with online(app, tenant, ann):
        await reassign_offline(ctx)
    assert await seen(tenant, conversation) == (support, gid("Agent", ann.id))


# -- who may ---------------------------------------------------------------------------------


async def test_only_owners_and_admins_manage_rules_and_inputs_are_checked(tenant: Tenant) -> None:
    support = await team(tenant, "Support", [])
    _, agent_token = await tenant.agent()
    _, admin_token = await tenant.agent(role="admin")
    session = await ok(tenant.api, SESSION, {"i": {"channelKey": tenant.channel.public_key}}, "", "startContactSession")
    create = {"i": {"name": "Mine", "teamId": support}}
    for token in (agent_token, tenant.api_key, session["token"], ""):
        errors = await tenant.api.errors(CREATE_RULE, create, token=token)
        assert errors[0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED")
        errors = await tenant.api.errors("{ routingRules { edges { node { id } } } }", token=token)
        assert errors[0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED")
    made = await ok(tenant.api, CREATE_RULE, create, admin_token, "createRoutingRule")
    listed = await tenant.api("{ routingRules { edges { node { id } } } }", token=admin_token)
    assert [e["node"]["id"] for e in listed["routingRules"]["edges"]] == [made["routingRule"]["id"]]

    bad = {
        "name": "x" * 121,
        "teamId": support,
        "position": -1,
        "channelIds": [gid("Channel", tenant.channel.id)] * 21,
        "rules": {"match": "ALL", "conditions": [{"field": "shoe_size", "operator": "EQUALS", "value": {"number": 9}}]},
    }
    payload = (await tenant.api(CREATE_RULE, {"i": bad}, token=tenant.owner_token))["createRoutingRule"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["name"], "INVALID"),
        (["position"], "INVALID"),
        (["channelIds"], "INVALID"),
        (["rules", "conditions", "0", "field"], "UNKNOWN_FIELD"),
    ]
    payload = (
        await tenant.api(
            CAPACITY, {"i": {"agentId": gid("Agent", tenant.owner.id), "capacity": 101}}, token=tenant.owner_token
        )
    )["setAgentCapacity"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["capacity"], "INVALID")]
    for n in range(49):
        await ok(
            tenant.api,
            CREATE_RULE,
            {"i": {"name": f"R{n}", "teamId": support}},
            tenant.owner_token,
            "createRoutingRule",
        )
    payload = (await tenant.api(CREATE_RULE, create, token=tenant.owner_token))["createRoutingRule"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(None, "NOT_ALLOWED")]
