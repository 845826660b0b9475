"""GraphQL documents and small steps the proactive tests share."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, Tenant

FIELDS = (
    "id name status error responseType text askName askEmail followUpText rules tags sendWindow frequency "
    "templateKey sent opened replied updatedAt channel { id kind } routeTeam { id } botAnswer { id }"
)
ERRORS = "userErrors { field code message }"

CREATE = (
    f"mutation($i: CreateProactiveMessageInput!) {{ createProactiveMessage(input: $i) {{ "
    f"proactiveMessage {{ {FIELDS} }} {ERRORS} }} }}"
)
UPDATE = (
    f"mutation($i: UpdateProactiveMessageInput!) {{ updateProactiveMessage(input: $i) {{ "
    f"proactiveMessage {{ {FIELDS} }} {ERRORS} }} }}"
)
ACTION = (
    "mutation($i: ProactiveMessageIdInput!) {{ {name}(input: $i) {{ "
    "proactiveMessage {{ id name status error }} {errors} }} }}"
)
DELETE = f"mutation($i: ProactiveMessageIdInput!) {{ deleteProactiveMessage(input: $i) {{ deletedId {ERRORS} }} }}"
GET = f"query($id: ID!) {{ proactiveMessage(id: $id) {{ {FIELDS} }} }}"
LIST = (
    "query($o: ProactiveMessageOrder, $first: Int, $after: String) { "
    "proactiveMessages(orderBy: $o, first: $first, after: $after) { "
    "totalCount edges { cursor node { id name status sent opened replied updatedAt } } "
    "pageInfo { hasNextPage endCursor } } }"
)

REPORT = (
    f"mutation($i: ReportPageViewInput!) {{ reportPageView(input: $i) {{ "
    f"visitNumber delivery {{ id messageId text responseType askName askEmail }} {ERRORS} }} }}"
)
OPEN = (
    f"mutation($i: ProactiveDeliveryIdInput!) {{ openProactiveMessage(input: $i) {{ "
    f"delivery {{ id openedAt }} {ERRORS} }} }}"
)
DISMISS = (
    f"mutation($i: ProactiveDeliveryIdInput!) {{ dismissProactiveMessage(input: $i) {{ "
    f"delivery {{ id dismissedAt }} {ERRORS} }} }}"
)
ANSWER = (
    f"mutation($i: AnswerProactiveMessageInput!) {{ answerProactiveMessage(input: $i) {{ "
    f"delivery {{ id repliedAt conversationId }} conversation {{ id tags team {{ id }} }} {ERRORS} }} }}"
)
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    "token contact { id } userErrors { field code } } }"
)

CREATE_BOT = f"mutation($i: CreateBotInput!) {{ createBot(input: $i) {{ bot {{ id name }} {ERRORS} }} }}"
CREATE_ANSWER = (
    f"mutation($i: CreateBotAnswerInput!) {{ createBotAnswer(input: $i) {{ botAnswer {{ id published }} {ERRORS} }} }}"
)
ANSWER_ACTION = "mutation($i: BotAnswerIdInput!) {{ {name}(input: $i) {{ {errors} }} }}"

SUBSCRIBE = "subscription { proactiveMessages { cursor delivery { id messageId text responseType askName askEmail } } }"

EVERYONE = {"match": "ALL", "conditions": []}


async def ok(api: Api, doc: str, variables: dict[str, Any], token: str, root: str) -> dict[str, Any]:
    payload = (await api(doc, variables, token=token))[root]
    assert payload["userErrors"] == [], (root, payload["userErrors"])
    return payload  # type: ignore[no-any-return]


async def errors(
    api: Api, doc: str, variables: dict[str, Any], token: str, root: str
) -> list[tuple[list[str] | None, str]]:
    payload = (await api(doc, variables, token=token))[root]
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def channel_id(tenant: Tenant) -> str:
    data = await tenant.api("{ channels { edges { node { id kind } } } }", token=tenant.owner_token)
    return next(e["node"]["id"] for e in data["channels"]["edges"] if e["node"]["kind"] == "WEB_WIDGET")


async def live_message(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    """A published message on the tenant's widget (text, any time, every page view by default)."""
    values = {
        "name": "Hello",
        "text": "Can we help?",
        "channelId": await channel_id(tenant),
        "rules": EVERYONE,
        "sendWindow": "ANY_TIME",
        "frequency": "EVERY_TIME",
        **fields,
    }
    created = await ok(tenant.api, CREATE, {"i": values}, tenant.owner_token, "createProactiveMessage")
    mid = created["proactiveMessage"]["id"]
    published = await ok(
        tenant.api,
        ACTION.format(name="publishProactiveMessage", errors=ERRORS),
        {"i": {"id": mid}},
        tenant.owner_token,
        "publishProactiveMessage",
    )
    assert published["proactiveMessage"]["status"] == "LIVE"
    return created["proactiveMessage"]  # type: ignore[no-any-return]


async def session(tenant: Tenant, external_id: str, **extra: Any) -> tuple[str, str]:
    data = await ok(
        tenant.api,
        SESSION,
        {"i": {"channelKey": tenant.channel.public_key, "externalId": external_id, **extra}},
        "",
        "startContactSession",
    )
    return data["token"], data["contact"]["id"]


async def report(tenant: Tenant, token: str, **view: Any) -> dict[str, Any]:
    return await ok(tenant.api, REPORT, {"i": {"url": "https://shop.example/", **view}}, token, "reportPageView")


async def act(tenant: Tenant, name: str, mid: str) -> list[tuple[list[str] | None, str]]:
    return await errors(
        tenant.api, ACTION.format(name=name, errors=ERRORS), {"i": {"id": mid}}, tenant.owner_token, name
    )
