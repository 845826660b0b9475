"""Provider credentials: owners and admins set them, nobody reads them back, they are
encrypted at rest, and another workspace's channel is out of reach; the delivery log is
theirs to read too."""

from __future__ import annotations

from typing import Any

from core.sealed import seal, unseal
from models.push import PushConfig
from tests.conftest import Tenant
from tests.push.conftest import (
    BUNDLE,
    KEY_ID,
    PROJECT,
    REGISTER,
    SET_APNS,
    SET_FCM,
    SET_OPTIONS,
    TEAM_ID,
    Providers,
    apple_key,
    configured,
    google_account,
    sdk_channel,
    session,
)

SETTINGS = """query($c: ID!) { pushSettings(channelId: $c) {
  apns { configured keyId teamId bundleId environment } fcm { configured projectId clientEmail }
  showMessageText respectQuietHours
} }"""
REMOVE = (
    "mutation($i: RemovePushCredentialsInput!) { removePushCredentials(input: $i) { "
    "pushSettings { apns { configured } fcm { configured } } userErrors { code } } }"
)
LOG = "query { pushAttempts(first: 5) { totalCount } }"


def apns_input(channel_id: str, **changes: Any) -> dict[str, Any]:
    pem, _ = apple_key()
    return {
        "i": {
            "channelId": channel_id,
            "privateKey": pem,
            "keyId": KEY_ID,
            "teamId": TEAM_ID,
            "bundleId": BUNDLE,
            **changes,
        }
    }


async def test_owners_set_credentials_that_never_come_back(tenant: Tenant, providers: Providers) -> None:
    app = await configured(tenant, providers)
    body = (await tenant.api.raw(SETTINGS, {"c": app.channel_id}, token=tenant.owner_token)).json()
    assert body["data"]["pushSettings"] == {
        "apns": {"configured": True, "keyId": KEY_ID, "teamId": TEAM_ID, "bundleId": BUNDLE, "environment": "SANDBOX"},
        "fcm": {
            "configured": True,
            "projectId": PROJECT,
            "clientEmail": f"firebase-adminsdk@{PROJECT}.iam.gserviceaccount.com",
        },
        "showMessageText": False,
        "respectQuietHours": True,
    }
    # Encrypted at rest: the rows hold neither key, and only this deployment's SECRET_KEY opens them.
    config = await PushConfig.get(channel_id=app.channel.id)
    assert "PRIVATE KEY" not in (config.apns_key_sealed or "") + (config.fcm_account_sealed or "")
    assert unseal(config.apns_key_sealed or "") == providers.apple_pem.strip()
    assert "BEGIN PRIVATE KEY" in unseal(config.fcm_account_sealed or "")

    removed = await tenant.api(
        REMOVE, {"i": {"channelId": app.channel_id, "platform": "IOS"}}, token=tenant.owner_token
    )
    assert removed["removePushCredentials"]["pushSettings"] == {"apns": None, "fcm": {"configured": True}}


def test_a_sealed_value_does_not_open_under_another_secret(monkeypatch: Any) -> None:
    from core.config import settings
    from core.sealed import SealBroken

    sealed = seal("the .p8 key")
    monkeypatch.setattr(settings, "secret_key", "another-secret-key-of-at-least-32-characters")
    try:
        unseal(sealed)
    except SealBroken as exc:
        assert "SECRET_KEY changed" in str(exc)
    else:
        raise AssertionError("opened under another key")


async def test_agents_can_neither_set_nor_read_credentials_nor_the_log(tenant: Tenant, providers: Providers) -> None:
    app = await sdk_channel(tenant)
    _, agent_token = await tenant.agent("agent")
    for doc, variables in ((SET_APNS, apns_input(app.channel_id)), (SETTINGS, {"c": app.channel_id}), (LOG, {})):
        body = (await tenant.api.raw(doc, variables, token=agent_token)).json()
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    assert not await PushConfig.exists(channel_id=app.channel.id)
    _, admin_token = await tenant.agent("admin")
    payload = (await tenant.api(SET_APNS, apns_input(app.channel_id), token=admin_token))["setApnsCredentials"]
    assert payload["userErrors"] == [] and payload["pushSettings"]["apns"]["configured"] is True


async def test_a_stranger_with_the_sdk_key_and_an_api_key_reach_no_credentials(tenant: Tenant) -> None:
    """The SDK's key is public: its contact session may register its own devices and
    nothing else of push. API keys never hold workspace:manage. Agents register no device."""
    app = await sdk_channel(tenant)
    stranger, _ = await session(app)
    _, agent_token = await tenant.agent("agent")
    options = {"i": {"channelId": app.channel_id, "showMessageText": True}}
    for token in (stranger, tenant.api_key):
        for doc, variables in (
            (SET_APNS, apns_input(app.channel_id)),
            (SET_OPTIONS, options),
            (SETTINGS, {"c": app.channel_id}),
            (LOG, {}),
        ):
            body = (await tenant.api.raw(doc, variables, token=token)).json()
            assert body["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED"), body
    assert not await PushConfig.exists(channel_id=app.channel.id)
    device = {"i": {"platform": "IOS", "token": "ab" * 32, "appId": "com.example.app"}}
    body = (await tenant.api.raw(REGISTER, device, token=agent_token)).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body


async def test_another_workspaces_channel_is_not_found(tenant: Tenant, make_tenant: Any) -> None:
    theirs = await sdk_channel(await make_tenant("Globex"))
    payload = (await tenant.api(SET_APNS, apns_input(theirs.channel_id), token=tenant.owner_token))[
        "setApnsCredentials"
    ]
    assert payload["userErrors"] == [
        {"field": ["channelId"], "code": "NOT_FOUND", "message": "No channel with this id."}
    ]
    assert (await tenant.api(SETTINGS, {"c": theirs.channel_id}, token=tenant.owner_token))["pushSettings"] is None
    assert not await PushConfig.exists(channel_id=theirs.channel.id)


async def test_bad_credentials_name_their_field(tenant: Tenant) -> None:
    app = await sdk_channel(tenant)
    payload = await tenant.api(
        SET_APNS,
        apns_input(app.channel_id, privateKey="not a key", keyId="short", teamId="t"),
        token=tenant.owner_token,
    )
    assert [(e["field"], e["code"]) for e in payload["setApnsCredentials"]["userErrors"]] == [
        (["privateKey"], "INVALID"),
        (["keyId"], "INVALID"),
        (["teamId"], "INVALID"),
    ]
    account, _ = google_account("https://oauth2.googleapis.com/token")
    for bad, problem in (
        ("{", "is not JSON"),
        ('{"type": "user"}', "service account"),
        (account.replace(PROJECT, "Bad Project"), "project_id"),
        (account.replace("BEGIN PRIVATE KEY", "BEGIN NOTHING"), "private_key"),
    ):
        errors = (
            await tenant.api(
                SET_FCM, {"i": {"channelId": app.channel_id, "serviceAccountJson": bad}}, token=tenant.owner_token
            )
        )["setFcmCredentials"]["userErrors"]
        assert len(errors) == 1 and errors[0]["field"] == ["serviceAccountJson"] and problem in errors[0]["message"], (
            errors
        )
    huge = await tenant.api(
        SET_FCM, {"i": {"channelId": app.channel_id, "serviceAccountJson": "x" * 20000}}, token=tenant.owner_token
    )
    assert huge["setFcmCredentials"]["userErrors"][0]["code"] == "TOO_LONG"
    # A web widget has no app to push to.
    from strawberry import relay

    widget = str(relay.GlobalID("Channel", str(tenant.channel.id)))
    payload = (await tenant.api(SET_APNS, apns_input(widget), token=tenant.owner_token))["setApnsCredentials"]
    assert payload["userErrors"][0]["code"] == "NOT_ALLOWED"


async def test_an_oversized_rsa_key_is_refused_without_stalling_the_server(tenant: Tenant) -> None:
    """Loading an RSA key makes OpenSSL check it, synchronously, in time that grows steeply
    with its size (8,192 bits: ~4 s; 12,288 bits, 9.5 kB: ~14 s): any workspace owner could
    stall the API's event loop, and the worker's at every token. Sizes are checked first."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    app = await sdk_channel(tenant)
    huge = (
        rsa.generate_private_key(public_exponent=65537, key_size=8192)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    account = json.loads(google_account("https://oauth2.googleapis.com/token")[0]) | {"private_key": huge}
    fcm_input = {"i": {"channelId": app.channel_id, "serviceAccountJson": json.dumps(account)}}
    fcm = (await tenant.api(SET_FCM, fcm_input, token=tenant.owner_token))["setFcmCredentials"]
    apns = (await tenant.api(SET_APNS, apns_input(app.channel_id, privateKey=huge), token=tenant.owner_token))[
        "setApnsCredentials"
    ]
    # Refused by its size, before OpenSSL checks it (which took seconds).
    too_big = "serviceAccountJson has a private_key of 8192 bits: at most 4096."
    assert fcm["userErrors"] == [{"field": ["serviceAccountJson"], "code": "INVALID", "message": too_big}]
    assert [(e["field"], e["code"]) for e in apns["userErrors"]] == [(["privateKey"], "INVALID")]
    assert not await PushConfig.exists(channel_id=app.channel.id)
