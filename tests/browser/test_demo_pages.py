"""The reference widget and inbox in a real Chromium: a visitor and an agent exchange
messages live both ways; a proactive message published in the inbox reaches the visitor's
matching page and its counters move; messages sent while the visitor's socket is down
appear after it reconnects; the inbox's unread indicator and list move live; a wrong
password shows the error; the agent snoozes, reopens, assigns, notes and resolves; both
pages work against the demo workspace `make run` seeds.
Screenshots of each go to artifacts/screenshots/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from strawberry.relay import GlobalID

from tests.conftest import ROOT, LiveServer, Tenant, gql, start_worker, stop_process

PASSWORD = "correct horse battery"  # tests/conftest.py's tenants' owner
E = "userErrors { field code message }"


async def open_widget(context: Any, web: LiveServer, tenant: Tenant) -> Page:
    return await open_widget_of(context, web, tenant.channel.public_key)


async def open_widget_of(context: Any, web: LiveServer, channel_key: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{web.url}/demo/widget?key={channel_key}")
    await expect(page.get_by_test_id("widget-status")).to_have_text("connected")
    return page


async def open_inbox(context: Any, web: LiveServer, tenant: Tenant, password: str = PASSWORD) -> Page:
    return await sign_in(context, web, tenant.workspace.slug, password)


async def sign_in(context: Any, web: LiveServer, workspace: str, password: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{web.url}/demo/inbox")
    await page.get_by_label("E-mail").fill("owner@example.com")
    await page.get_by_label("Password").fill(password)
    await page.get_by_label("Workspace").fill(workspace)
    await page.get_by_role("button", name="Sign in").click()
    return page


async def visitor_conversation(web: LiveServer, tenant: Tenant, body: str) -> tuple[str, str]:
    """A visitor (its own session) who started a conversation through the API: (token, conversation id)."""
    session = await gql(
        web,
        f"mutation($i: StartContactSessionInput!) {{ startContactSession(input: $i) {{ token {E} }} }}",
        {"i": {"channelKey": tenant.channel.public_key}},
        "",
    )
    token = session["startContactSession"]["token"]
    started = await gql(
        web,
        f"mutation($i: StartConversationInput!) {{ startConversation(input: $i) {{ conversation {{ id }} {E} }} }}",
        {"i": {"body": body}},
        token,
    )
    return token, started["startConversation"]["conversation"]["id"]


async def send(web: LiveServer, token: str, conversation_id: str, body: str) -> None:
    sent = await gql(
        web,
        f"mutation($i: SendMessageInput!) {{ sendMessage(input: $i) {{ {E} }} }}",
        {"i": {"conversationId": conversation_id, "body": body}},
        token,
    )
    assert sent["sendMessage"]["userErrors"] == []


async def test_pages_are_served_with_a_strict_policy(web: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=web.url) as http:
        for path in ("/demo/widget", "/demo/widget/pricing", "/demo/widget/docs", "/demo/inbox"):
            page = await http.get(path)
            assert page.status_code == 200, path
            assert "script-src 'self'" in page.headers["content-security-policy"]
        vendored = await http.get("/demo/assets/vendor/graphql-ws/client.js")
        assert vendored.status_code == 200
        assert "createClient" in vendored.text


def test_production_serves_the_pages_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import settings
    from runtime.demo_pages import demo_routes

    monkeypatch.setattr(settings, "env", "prod")
    monkeypatch.setattr(settings, "demo_pages", None)
    assert demo_routes() == []
    monkeypatch.setattr(settings, "demo_pages", True)
    assert [route.path for route in demo_routes()] == ["/demo"]  # type: ignore[attr-defined]
    monkeypatch.setattr(settings, "env", "dev")
    monkeypatch.setattr(settings, "demo_pages", False)
    assert demo_routes() == []


async def test_a_visitor_and_an_agent_chat_live_both_ways(
    context: Any, other_context: Any, web: LiveServer, tenant: Tenant, screenshot: Any
) -> None:
    inbox = await open_inbox(other_context, web, tenant)
    await expect(inbox.get_by_test_id("unread-indicator")).to_have_text("0")
    widget = await open_widget(context, web, tenant)

    await widget.get_by_test_id("widget-launcher").click()
    await widget.get_by_placeholder("Write a message…").fill("Hello, does the blue kettle come in red?")
    await widget.get_by_role("button", name="Send").click()

    # The new conversation reaches the agent's list and indicator live.
    item = inbox.get_by_test_id("conversation-item")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("Hello, does the blue kettle come in red?")
    await expect(inbox.get_by_test_id("unread-indicator")).to_have_text("1")
    await item.click()
    await expect(inbox.get_by_test_id("message")).to_contain_text(["Hello, does the blue kettle come in red?"])
    await expect(inbox.get_by_test_id("unread-indicator")).to_have_text("0")

    await inbox.get_by_placeholder("Reply…").fill("It does: red, blue and green.")
    await inbox.get_by_role("button", name="Send").click()
    await expect(widget.get_by_test_id("widget-message").last).to_contain_text("It does: red, blue and green.")

    await widget.get_by_placeholder("Write a message…").fill("Great, I will take a red one.")
    await widget.get_by_role("button", name="Send").click()
    await expect(inbox.get_by_test_id("message").last).to_contain_text("Great, I will take a red one.")
    # The contact's panel shows who is writing and where they have been.
    await expect(inbox.get_by_test_id("contact-events")).to_contain_text("/demo/widget")

    await screenshot(widget, "widget")
    await screenshot(inbox, "inbox")


async def test_each_side_sees_the_other_typing_until_they_send(
    context: Any, other_context: Any, web: LiveServer, tenant: Tenant, screenshot: Any
) -> None:
    inbox = await open_inbox(other_context, web, tenant)
    widget = await open_widget(context, web, tenant)
    await widget.get_by_test_id("widget-launcher").click()
    compose = widget.get_by_placeholder("Write a message…")
    await compose.fill("Is the kettle in stock?")
    await widget.get_by_role("button", name="Send").click()
    await inbox.get_by_test_id("conversation-item").click()
    await expect(inbox.get_by_test_id("message")).to_contain_text(["Is the kettle in stock?"])
    visitor_typing = inbox.get_by_test_id("typing")
    agent_typing = widget.get_by_test_id("widget-typing")
    await expect(visitor_typing).to_be_hidden()

    # The visitor types: the open conversation in the inbox says so; sending clears it. Each notice
    # lasts 6 s: once the message is on screen the indicator must be gone at once, not on expiry.
    await compose.press_sequentially("And in red")
    await expect(visitor_typing).to_have_text("Visitor is typing…")
    await screenshot(inbox, "visitor-typing")
    await widget.get_by_role("button", name="Send").click()
    await expect(inbox.get_by_test_id("message").last).to_contain_text("And in red")
    await expect(visitor_typing).to_be_hidden(timeout=1_000)

    # The agent types: the widget shows who; sending clears it.
    reply = inbox.get_by_placeholder("Reply…")
    await reply.fill("Yes, both")
    await expect(agent_typing).to_have_text("Olive Owner is typing…")
    await screenshot(widget, "agent-typing")
    await inbox.get_by_role("button", name="Send").click()
    await expect(widget.get_by_test_id("widget-message").last).to_contain_text("Yes, both")
    await expect(agent_typing).to_be_hidden(timeout=1_000)


async def test_a_proactive_message_published_in_the_inbox_reaches_the_matching_page(
    context: Any, other_context: Any, web: LiveServer, tenant: Tenant, screenshot: Any
) -> None:
    channels = await gql(web, "{ channels { edges { node { id kind } } } }", {}, tenant.owner_token)
    channel_id = next(e["node"]["id"] for e in channels["channels"]["edges"] if e["node"]["kind"] == "WEB_WIDGET")
    await gql(
        web,
        f"mutation($i: CreateProactiveMessageInput!) {{ createProactiveMessage(input: $i) {{ {E} }} }}",
        {
            "i": {
                "name": "Pricing questions",
                "text": "Comparing plans? Ask us anything.",
                "channelId": channel_id,
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "PAGE_URL", "operator": "CONTAINS", "value": {"text": "/pricing"}}],
                },
                "sendWindow": "ANY_TIME",
                "frequency": "ONCE_PER_CONTACT",
            }
        },
        tenant.owner_token,
    )
    inbox = await open_inbox(other_context, web, tenant)
    await inbox.get_by_role("button", name="Proactive messages").click()
    row = inbox.locator("[data-testid=proactive-message][data-name='Pricing questions']")
    await expect(row.get_by_test_id("proactive-status")).to_have_text("draft")
    await row.get_by_role("button", name="Publish").click()
    await expect(row.get_by_test_id("proactive-status")).to_have_text("live")
    await expect(row.get_by_test_id("sent")).to_have_text("0")

    # The home page does not match; the pricing page does.
    widget = await open_widget(context, web, tenant)
    await widget.get_by_role("link", name="Pricing").click()
    await expect(widget.get_by_test_id("widget-status")).to_have_text("connected")
    card = widget.get_by_test_id("proactive")
    await expect(card).to_contain_text("Comparing plans? Ask us anything.")
    await expect(card).to_have_count(1)
    await card.get_by_role("button", name="Open").click()
    await card.get_by_placeholder("Your reply").fill("Is Pro billed yearly?")
    await screenshot(widget, "widget")
    await card.get_by_role("button", name="Reply").click()
    await expect(card).to_have_count(0)
    await expect(widget.get_by_test_id("widget-message")).to_contain_text(["Is Pro billed yearly?"])

    await expect(row.get_by_test_id("sent")).to_have_text("1")
    await expect(row.get_by_test_id("opened")).to_have_text("1")
    await expect(row.get_by_test_id("replied")).to_have_text("1")
    await screenshot(inbox, "inbox")


async def test_messages_sent_while_the_socket_is_down_appear_after_it_reconnects(
    context: Any, web: LiveServer, tenant: Tenant, screenshot: Any
) -> None:
    widget = await open_widget(context, web, tenant)
    await widget.get_by_test_id("widget-launcher").click()
    await widget.get_by_placeholder("Write a message…").fill("Is my order on its way?")
    await widget.get_by_role("button", name="Send").click()
    messages = widget.get_by_test_id("widget-message")
    await expect(messages).to_have_count(1)
    conversations = await gql(web, "{ conversations(first: 1) { edges { node { id } } } }", {}, tenant.owner_token)
    conversation_id = conversations["conversations"]["edges"][0]["node"]["id"]

    # The network goes: the socket closes and no new one can open.
    await context.set_offline(True)
    await widget.evaluate("window.__sockets.forEach((socket) => socket.close())")
    await expect(widget.get_by_test_id("widget-status")).not_to_have_text("connected")
    await send(web, tenant.owner_token, conversation_id, "It left the warehouse this morning.")
    await send(web, tenant.owner_token, conversation_id, "Tracking number: PX-2231.")
    await expect(messages).to_have_count(1)
    # Still down: what the two replies are, only a catch-up can bring.
    await expect(widget.get_by_test_id("widget-status")).not_to_have_text("connected")
    await screenshot(widget, "offline")

    await context.set_offline(False)
    await expect(widget.get_by_test_id("widget-status")).to_have_text("connected")
    await expect(messages).to_have_count(3)
    await expect(messages.nth(1)).to_contain_text("It left the warehouse this morning.")
    await expect(messages.nth(2)).to_contain_text("Tracking number: PX-2231.")
    # And the new socket delivers live again.
    await send(web, tenant.owner_token, conversation_id, "Anything else?")
    await expect(messages).to_have_count(4)
    await screenshot(widget, "reconnected")


async def test_the_unread_indicator_and_the_list_move_live(
    context: Any, web: LiveServer, tenant: Tenant, screenshot: Any
) -> None:
    first_token, first = await visitor_conversation(web, tenant, "First visitor here.")
    _, second = await visitor_conversation(web, tenant, "Second visitor here.")
    inbox = await open_inbox(context, web, tenant)
    items = inbox.get_by_test_id("conversation-item")
    await expect(items).to_have_count(2)
    await expect(inbox.get_by_test_id("unread-indicator")).to_have_text("2")
    await expect(items.first).to_contain_text("Second visitor here.")

    # Reading both clears the indicator.
    await items.nth(1).click()
    await expect(inbox.get_by_test_id("unread-indicator")).to_have_text("1")
    await items.first.click()
    await expect(inbox.get_by_test_id("unread-indicator")).to_have_text("0")
    await expect(inbox.locator("[data-testid=conversation-item].unread")).to_have_count(0)

    # The first visitor writes again: its conversation comes to the top, unread.
    await send(web, first_token, first, "Hello? Still there?")
    await expect(inbox.get_by_test_id("unread-indicator")).to_have_text("1")
    await expect(items.first).to_contain_text("Hello? Still there?")
    await expect(items.first).to_have_attribute("data-id", first)
    await expect(items.first).to_have_class("unread")
    await expect(items.nth(1)).to_have_attribute("data-id", second)
    await screenshot(inbox, "inbox")


async def test_a_wrong_password_shows_the_error(context: Any, web: LiveServer, tenant: Tenant, screenshot: Any) -> None:
    inbox = await open_inbox(context, web, tenant, password="not the password")
    await expect(inbox.get_by_test_id("login-error")).to_contain_text("password")
    await expect(inbox.get_by_test_id("unread-indicator")).to_be_hidden()
    assert await inbox.evaluate("sessionStorage.length") == 0
    await screenshot(inbox, "login")


async def test_the_pages_work_against_the_seeded_demo_workspace(
    context: Any, other_context: Any, web: LiveServer, tmp_path: Path, screenshot: Any
) -> None:
    """What `make run` seeds (`parley seed --demo`, into this run's database): its live
    proactive message greets the visitor; the owner's inbox lists the demo conversations."""
    seeded = subprocess.run(
        [sys.executable, "-m", "cli", "seed", "--demo"],
        cwd=ROOT,
        env={**os.environ, "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    field = lambda label: re.search(rf"^\s*{label}\s+(\S+)", seeded, re.M).group(1)  # type: ignore[union-attr]
    password = re.search(r"owner login\s+\S+ / (\S+)", seeded).group(1)  # type: ignore[union-attr]

    widget = await open_widget_of(context, web, field("widget channel"))
    await expect(widget.get_by_test_id("proactive")).to_contain_text("Questions about our plans?")
    inbox = await sign_in(other_context, web, field("workspace slug"), password)
    await expect(inbox.get_by_test_id("conversation-item")).to_have_count(3)
    await inbox.get_by_test_id("conversation-item").filter(has_text="Ada Byron").click()
    await expect(inbox.get_by_test_id("contact-panel")).to_contain_text("Ada Byron")
    await expect(inbox.get_by_test_id("contact-tags")).to_contain_text("vip")
    # Segment membership is the worker's: none runs yet, so the VIP segment has no members
    # until one starts; then its two VIP contacts join, live.
    await inbox.get_by_role("button", name="Segments").click()
    vip = inbox.locator("[data-testid=segment]", has_text="VIP customers")
    await expect(vip.get_by_test_id("segment-count")).to_have_text("0")
    worker = start_worker(tmp_path)
    try:
        await expect(vip.get_by_test_id("segment-count")).to_have_text("2")
        await expect(inbox.get_by_test_id("segment-log")).to_contain_text("VIP customers: 2 joined, 0 left")
    finally:
        stop_process(worker)
    await screenshot(widget, "widget")
    await screenshot(inbox, "inbox")


async def test_the_agent_snoozes_reopens_assigns_resolves_and_notes(
    context: Any, web: LiveServer, tenant: Tenant, screenshot: Any
) -> None:
    await visitor_conversation(web, tenant, "Can I change my delivery address?")
    inbox = await open_inbox(context, web, tenant)
    await inbox.get_by_test_id("conversation-item").click()
    status = inbox.get_by_test_id("conversation-status")
    await expect(status).to_have_text("open")

    await inbox.get_by_role("button", name="Snooze: Tomorrow").click()
    await expect(status).to_contain_text("snoozed until")
    await expect(inbox.get_by_test_id("conversation-item")).to_have_count(0)  # the list shows open ones
    await inbox.get_by_role("button", name="Reopen").click()
    await expect(status).to_have_text("open")
    await expect(inbox.get_by_test_id("conversation-item")).to_have_count(1)

    await inbox.get_by_role("button", name="Assign to me").click()
    await expect(inbox.get_by_label("Assignee")).to_have_value(str(GlobalID("Agent", str(tenant.owner.id))))
    await inbox.get_by_role("button", name="Mine").click()
    await expect(inbox.get_by_test_id("conversation-item")).to_have_count(1)
    await inbox.get_by_role("button", name="Unassigned").click()
    await expect(inbox.get_by_test_id("conversation-item")).to_have_count(0)

    await inbox.get_by_placeholder("Add a note…").fill("Asked to move the delivery to Friday.")
    await inbox.get_by_role("button", name="Add note").click()
    await expect(inbox.get_by_test_id("contact-panel")).to_contain_text("Asked to move the delivery to Friday.")
    await inbox.get_by_role("button", name="Resolve").click()
    await expect(status).to_have_text("resolved")
    await screenshot(inbox, "inbox")
