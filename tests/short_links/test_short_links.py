"""Short links (issue 29, item 5): outbound SMS, replies and campaigns, go to a real HTTP
gateway on loopback with their links as PUBLIC_URL/l/{code}; the redirect route, through
the app, counts clicks per message, campaign and contact, and redirects nowhere else."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.config import settings
from core.events import Outbox
from domain.short_links import MAX_LINKS
from jobs.sending import deliver_message
from models.channels import ChannelKind
from models.conversations import Message
from models.short_links import ShortLink
from resolvers.conversations import open_conversation
from tests.campaigns.helpers import create, gid, run
from tests.conftest import Tenant, pk
from tests.conversations.test_inbound import empty_queue, job_ctx, make_channel, make_contact  # noqa: F401
from tests.loopback import HttpSink

PHONE = "+14155550100"
SEND = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { field code message } } }"
LINKS = (
    "query($id: ID!) { node(id: $id) { ... on Message { "
    "body shortLinks { code url shortUrl clicks contactId campaignId } } } }"
)
STATS = "query($id: ID!) { campaign(id: $id) { stats { sent clicks clickedContacts } } }"


async def sms_conversation(tenant: Tenant, http_sink: HttpSink, phone: str = PHONE) -> tuple[Any, Any, Any]:
    channel = await make_channel(
        tenant, ChannelKind.SMS, gateway_url=f"{http_sink.url}/sms", default_sender="+15005550006"
    )
    contact = await make_contact(tenant, phone=phone, sms_consent="subscribed")
    conversation = await open_conversation(Outbox(None), contact, channel)
    return channel, contact, conversation


async def reply(tenant: Tenant, conversation_id: int, body: str) -> int:
    sent = (
        await tenant.api(
            SEND,
            {"i": {"conversationId": gid("Conversation", conversation_id), "body": body}},
            token=tenant.owner_token,
        )
    )["sendMessage"]
    assert sent["userErrors"] == []
    return pk(sent["message"]["id"])


def from_an_address_of_its_own(app: Any) -> httpx.AsyncClient:
    """A client with an address no other test clicks from: its rate limit is its own."""
    address = f"198.51.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://parley.test")


def code_of(short_url: str) -> str:
    prefix = f"{settings.public_url.rstrip('/')}/l/"
    assert short_url.startswith(prefix), short_url
    return short_url.removeprefix(prefix)


async def test_a_reply_goes_out_with_short_links_that_count_clicks(
    tenant: Tenant, http_sink: HttpSink, client: httpx.AsyncClient, app: Any
) -> None:
    _, contact, conversation = await sms_conversation(tenant, http_sink)
    body = "Your order: https://shop.example/orders/42?t=1. Help: http://help.example/faq!"
    message_id = await reply(tenant, conversation.id, body)
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    [request] = await http_sink.wait_for(1)
    text = request.json()["text"]
    assert "shop.example" not in text and "help.example" not in text
    shown = (await tenant.api(LINKS, {"id": gid("Message", message_id)}, token=tenant.owner_token))["node"]
    assert shown["body"] == body  # the conversation keeps what the agent wrote
    links = shown["shortLinks"]
    assert [link["url"] for link in links] == ["https://shop.example/orders/42?t=1", "http://help.example/faq"]
    assert text == f"Your order: {links[0]['shortUrl']}. Help: {links[1]['shortUrl']}!"
    assert all(len(link["code"]) >= 16 and link["clicks"] == 0 for link in links)
    assert {link["contactId"] for link in links} == {gid("Contact", contact.id)}

    # Clicked: a 302 to the stored URL, not cached anywhere, counted each time.
    for _ in range(3):
        response = await client.get(f"/l/{code_of(links[0]['shortUrl'])}")
        assert response.status_code == 302
        assert response.headers["location"] == "https://shop.example/orders/42?t=1"
        assert response.headers["cache-control"] == "no-store" and response.headers["referrer-policy"] == "no-referrer"
    links = (await tenant.api(LINKS, {"id": gid("Message", message_id)}, token=tenant.owner_token))["node"][
        "shortLinks"
    ]
    assert [link["clicks"] for link in links] == [3, 0]

    # A retried delivery reuses the same codes.
    await Message.filter(id=message_id).update(delivery_state="pending")
    http_sink.clear()
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    assert (await http_sink.wait_for(1))[0].json()["text"] == text
    assert await ShortLink.filter(message_id=message_id).count() == 2

    # Erased with the contact: the codes answer 404 from then on.
    deleted = await tenant.api(
        "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }",
        {"i": {"id": gid("Contact", contact.id)}},
        token=tenant.owner_token,
    )
    assert deleted["deleteContact"]["userErrors"] == []
    assert await ShortLink.filter(contact_id=contact.id).count() == 0
    assert (await client.get(f"/l/{code_of(links[0]['shortUrl'])}")).status_code == 404


async def test_concurrent_clicks_are_all_counted(tenant: Tenant, http_sink: HttpSink, app: Any) -> None:
    _, _, conversation = await sms_conversation(tenant, http_sink)
    message_id = await reply(tenant, conversation.id, "https://a.example/")
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    link = await ShortLink.get(message_id=message_id)
    async with from_an_address_of_its_own(app) as clicker:
        responses = await asyncio.gather(*(clicker.get(f"/l/{link.code}") for _ in range(40)))
    assert {r.status_code for r in responses} == {302}
    await link.refresh_from_db()
    assert link.clicks == 40 and link.last_clicked_at is not None


@pytest.mark.parametrize(
    "path",
    [
        "/l/AAAAAAAAAAAAAAAA",  # looks like a code, never minted
        "/l/short",
        "/l/" + "A" * 33,
        "/l/..%2F..%2Fetc",
        "/l/AAAAAAAAAAAAAAAA?url=https://evil.example/",
        "/l/%00AAAAAAAAAAAAAAA",
    ],
)
async def test_unknown_codes_are_404_and_nothing_is_an_open_redirect(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404 and "location" not in response.headers


async def test_only_http_links_are_shortened_and_a_stored_url_elsewhere_never_redirects(
    tenant: Tenant, http_sink: HttpSink, client: httpx.AsyncClient, app: Any
) -> None:
    _, _, conversation = await sms_conversation(tenant, http_sink)
    many = " ".join(f"https://a.example/{i}" for i in range(MAX_LINKS + 2))
    body = f"javascript:alert(1) ftp://files.example/x https://{'x' * 2050}.example {many}"
    message_id = await reply(tenant, conversation.id, body)
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    text = (await http_sink.wait_for(1))[0].json()["text"]
    assert text.startswith("javascript:alert(1) ftp://files.example/x https://xxx")
    assert text.endswith(f"https://a.example/{MAX_LINKS} https://a.example/{MAX_LINKS + 1}")  # past the cap: as written
    assert await ShortLink.filter(message_id=message_id).count() == MAX_LINKS
    # Whatever a row came to hold, the redirect goes only to http(s).
    link = await ShortLink.get(message_id=message_id, position=0)
    await ShortLink.filter(id=link.id).update(url="javascript:alert(1)")
    assert (await client.get(f"/l/{link.code}")).status_code == 404


async def test_campaign_sms_links_count_per_campaign_and_contact(
    tenant: Tenant, http_sink: HttpSink, client: httpx.AsyncClient, app: Any
) -> None:
    channel, first, _ = await sms_conversation(tenant, http_sink)
    second = await make_contact(tenant, phone="+14155550101", sms_consent="subscribed")
    campaign = await create(
        tenant,
        name="Sale",
        channelId=gid("Channel", channel.id),
        body="Sale today: https://shop.example/sale",
        contactIds=[gid("Contact", first.id), gid("Contact", second.id)],
    )
    await run(app, campaign["id"], at=datetime(2027, 6, 1, 15, 0, tzinfo=UTC))
    ids = await Message.filter(conversation__channel_id=channel.id, body__contains="shop.example").values_list(
        "id", flat=True
    )
    assert len(ids) == 2
    for message_id in ids:
        assert await deliver_message(job_ctx(app), message_id) == "sent"
    links = await ShortLink.filter(campaign_id=pk(campaign["id"])).order_by("contact_id")
    assert [link.contact_id for link in links] == [first.id, second.id] and links[0].code != links[1].code
    for _ in range(2):
        await client.get(f"/l/{links[0].code}")
    stats = (await tenant.api(STATS, {"id": campaign["id"]}, token=tenant.owner_token))["campaign"]["stats"]
    assert stats == {"sent": 2, "clicks": 2, "clickedContacts": 1}


async def test_other_channels_are_not_shortened_and_strangers_see_no_links(
    tenant: Tenant, http_sink: HttpSink, app: Any
) -> None:
    _, _, sms = await sms_conversation(tenant, http_sink)
    sms_message = await reply(tenant, sms.id, "See https://a.example/")
    assert await deliver_message(job_ctx(app), sms_message) == "sent"
    session = (
        await tenant.api(
            "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }",
            {"i": {"channelKey": tenant.channel.public_key}},
        )
    )["startContactSession"]["token"]
    _, agent_token = await tenant.agent()
    for token in (session, None):
        body = (await tenant.api.raw(LINKS, {"id": gid("Message", sms_message)}, token=token)).json()
        assert "a.example" not in str(body) and not (body.get("data") or {}).get("node"), body
    agent_view = (await tenant.api(LINKS, {"id": gid("Message", sms_message)}, token=agent_token))["node"]
    assert len(agent_view["shortLinks"]) == 1
    http_sink.clear()

    messenger = await make_channel(tenant, ChannelKind.MESSENGER, gateway_url=f"{http_sink.url}/m")
    contact = await make_contact(tenant, external_id="messenger:123")
    conversation = await open_conversation(Outbox(None), contact, messenger)
    message_id = await reply(tenant, conversation.id, "See https://a.example/")
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    assert (await http_sink.wait_for(1))[0].json()["text"] == "See https://a.example/"
    assert await ShortLink.filter(message_id=message_id).count() == 0


async def test_clicks_are_rate_limited_per_address(
    tenant: Tenant, http_sink: HttpSink, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, conversation = await sms_conversation(tenant, http_sink)
    message_id = await reply(tenant, conversation.id, "https://a.example/")
    assert await deliver_message(job_ctx(app), message_id) == "sent"
    link = await ShortLink.get(message_id=message_id)
    monkeypatch.setattr(settings, "rate_limit_short_link_per_ip", "3/minute")
    async with from_an_address_of_its_own(app) as stranger:
        statuses = [(await stranger.get(f"/l/{link.code}")).status_code for _ in range(5)]
        refused = await stranger.get("/l/AAAAAAAAAAAAAAAA")
    assert statuses == [302, 302, 302, 429, 429]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    await link.refresh_from_db()
    assert link.clicks == 3  # a refused click is not counted
