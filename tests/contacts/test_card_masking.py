"""Card numbers written through every path a contact, an agent or an integrator writes
free text are stored masked, and read back masked (issue 22, part 5)."""

from __future__ import annotations

from typing import Any

from strawberry import relay

from tests.conftest import Tenant

# Written the ways the masker once missed: dots, and broken over two lines.
DOTTED = "4111.1111.1111.1111"
WRAPPED = "5555 5555\n5555 4444"
VISA, MASTERCARD = "**** **** **** 1111", "**** **** **** 4444"

READ = """query($id: ID!) { node(id: $id) { ... on Contact {
  name city referrer tags attributes { key value }
  notes { edges { node { body } } }
  events { edges { node { name url title properties } } }
} } }"""
DEFINE = (
    "mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) { userErrors { code } } }"
)
UPDATE = (
    "mutation($i: UpdateContactInput!) { updateContact(input: $i) { "
    "contact { name attributes { key value } } userErrors { field code } } }"
)
NOTE = "mutation($i: AddContactNoteInput!) { addContactNote(input: $i) { note { body } userErrors { code } } }"
TRACK = "mutation($i: TrackEventInput!) { trackEvent(input: $i) { event { id } userErrors { field code } } }"
SYNC = """mutation($i: SyncContactsInput!) { syncContacts(input: $i) {
  results { status contact { name city attributes { key value } } errors { code } } userErrors { code } } }"""
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    "token contact { id } userErrors { code } } }"
)
START = """mutation($i: StartConversationInput!) { startConversation(input: $i) {
  conversation { id subject websiteUrl } message { body } userErrors { field code } } }"""
PAGE_VIEW = "mutation($i: ReportPageViewInput!) { reportPageView(input: $i) { visitNumber userErrors { field code } } }"
NO_CARD = "order 4111111111111112 on 2026-03-29 2026-04-15, call +4222222222222"


async def _contact(tenant: Tenant, contact_id: str) -> dict[str, Any]:
    return (await tenant.api(READ, {"id": contact_id}, token=tenant.owner_token))["node"]  # type: ignore[no-any-return]


async def test_contact_fields_attributes_notes_and_events_are_masked(tenant: Tenant) -> None:
    await tenant.api(DEFINE, {"i": {"key": "remark", "label": "Remark", "type": "TEXT"}}, token=tenant.owner_token)
    contact = await tenant.contact(
        name=f"Jo {DOTTED}",
        city=WRAPPED,
        referrer=f"https://ex.com/?c={DOTTED}",
        attributes=[{"key": "remark", "value": f"card {WRAPPED}"}],
        tags=[f"paid {DOTTED}"],
    )
    assert contact["name"] == f"Jo {VISA}"
    await tenant.api(
        NOTE, {"i": {"contactId": contact["id"], "body": f"paid with {DOTTED}\n{NO_CARD}"}}, token=tenant.owner_token
    )
    tracked = await tenant.api(
        TRACK,
        {
            "i": {
                "contactId": contact["id"],
                "kind": "PAGE_VIEW",
                "url": f"https://shop.example/pay?card={DOTTED}",
                "title": f"Pay {WRAPPED}",
                "properties": {
                    "card": DOTTED,
                    "nested": [{"n": WRAPPED}],
                    DOTTED: 1,
                    "safe": NO_CARD,
                    "qty": 4111111111111111,
                },
            }
        },
        token=tenant.api_key,
    )
    assert tracked["trackEvent"]["userErrors"] == []

    read = await _contact(tenant, contact["id"])
    assert (read["name"], read["city"], read["referrer"]) == (f"Jo {VISA}", MASTERCARD, f"https://ex.com/?c={VISA}")
    assert read["attributes"] == [{"key": "remark", "value": f"card {MASTERCARD}"}]
    assert read["tags"] == [f"paid {VISA}"]
    assert read["notes"]["edges"][0]["node"]["body"] == f"paid with {VISA}\n{NO_CARD}"
    event = read["events"]["edges"][0]["node"]
    assert (event["url"], event["title"]) == (f"https://shop.example/pay?card={VISA}", f"Pay {MASTERCARD}")
    # Text is masked, keys too; a JSON number is a quantity, not text anyone typed.
    assert event["properties"] == {
        "card": VISA,
        "nested": [{"n": MASTERCARD}],
        VISA: 1,
        "safe": NO_CARD,
        "qty": 4111111111111111,
    }

    updated = await tenant.api(
        UPDATE,
        {"i": {"id": contact["id"], "name": f"Jo {WRAPPED}", "attributes": [{"key": "remark", "value": DOTTED}]}},
        token=tenant.api_key,
    )
    assert updated["updateContact"]["contact"] == {
        "name": f"Jo {MASTERCARD}",
        "attributes": [{"key": "remark", "value": VISA}],
    }


async def test_synced_rows_are_masked(tenant: Tenant) -> None:
    await tenant.api(DEFINE, {"i": {"key": "remark", "label": "Remark", "type": "TEXT"}}, token=tenant.owner_token)
    rows = [
        {
            "externalId": "crm-1",
            "name": DOTTED,
            "city": WRAPPED,
            "attributes": [{"key": "remark", "value": f"x {DOTTED} y"}],
        }
    ]
    synced = (await tenant.api(SYNC, {"i": {"contacts": rows}}, token=tenant.api_key))["syncContacts"]
    assert synced["results"][0]["contact"] == {
        "name": VISA,
        "city": MASTERCARD,
        "attributes": [{"key": "remark", "value": f"x {VISA} y"}],
    }


async def test_a_contact_sessions_subject_message_and_page_views_are_masked(tenant: Tenant) -> None:
    session = (
        await tenant.api(
            SESSION,
            {
                "i": {
                    "channelKey": tenant.channel.public_key,
                    "name": f"Sam {DOTTED}",
                    "device": {"browser": f"Web {WRAPPED}"},
                }
            },
        )
    )["startContactSession"]
    assert session["userErrors"] == []
    token = session["token"]
    started = (
        await tenant.api(
            START,
            {
                "i": {
                    "body": f"my card {WRAPPED}",
                    "subject": f"Refund {DOTTED}",
                    "websiteUrl": "https://shop.example/pay?card=4111111111111111",
                }
            },
            token=token,
        )
    )["startConversation"]
    assert started["userErrors"] == []
    assert started["conversation"]["subject"] == f"Refund {VISA}"
    # The page the conversation started on, as agents see it (answerProactiveMessage opens it the same way).
    website_url = (
        await tenant.api(
            "query($id: ID!) { node(id: $id) { ... on Conversation { websiteUrl } } }",
            {"id": started["conversation"]["id"]},
            token=tenant.owner_token,
        )
    )["node"]["websiteUrl"]
    assert website_url == started["conversation"]["websiteUrl"] == f"https://shop.example/pay?card={VISA}"
    assert started["message"]["body"] == f"my card {MASTERCARD}"
    viewed = await tenant.api(
        PAGE_VIEW, {"i": {"url": f"https://shop.example/?n={DOTTED}", "title": f"Checkout {WRAPPED}"}}, token=token
    )
    assert viewed["reportPageView"]["userErrors"] == []
    read = await _contact(tenant, session["contact"]["id"])
    assert read["name"] == f"Sam {VISA}"
    assert (
        await tenant.api(
            "query($id: ID!) { node(id: $id) { ... on Contact { browser } } }",
            {"id": session["contact"]["id"]},
            token=tenant.owner_token,
        )
    )["node"]["browser"] == f"Web {MASTERCARD}"
    event = read["events"]["edges"][0]["node"]
    assert (event["url"], event["title"]) == (f"https://shop.example/?n={VISA}", f"Checkout {MASTERCARD}")


async def test_a_campaigns_subject_and_body_are_masked(tenant: Tenant) -> None:
    from tests.campaigns.helpers import contact, create, gid, read

    someone = await contact(tenant, name="Someone")
    campaign = await create(
        tenant,
        name="Sale",
        channelId=gid("Channel", tenant.channel.id),
        body=f"Test card {WRAPPED}",
        subject=f"Use {DOTTED}",
        contactIds=[gid("Contact", someone.id)],
    )
    stored = await read(tenant, campaign["id"])
    assert (stored["subject"], stored["body"]) == (f"Use {VISA}", f"Test card {MASTERCARD}")


ADMIN_TEXTS = {
    "proactive": """mutation($i: CreateProactiveMessageInput!) { createProactiveMessage(input: $i) {
      proactiveMessage { text followUpText } userErrors { field code } } }""",
    "bot": "mutation($i: CreateBotInput!) { createBot(input: $i) { bot { id } userErrors { code } } }",
    "answer": (
        "mutation($i: CreateBotAnswerInput!) { createBotAnswer(input: $i) { "
        "botAnswer { body } userErrors { field code } } }"
    ),
    "channel": """mutation($i: UpdateChannelInput!) { updateChannel(input: $i) {
      channel { autoResponderText helpReply } userErrors { field code } } }""",
}


async def test_what_admins_write_for_contacts_to_read_is_masked_too(tenant: Tenant) -> None:
    """Proactive texts, bot answers, auto-responder and help replies: free text an agent
    writes, stored and shown to contacts, masked like every other."""
    owner = tenant.owner_token
    channel_id = str(relay.GlobalID("Channel", str(tenant.channel.id)))
    made = (
        await tenant.api(
            ADMIN_TEXTS["proactive"],
            {
                "i": {
                    "name": "Pay",
                    "channelId": channel_id,
                    "text": f"Card {DOTTED}?",
                    "followUpText": f"Thanks {WRAPPED}",
                }
            },
            token=owner,
        )
    )["createProactiveMessage"]
    assert made["userErrors"] == []
    assert made["proactiveMessage"] == {"text": f"Card {VISA}?", "followUpText": f"Thanks {MASTERCARD}"}
    bot = (await tenant.api(ADMIN_TEXTS["bot"], {"i": {"name": "Helper"}}, token=owner))["createBot"]["bot"]["id"]
    answer = (
        await tenant.api(
            ADMIN_TEXTS["answer"],
            {"i": {"botId": bot, "channelId": channel_id, "name": "Refunds", "body": f"Refund to {DOTTED}"}},
            token=owner,
        )
    )["createBotAnswer"]
    assert (answer["userErrors"], answer["botAnswer"]["body"]) == ([], f"Refund to {VISA}")
    updated = (
        await tenant.api(
            ADMIN_TEXTS["channel"],
            {"i": {"id": channel_id, "autoResponderText": f"Away {DOTTED}", "helpReply": f"Help {WRAPPED}"}},
            token=owner,
        )
    )["updateChannel"]
    assert (updated["userErrors"], updated["channel"]) == (
        [],
        {"autoResponderText": f"Away {VISA}", "helpReply": f"Help {MASTERCARD}"},
    )
