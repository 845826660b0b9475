"""Push as a hostile admin or a hostile network would try it: provider addresses inside
our network (over HTTP/2 too), credentials sealed under a SECRET_KEY since changed, and a
deleted contact's trace in the delivery log."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from core.config import settings
from jobs.push import push_conversation
from tests.conftest import Tenant, pk
from tests.push.conftest import REGISTER, Providers, apple_key, configured, register, session
from tests.push.test_delivery import APNS_TOKEN, FCM_TOKEN, conversation_with_reply, ctx, delivery_log, run_deliveries

DELETE = "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }"


async def test_providers_inside_our_network_are_refused_over_http2_and_http11(
    tenant: Tenant, app: Any, providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-ins listen on 127.0.0.1: with private networks refused (production), the
    outbound client refuses APNs' HTTP/2 request and FCM's token request before connecting."""
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    iphone = await register(sdk, token, "IOS", APNS_TOKEN)
    pixel = await register(sdk, token, "ANDROID", FCM_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 2"

    monkeypatch.setattr(settings, "outbound_allow_private_networks", False)
    assert await run_deliveries(app, pk(iphone["id"]), message_id) == ["failed"]  # not retried: it never will work
    assert await run_deliveries(app, pk(pixel["id"]), message_id) == ["failed"]
    assert providers.apns.requests == [] and providers.oauth.requests == [] and providers.fcm.requests == []
    errors = {line["platform"]: line["error"] for line in await delivery_log(tenant)}
    refused = "address refused: 127.0.0.1 is loopback"
    assert errors == {"IOS": refused, "ANDROID": f"token endpoint: {refused}"}


async def test_credentials_sealed_under_another_secret_key_fail_plainly(
    tenant: Tenant, app: Any, providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    iphone = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 1"

    monkeypatch.setattr(settings, "secret_key", "a-rotated-secret-key-of-at-least-32-characters")
    assert await run_deliveries(app, pk(iphone["id"]), message_id) == ["failed"]
    assert providers.apns.requests == []
    [line] = await delivery_log(tenant)
    assert line["outcome"] == "FAILED" and line["error"] == (
        "The credentials cannot be decrypted: SECRET_KEY changed since it was set, or it was altered: set them again."
    )


async def test_a_deleted_contacts_delivery_log_goes_with_it(tenant: Tenant, app: Any, providers: Providers) -> None:
    sdk = await configured(tenant, providers)
    token, contact = await session(sdk)
    iphone = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 1"
    assert await run_deliveries(app, pk(iphone["id"]), message_id) == ["sent"]
    assert [line["contactId"] for line in await delivery_log(tenant)] == [contact]

    assert (await tenant.api(DELETE, {"i": {"id": contact}}, token=tenant.owner_token))["deleteContact"][
        "userErrors"
    ] == []
    assert await delivery_log(tenant) == []


async def test_an_expired_provider_token_renews_that_key_only(tenant: Tenant, app: Any, providers: Providers) -> None:
    """Apple throttles keys whose tokens are renewed more often than every 20 minutes: one
    workspace's ExpiredProviderToken must not renew every other workspace's token too."""
    from services.push import apns_jwt

    other_pem, _ = apple_key()
    others = apns_jwt(other_pem, "OTHERKEY01", "OTHERTEAM1")  # another workspace's cached token
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    iphone = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 1"

    providers.apns.answer((403, {"reason": "ExpiredProviderToken"}))
    assert await run_deliveries(app, pk(iphone["id"]), message_id) == ["retry", "sent"]
    first, second = (r.headers["authorization"] for r in await providers.apns.wait_for(2))
    assert first != second  # this key's token was renewed
    assert apns_jwt(other_pem, "OTHERKEY01", "OTHERTEAM1") == others  # the other's was not


async def test_register_device_is_rate_limited_like_the_widgets_other_calls(
    tenant: Tenant, providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anybody holding the SDK's public key can call registerDevice: each call writes, so it
    spends the per-address budget of page views and events."""
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    monkeypatch.setattr(settings, "rate_limit_widget_events_per_ip", "3/minute")
    variables = {"i": {"platform": "IOS", "token": APNS_TOKEN, "appId": "com.example.app"}}
    answers = [await tenant.api.raw(REGISTER, variables, token=token) for _ in range(4)]
    refused = answers[-1]
    assert refused.status_code == 429, refused.json()
    assert [e["extensions"]["code"] for e in refused.json()["errors"]] == ["RATE_LIMITED"]


async def test_http2_over_tls_goes_to_the_checked_address_with_the_name_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """APNs' HTTP/2 through the outbound client: pinned to the address that was checked,
    the certificate verified for the URL's name (not the address), :authority the name;
    and the address refused before connecting when private networks are."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    from core import outbound
    from core.embedded_redis import free_port
    from tests.security.test_outbound import _certificate

    cert, key = _certificate(tmp_path, "localhost")
    seen: list[tuple[str, str]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append((scope["http_version"], dict(scope["headers"]).get(b"host", b"").decode()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"h2 ok"})

    config = Config()
    port = free_port()
    config.bind, config.certfile, config.keyfile = [f"127.0.0.1:{port}"], str(cert), str(key)
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        trust = ssl.create_default_context(cafile=str(cert))
        url = f"https://localhost:{port}/3/device/ab"
        response = await outbound.post(url, content=b"{}", verify=trust, http2=True)
        assert (response.status, response.body) == (200, b"h2 ok")
        assert seen == [("2", f"localhost:{port}")]

        other, _ = _certificate(tmp_path, "other.parley.test")
        with pytest.raises(outbound.OutboundError) as caught:
            await outbound.post(url, content=b"{}", verify=ssl.create_default_context(cafile=str(other)), http2=True)
        assert caught.value.reason == "TLS certificate not valid"

        monkeypatch.setattr(settings, "outbound_allow_private_networks", False)
        with pytest.raises(outbound.OutboundError) as caught:
            await outbound.post(url, content=b"{}", verify=trust, http2=True)
        assert caught.value.reason.startswith("address refused:") and caught.value.reason.endswith(" is loopback")
        assert len(seen) == 1
    finally:
        stop.set()
        await server
