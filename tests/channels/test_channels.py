"""Channels as admins manage them: every kind, business hours, sender, auto-responder,
notifications; validation naming the field; the secret for admins only; delete."""

from __future__ import annotations

from typing import Any

from strawberry import relay

from models.conversations import Conversation, Message
from tests.conftest import Tenant
from tests.conversations.test_conversations import ERRORS, ok, session, start, user_errors

FIELDS = """id kind name publicKey secret businessHours defaultSender autoResponderEnabled autoResponderText
  autoResponderAudience helpReply gatewayUrl notifyEmails offlineNotifications missedChatMinutes"""
CREATE = f"mutation($i: CreateChannelInput!) {{ createChannel(input: $i) {{ channel {{ {FIELDS} }} {ERRORS} }} }}"
UPDATE = f"mutation($i: UpdateChannelInput!) {{ updateChannel(input: $i) {{ channel {{ {FIELDS} }} {ERRORS} }} }}"
ROTATE = f"mutation($i: ChannelIdInput!) {{ rotateChannelSecret(input: $i) {{ channel {{ secret }} {ERRORS} }} }}"
DELETE = f"mutation($i: ChannelIdInput!) {{ deleteChannel(input: $i) {{ deletedId {ERRORS} }} }}"
HOURS = {
    "timeZone": "Europe/Paris",
    "days": {"mon": [["09:00", "12:00"], ["13:00", "18:00"]], "fri": [["9:00", "17:00"]]},
}


async def test_admins_create_every_kind_with_its_settings(tenant: Tenant) -> None:
    for kind in ("WEB_WIDGET", "MOBILE_SDK", "EMAIL", "SMS", "MESSENGER"):
        made = await ok(
            tenant.api,
            CREATE,
            {"i": {"kind": kind, "name": f" {kind.title()}  inbox "}},
            tenant.owner_token,
            "createChannel",
        )
        assert made["channel"]["kind"] == kind and made["channel"]["name"] == f"{kind.title()} inbox"
        assert len(made["channel"]["secret"]) == 64 and made["channel"]["publicKey"].startswith("ch_")
    sms = await ok(
        tenant.api,
        CREATE,
        {
            "i": {
                "kind": "SMS",
                "name": "Texts",
                "businessHours": HOURS,
                "defaultSender": "+1 415 555 0100",
                "autoResponderEnabled": True,
                "autoResponderText": "We'll reply soon.",
                "autoResponderAudience": "WITHOUT_SMS_CONSENT",
                "helpReply": "Call us on 0800.",
                "gatewayUrl": "https://sms.example.com/send",
                "notifyEmails": ["Ops@Example.com"],
                "missedChatMinutes": 15,
            }
        },
        tenant.owner_token,
        "createChannel",
    )
    channel = sms["channel"]
    assert channel["defaultSender"] == "+14155550100"
    assert channel["businessHours"]["days"]["mon"] == [["09:00", "12:00"], ["13:00", "18:00"]]
    assert (
        channel["businessHours"]["days"]["fri"] == [["09:00", "17:00"]]
        and channel["businessHours"]["days"]["sun"] == []
    )
    assert (channel["autoResponderAudience"], channel["notifyEmails"], channel["missedChatMinutes"]) == (
        "WITHOUT_SMS_CONSENT",
        ["ops@example.com"],
        15,
    )

    # An update changes what it names and keeps the rest.
    updated = await ok(
        tenant.api,
        UPDATE,
        {"i": {"id": channel["id"], "autoResponderEnabled": False, "businessHours": None}},
        tenant.owner_token,
        "updateChannel",
    )
    assert updated["channel"]["autoResponderEnabled"] is False and updated["channel"]["businessHours"] is None
    assert (
        updated["channel"]["autoResponderText"] == "We'll reply soon."
        and updated["channel"]["gatewayUrl"] == "https://sms.example.com/send"
    )


async def test_bad_settings_name_the_field_and_change_nothing(tenant: Tenant) -> None:
    made = await ok(
        tenant.api,
        CREATE,
        {"i": {"kind": "EMAIL", "name": "Support", "defaultSender": "help@acme.example"}},
        tenant.owner_token,
        "createChannel",
    )
    channel_id = made["channel"]["id"]
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"businessHours": {"timeZone": "Mars/Olympus", "days": {}}}, ["businessHours", "timeZone"]),
        (
            {"businessHours": {"timeZone": "UTC", "days": {"mon": [["18:00", "09:00"]]}}},
            ["businessHours", "days", "mon", "0"],
        ),
        ({"businessHours": {"timeZone": "UTC", "days": {"someday": []}}}, ["businessHours", "days", "someday"]),
        ({"defaultSender": "not an address"}, ["defaultSender"]),
        ({"gatewayUrl": "ftp://x"}, ["gatewayUrl"]),
        ({"notifyEmails": ["ok@example.com", "nope"]}, ["notifyEmails", "1"]),
        ({"missedChatMinutes": 0}, ["missedChatMinutes"]),
        ({"name": "   "}, ["name"]),
    ]
    for fields, path in cases:
        errors = await user_errors(
            tenant.api, UPDATE, {"i": {"id": channel_id, **fields}}, tenant.owner_token, "updateChannel"
        )
        assert errors[0]["field"] == path, (fields, errors)
    after = await tenant.api(
        f"query($id: ID!) {{ node(id: $id) {{ ... on Channel {{ {FIELDS} }} }} }}",
        {"id": channel_id},
        token=tenant.owner_token,
    )
    assert after["node"] == made["channel"]


async def test_agents_manage_no_channels_and_never_see_secrets(tenant: Tenant) -> None:
    _, agent_token = await tenant.agent()
    errors = await tenant.api.errors(CREATE, {"i": {"kind": "SMS", "name": "Mine"}}, token=agent_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    listed = await tenant.api("{ channels { edges { node { name secret publicKey } } } }", token=agent_token)
    assert [e["node"]["secret"] for e in listed["channels"]["edges"]] == [None]
    channel_id = str(relay.GlobalID("Channel", str(tenant.channel.id)))
    old = tenant.channel.secret
    rotated = await ok(tenant.api, ROTATE, {"i": {"id": channel_id}}, tenant.owner_token, "rotateChannelSecret")
    assert rotated["channel"]["secret"] != old and len(rotated["channel"]["secret"]) == 64


async def test_deleting_a_channel_removes_its_conversations(tenant: Tenant) -> None:
    token, _ = await session(tenant, "leaving")
    conversation_id = (await start(tenant, token))["conversation"]["id"]
    pk = int(relay.GlobalID.from_id(conversation_id).node_id)
    channel_id = str(relay.GlobalID("Channel", str(tenant.channel.id)))
    deleted = await ok(tenant.api, DELETE, {"i": {"id": channel_id}}, tenant.owner_token, "deleteChannel")
    assert deleted["deletedId"] == channel_id
    assert not await Conversation.filter(id=pk).exists()
    assert not await Message.filter(conversation_id=pk).exists()
    assert (await tenant.api("{ channels { edges { node { id } } } }", token=tenant.owner_token))["channels"][
        "edges"
    ] == []
