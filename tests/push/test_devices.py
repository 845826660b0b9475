"""Devices: registered from an SDK contact session, several per contact, one contact per
token, removed on sign-out and with the contact, moved by a merge."""

from __future__ import annotations

from typing import Any

from models.push import Device
from tests.conftest import Tenant, pk
from tests.push.conftest import REGISTER, App, ok, register, sdk_channel, session

UNREGISTER = (
    "mutation($i: UnregisterDeviceInput!) { unregisterDevice(input: $i) { removed userErrors { field code message } } }"
)
DELETE = (
    "mutation($i: ContactIdInput!) { deleteContact(input: $i) { "
    "auditRecord { erased { kind count } } userErrors { code } } }"
)
MERGE = (
    "mutation($i: MergeContactsInput!) { mergeContacts(input: $i) { "
    "contact { id } userErrors { field code message } } }"
)
IPHONE, IPAD = "ab" * 32, "cd" * 32
PIXEL = "pixel-registration-token_" + "z" * 30


async def devices_of(contact_gid: str) -> list[str]:
    return sorted(await Device.filter(contact_id=pk(contact_gid)).values_list("token", flat=True))


async def register_errors(app: App, session_token: str, **fields: Any) -> list[dict[str, Any]]:
    variables = {"i": {"platform": "IOS", "token": IPHONE, "appId": "com.example.app", **fields}}
    return (await app.tenant.api(REGISTER, variables, token=session_token))["registerDevice"]["userErrors"]  # type: ignore[no-any-return]


async def test_a_contact_registers_several_devices_and_signs_one_out(tenant: Tenant) -> None:
    app = await sdk_channel(tenant)
    token, contact = await session(app, externalId="ada")
    phone = await register(app, token, "IOS", IPHONE.upper(), locale="fr-CA")
    assert phone["platform"] == "IOS" and phone["appId"] == "com.example.parleyapp" and phone["locale"] == "fr-CA"
    await register(app, token, "IOS", IPAD)
    await register(app, token, "ANDROID", PIXEL)
    assert await devices_of(contact) == sorted([IPHONE, IPAD, PIXEL])
    # Registering again (the app does at every start) changes nothing but the row's details.
    again = await register(app, token, "IOS", IPHONE, locale="en")
    assert again["id"] == phone["id"] and again["locale"] == "en"

    payload = (await tenant.api(UNREGISTER, {"i": {"token": IPAD}}, token=token))["unregisterDevice"]
    assert payload == {"removed": True, "userErrors": []}
    assert await devices_of(contact) == sorted([IPHONE, PIXEL])
    payload = (await tenant.api(UNREGISTER, {"i": {"token": IPAD}}, token=token))["unregisterDevice"]
    assert payload["userErrors"] == [
        {"field": ["token"], "code": "NOT_FOUND", "message": "No device of yours has this token."}
    ]


async def test_a_token_moves_to_whoever_signs_in_on_the_phone(tenant: Tenant) -> None:
    app = await sdk_channel(tenant)
    ada, ada_id = await session(app, externalId="ada")
    bob, bob_id = await session(app, externalId="bob")
    first = await register(app, ada, "IOS", IPHONE)
    moved = await register(app, bob, "IOS", IPHONE)
    assert moved["id"] == first["id"]
    assert await devices_of(ada_id) == [] and await devices_of(bob_id) == [IPHONE]
    # Ada cannot sign Bob's phone out.
    payload = (await tenant.api(UNREGISTER, {"i": {"token": IPHONE}}, token=ada))["unregisterDevice"]
    assert payload["userErrors"][0]["code"] == "NOT_FOUND" and await devices_of(bob_id) == [IPHONE]


async def test_the_same_token_in_another_workspace_is_another_device(tenant: Tenant, make_tenant: Any) -> None:
    ours, theirs = await sdk_channel(tenant), await sdk_channel(await make_tenant("Globex"))
    ada, ada_id = await session(ours)
    stranger, stranger_id = await session(theirs)
    await register(ours, ada, "IOS", IPHONE)
    await register(theirs, stranger, "IOS", IPHONE)
    assert await devices_of(ada_id) == [IPHONE] and await devices_of(stranger_id) == [IPHONE]


async def test_bad_registrations_name_their_field(tenant: Tenant) -> None:
    app = await sdk_channel(tenant)
    token, _ = await session(app)
    assert await register_errors(app, token, token="../../3/device/x") == [
        {"field": ["token"], "code": "INVALID", "message": "token must be an APNs device token (hex)."}
    ]
    errors = await register_errors(
        app, token, platform="ANDROID", token="x" * 600, appId="bad app", locale="not a locale!"
    )
    assert [(e["field"], e["code"]) for e in errors] == [
        (["token"], "INVALID"),
        (["appId"], "INVALID"),
        (["locale"], "INVALID"),
    ]
    # A web widget has no app to push to.
    widget_token = (
        await ok(
            tenant.api,
            "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token userErrors { code } } }",
            {"i": {"channelKey": tenant.channel.public_key}},
            "",
            "startContactSession",
        )
    )["token"]
    errors = await register_errors(app, widget_token)
    assert errors == [
        {
            "field": ["platform"],
            "code": "NOT_ALLOWED",
            "message": "Devices register from a mobile SDK channel's session.",
        }
    ]
    # Agents have no phone to register.
    body = (
        await tenant.api.raw(
            REGISTER, {"i": {"platform": "IOS", "token": IPHONE, "appId": "a.b"}}, token=tenant.owner_token
        )
    ).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_contact_keeps_at_most_ten_devices(tenant: Tenant) -> None:
    app = await sdk_channel(tenant)
    token, contact = await session(app)
    tokens = [f"{i:02x}" * 32 for i in range(12)]
    for device_token in tokens:
        await register(app, token, "IOS", device_token)
    assert await devices_of(contact) == sorted(tokens[2:])  # the oldest two were forgotten


async def test_devices_go_with_a_deleted_contact_and_follow_a_merge(tenant: Tenant) -> None:
    app = await sdk_channel(tenant)
    ada, ada_id = await session(app, externalId="ada")
    await register(app, ada, "IOS", IPHONE)
    alias, alias_id = await session(app, externalId="ada-old")
    await register(app, alias, "ANDROID", PIXEL)
    merged = (await tenant.api(MERGE, {"i": {"primaryId": ada_id, "secondaryId": alias_id}}, token=tenant.owner_token))[
        "mergeContacts"
    ]
    assert merged["userErrors"] == []
    assert await devices_of(ada_id) == sorted([IPHONE, PIXEL])

    deleted = (await tenant.api(DELETE, {"i": {"id": ada_id}}, token=tenant.owner_token))["deleteContact"]
    erased = {e["kind"]: e["count"] for e in deleted["auditRecord"]["erased"]}
    assert erased["pushDevices"] == 2, erased
    assert not await Device.exists(token__in=[IPHONE, PIXEL], workspace_id=tenant.workspace.id)
