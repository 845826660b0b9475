"""Proactive messages as an admin manages them: fields and their errors, the templates of a
new workspace, every lifecycle transition and every forbidden one, sorting, permissions,
and messages turning HAS_ERRORS when their channel or bot answer goes away."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Tenant
from tests.proactive.helpers import (
    ACTION,
    ANSWER_ACTION,
    CREATE,
    CREATE_ANSWER,
    CREATE_BOT,
    DELETE,
    ERRORS,
    EVERYONE,
    GET,
    LIST,
    UPDATE,
    act,
    channel_id,
    errors,
    live_message,
    ok,
)


async def create(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    return (
        await ok(tenant.api, CREATE, {"i": {"name": "Msg", **fields}}, tenant.owner_token, "createProactiveMessage")
    )["proactiveMessage"]  # type: ignore[no-any-return]


async def status(tenant: Tenant, mid: str) -> str:
    return (await tenant.api(GET, {"id": mid}, token=tenant.owner_token))["proactiveMessage"]["status"]  # type: ignore[no-any-return]


async def test_every_new_workspace_has_three_draft_templates_ready_to_clone(tenant: Tenant) -> None:
    listed = (await tenant.api(LIST, {"o": {"field": "NAME", "direction": "ASC"}}, token=tenant.owner_token))[
        "proactiveMessages"
    ]
    names = [e["node"]["name"] for e in listed["edges"]]
    assert names == ["Help at checkout", "Returning visitors on pricing", "Welcome new visitors"]
    assert {e["node"]["status"] for e in listed["edges"]} == {"DRAFT"}
    template = listed["edges"][0]["node"]["id"]
    clone = await ok(
        tenant.api,
        ACTION.format(name="cloneProactiveMessage", errors=ERRORS),
        {"i": {"id": template}},
        tenant.owner_token,
        "cloneProactiveMessage",
    )
    copied = (await tenant.api(GET, {"id": clone["proactiveMessage"]["id"]}, token=tenant.owner_token))[
        "proactiveMessage"
    ]
    original = (await tenant.api(GET, {"id": template}, token=tenant.owner_token))["proactiveMessage"]
    assert (
        copied["name"] == "Copy of Help at checkout" and copied["status"] == "DRAFT" and copied["templateKey"] is None
    )
    assert original["templateKey"] == "checkout_help"
    assert {k: v for k, v in copied.items() if k not in ("id", "name", "updatedAt", "templateKey")} == {
        k: v for k, v in original.items() if k not in ("id", "name", "updatedAt", "templateKey")
    }
    # The templates publish as they are (they sit on the workspace's widget).
    assert await act(tenant, "publishProactiveMessage", copied["id"]) == []


async def test_fields_are_validated_and_errors_name_the_field(tenant: Tenant) -> None:
    cid = await channel_id(tenant)
    doc, tok = CREATE, tenant.owner_token
    assert await errors(
        tenant.api, doc, {"i": {"name": "Hi", "text": "Need help? 👋", "channelId": cid}}, tok, "createProactiveMessage"
    ) == [(["text"], "INVALID")]
    message = (await tenant.api(doc, {"i": {"name": "Hi", "text": "Hello 🎉"}}, token=tok))["createProactiveMessage"][
        "userErrors"
    ][0]["message"]
    assert "emoji" in message
    # A bot response may use emoji: the bot answer leads, not an agent's short text.
    assert (
        await errors(
            tenant.api,
            doc,
            {"i": {"name": "Hi", "text": "Hello 🎉", "responseType": "BOT"}},
            tok,
            "createProactiveMessage",
        )
        == []
    )
    assert await errors(tenant.api, doc, {"i": {"name": "Hi", "text": "x" * 251}}, tok, "createProactiveMessage") == [
        (["text"], "TOO_LONG")
    ]
    assert await errors(
        tenant.api, doc, {"i": {"name": " ", "tags": ["ok", "x" * 65]}}, tok, "createProactiveMessage"
    ) == [(["name"], "REQUIRED"), (["tags", "1"], "INVALID")]
    email = await ok(
        tenant.api,
        "mutation($i: CreateChannelInput!) { createChannel(input: $i) { channel { id } userErrors { field code } } }",
        {"i": {"kind": "EMAIL", "name": "Mail"}},
        tok,
        "createChannel",
    )
    assert await errors(
        tenant.api, doc, {"i": {"name": "Hi", "channelId": email["channel"]["id"]}}, tok, "createProactiveMessage"
    ) == [(["channelId"], "NOT_ALLOWED")]
    bad_rules = {
        "match": "ALL",
        "conditions": [{"field": "PAGE_URL", "operator": "GREATER_THAN", "value": {"number": 3}}],
    }
    assert await errors(tenant.api, doc, {"i": {"name": "Hi", "rules": bad_rules}}, tok, "createProactiveMessage") == [
        (["rules", "conditions", "0", "operator"], "INVALID_OPERATOR")
    ]
    two_nested = {
        "match": "ALL",
        "conditions": [{"field": "DEVICE", "operator": "EQUALS", "value": {"text": "mobile"}}],
        "groups": [
            {"match": "ANY", "conditions": [{"field": "COUNTRY", "operator": "EQUALS", "value": {"text": "FR"}}]}
        ],
    }
    assert await errors(tenant.api, doc, {"i": {"name": "Hi", "rules": two_nested}}, tok, "createProactiveMessage") == [
        (["rules", "groups"], "INVALID")
    ]
    two_nested["conditions"].append({"field": "VISITOR", "operator": "EQUALS", "value": {"text": "new"}})
    assert (
        await errors(tenant.api, doc, {"i": {"name": "Hi", "rules": two_nested}}, tok, "createProactiveMessage") == []
    )
    unknown_segment = {
        "match": "ALL",
        "conditions": [{"field": "SEGMENT", "operator": "MEMBER_OF", "segmentId": "U2VnbWVudDo5OTk5OTk="}],
    }
    assert await errors(
        tenant.api, doc, {"i": {"name": "Hi", "rules": unknown_segment}}, tok, "createProactiveMessage"
    ) == [(["rules", "conditions", "0", "value"], "NOT_FOUND")]


async def test_each_transition_and_each_forbidden_one(tenant: Tenant) -> None:
    cid = await channel_id(tenant)
    draft = await create(tenant, text="Can we help?", channelId=cid, rules=EVERYONE)
    mid = draft["id"]
    # A draft: no pause, no resume.
    assert await act(tenant, "pauseProactiveMessage", mid) == [(["id"], "INVALID_TRANSITION")]
    assert await act(tenant, "resumeProactiveMessage", mid) == [(["id"], "INVALID_TRANSITION")]
    assert await act(tenant, "publishProactiveMessage", mid) == []
    assert await status(tenant, mid) == "LIVE"
    # Live: no publish, no resume.
    assert await act(tenant, "publishProactiveMessage", mid) == [(["id"], "INVALID_TRANSITION")]
    assert await act(tenant, "resumeProactiveMessage", mid) == [(["id"], "INVALID_TRANSITION")]
    assert await act(tenant, "cloneProactiveMessage", mid) == []
    assert await act(tenant, "pauseProactiveMessage", mid) == []
    assert await status(tenant, mid) == "PAUSED"
    # Paused: no publish, no pause.
    assert await act(tenant, "publishProactiveMessage", mid) == [(["id"], "INVALID_TRANSITION")]
    assert await act(tenant, "pauseProactiveMessage", mid) == [(["id"], "INVALID_TRANSITION")]
    assert await act(tenant, "cloneProactiveMessage", mid) == []
    # Edit in any status.
    edited = await ok(
        tenant.api,
        UPDATE,
        {"i": {"id": mid, "name": "Renamed", "tags": ["Sales", "sales", "vip"]}},
        tenant.owner_token,
        "updateProactiveMessage",
    )
    assert edited["proactiveMessage"]["tags"] == ["sales", "vip"]
    assert await act(tenant, "resumeProactiveMessage", mid) == []
    assert await status(tenant, mid) == "LIVE"
    # A live message stays publishable: removing its text is refused.
    assert await errors(
        tenant.api, UPDATE, {"i": {"id": mid, "text": ""}}, tenant.owner_token, "updateProactiveMessage"
    ) == [(["text"], "REQUIRED")]
    deleted = (await tenant.api(DELETE, {"i": {"id": mid}}, token=tenant.owner_token))["deleteProactiveMessage"]
    assert deleted == {"deletedId": mid, "userErrors": []}
    assert (await tenant.api(GET, {"id": mid}, token=tenant.owner_token))["proactiveMessage"] is None
    assert await act(tenant, "pauseProactiveMessage", mid) == [(["id"], "NOT_FOUND")]


async def test_publishing_checks_channel_text_bot_answer_and_rules(tenant: Tenant) -> None:
    bare = await create(tenant)
    assert await act(tenant, "publishProactiveMessage", bare["id"]) == [
        (["channelId"], "REQUIRED"),
        (["text"], "REQUIRED"),
    ]
    cid = await channel_id(tenant)
    bot_message = await create(tenant, responseType="BOT", channelId=cid, text="Our bot can help")
    assert await act(tenant, "publishProactiveMessage", bot_message["id"]) == [(["botAnswerId"], "REQUIRED")]
    bot = await ok(tenant.api, CREATE_BOT, {"i": {"name": "Helper"}}, tenant.owner_token, "createBot")
    answer = await ok(
        tenant.api,
        CREATE_ANSWER,
        {"i": {"botId": bot["bot"]["id"], "channelId": cid, "name": "Order status", "body": "Your order number?"}},
        tenant.owner_token,
        "createBotAnswer",
    )
    aid = answer["botAnswer"]["id"]
    assert answer["botAnswer"]["published"] is False
    await ok(
        tenant.api,
        UPDATE,
        {"i": {"id": bot_message["id"], "botAnswerId": aid}},
        tenant.owner_token,
        "updateProactiveMessage",
    )
    assert await act(tenant, "publishProactiveMessage", bot_message["id"]) == [(["botAnswerId"], "NOT_ALLOWED")]
    await ok(
        tenant.api,
        ANSWER_ACTION.format(name="publishBotAnswer", errors=ERRORS),
        {"i": {"id": aid}},
        tenant.owner_token,
        "publishBotAnswer",
    )
    assert await act(tenant, "publishProactiveMessage", bot_message["id"]) == []


async def test_the_list_sorts_by_any_column_and_pages_stably_through_ties(tenant: Tenant) -> None:
    for i in range(5):
        await create(tenant, name=f"Same {i % 2}")
    seen: list[str] = []
    after = None
    while True:
        page = await tenant.api(
            LIST, {"o": {"field": "SENT", "direction": "DESC"}, "first": 2, "after": after}, token=tenant.owner_token
        )
        conn = page["proactiveMessages"]
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == conn["totalCount"] == 8  # 5 + the 3 templates, every sent = 0
    for field in ("NAME", "STATUS", "OPENED", "REPLIED", "UPDATED_AT", "CREATED_AT", "CHANNEL", "FREQUENCY"):
        for direction in ("ASC", "DESC"):
            rows = (await tenant.api(LIST, {"o": {"field": field, "direction": direction}}, token=tenant.owner_token))[
                "proactiveMessages"
            ]["edges"]
            assert len(rows) == 8, field
    names = [
        e["node"]["name"]
        for e in (await tenant.api(LIST, {"o": {"field": "NAME", "direction": "DESC"}}, token=tenant.owner_token))[
            "proactiveMessages"
        ]["edges"]
    ]
    assert names == sorted(names, reverse=True)


async def test_agents_read_and_only_owners_and_admins_manage(tenant: Tenant) -> None:
    _, agent_token = await tenant.agent("agent")
    _, admin_token = await tenant.agent("admin")
    listed = (await tenant.api(LIST, {}, token=agent_token))["proactiveMessages"]
    assert listed["totalCount"] == 3
    body = (await tenant.api.raw(CREATE, {"i": {"name": "Mine"}}, token=agent_token)).json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert (await tenant.api(CREATE, {"i": {"name": "Admin's"}}, token=admin_token))["createProactiveMessage"][
        "userErrors"
    ] == []


async def channel_update(tenant: Tenant, values: dict[str, Any]) -> None:
    doc = (
        "mutation($i: UpdateChannelInput!) { updateChannel(input: $i) { "
        "channel { id kind } userErrors { field code } } }"
    )
    await ok(tenant.api, doc, {"i": values}, tenant.owner_token, "updateChannel")


async def test_live_messages_turn_has_errors_by_themselves(tenant: Tenant) -> None:
    cid = await channel_id(tenant)
    # Channel changed to an incompatible kind.
    live = await live_message(tenant)
    paused = await live_message(tenant, name="Paused")
    assert await act(tenant, "pauseProactiveMessage", paused["id"]) == []
    await channel_update(tenant, {"id": cid, "kind": "EMAIL"})
    got = (await tenant.api(GET, {"id": live["id"]}, token=tenant.owner_token))["proactiveMessage"]
    assert got["status"] == "HAS_ERRORS" and "email channel" in got["error"]
    assert await status(tenant, paused["id"]) == "PAUSED"  # not live, not sending: it stays paused
    assert await act(tenant, "cloneProactiveMessage", live["id"]) == [(["id"], "INVALID_TRANSITION")]
    assert await act(tenant, "resumeProactiveMessage", paused["id"]) == [(["channelId"], "NOT_ALLOWED")]
    # Fixed (the channel is a widget again), it can be published again.
    await channel_update(tenant, {"id": cid, "kind": "WEB_WIDGET"})
    assert await act(tenant, "publishProactiveMessage", live["id"]) == []

    # Bot answer unpublished, then deleted.
    bot = await ok(tenant.api, CREATE_BOT, {"i": {"name": "Helper"}}, tenant.owner_token, "createBot")
    answer = await ok(
        tenant.api,
        CREATE_ANSWER,
        {"i": {"botId": bot["bot"]["id"], "channelId": cid, "name": "A", "body": "Hello from the bot"}},
        tenant.owner_token,
        "createBotAnswer",
    )
    aid = answer["botAnswer"]["id"]
    await ok(
        tenant.api,
        ANSWER_ACTION.format(name="publishBotAnswer", errors=ERRORS),
        {"i": {"id": aid}},
        tenant.owner_token,
        "publishBotAnswer",
    )
    bot_live = await live_message(tenant, name="Bot", responseType="BOT", botAnswerId=aid)
    await ok(
        tenant.api,
        ANSWER_ACTION.format(name="unpublishBotAnswer", errors=ERRORS),
        {"i": {"id": aid}},
        tenant.owner_token,
        "unpublishBotAnswer",
    )
    assert await status(tenant, bot_live["id"]) == "HAS_ERRORS"
    assert await status(tenant, live["id"]) == "LIVE"  # an agent response does not use it
    await ok(
        tenant.api,
        ANSWER_ACTION.format(name="publishBotAnswer", errors=ERRORS),
        {"i": {"id": aid}},
        tenant.owner_token,
        "publishBotAnswer",
    )
    assert await act(tenant, "publishProactiveMessage", bot_live["id"]) == []
    await ok(
        tenant.api,
        ANSWER_ACTION.format(name="deleteBotAnswer", errors=ERRORS + " deletedId"),
        {"i": {"id": aid}},
        tenant.owner_token,
        "deleteBotAnswer",
    )
    got = (await tenant.api(GET, {"id": bot_live["id"]}, token=tenant.owner_token))["proactiveMessage"]
    assert got["status"] == "HAS_ERRORS" and got["botAnswer"] is None

    # Channel deleted: the message stays, without its channel.
    delete = "mutation($i: ChannelIdInput!) { deleteChannel(input: $i) { deletedId userErrors { field code } } }"
    await ok(tenant.api, delete, {"i": {"id": cid}}, tenant.owner_token, "deleteChannel")
    got = (await tenant.api(GET, {"id": live["id"]}, token=tenant.owner_token))["proactiveMessage"]
    assert got["status"] == "HAS_ERRORS" and got["channel"] is None and got["error"] == "Its channel was deleted."


@pytest.mark.parametrize("size", [10_000, 100_000])
async def test_huge_text_is_refused_clearly(tenant: Tenant, size: int) -> None:
    assert await errors(
        tenant.api,
        CREATE,
        {"i": {"name": "n" * size, "text": "t" * size, "followUpText": "f" * size}},
        tenant.owner_token,
        "createProactiveMessage",
    ) == [(["name"], "TOO_LONG"), (["text"], "TOO_LONG"), (["followUpText"], "TOO_LONG")]
