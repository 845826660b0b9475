"""Every comparison of a secret with what a stranger sent is made on bytes, in constant
time: non-ASCII (or not even encodable) input is refused like any wrong value, never
answered with a 500. Against a real uvicorn, so a 500 is what the test would see."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from core.signing import SIGNATURE_HEADER, signature
from domain.identity import user_hash
from models.channels import Channel
from tests.conftest import LiveServer, Tenant

SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token userErrors { field code } } }"
)
# Text that is not ASCII.
HOSTILE = ["é" * 64, "日本語", "0" * 63 + "é"]


async def post_graphql(
    server: LiveServer, query: str, variables: dict[str, Any], headers: dict[str, Any] | None = None
) -> httpx.Response:
    # ensure_ascii: escapes (\ud800) carry what UTF-8 could not.
    body = json.dumps({"query": query, "variables": variables}, ensure_ascii=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.post(
            "/graphql", content=body, headers={"content-type": "application/json", **(headers or {})}
        )


async def test_a_non_ascii_user_hash_fails_identity_verification(server: LiveServer, tenant: Tenant) -> None:
    channel = tenant.channel
    channel.identity_verification = True
    await channel.save(update_fields=["identity_verification"])
    for bad in HOSTILE:
        response = await post_graphql(
            server, SESSION, {"i": {"channelKey": channel.public_key, "externalId": "user-42", "userHash": bad}}
        )
        assert response.status_code == 200, (bad, response.text)
        payload = response.json()["data"]["startContactSession"]
        assert payload == {
            "token": None,
            "userErrors": [{"field": ["userHash"], "code": "IDENTITY_VERIFICATION_FAILED"}],
        }, bad
    # A lone surrogate, which JSON can carry but UTF-8 cannot: the body is refused whole.
    response = await post_graphql(
        server, SESSION, {"i": {"channelKey": channel.public_key, "externalId": "user-42", "userHash": "\ud800" * 64}}
    )
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST" and "surrogate" in error["message"]
    # A non-ASCII external id is fine when its hash is right.
    good = user_hash(channel.secret, "usér-42")
    response = await post_graphql(
        server, SESSION, {"i": {"channelKey": channel.public_key, "externalId": "usér-42", "userHash": good}}
    )
    assert response.json()["data"]["startContactSession"]["userErrors"] == []


@pytest.mark.parametrize("bad", ["%C3%A9" * 64, "%E6%97%A5", "%ED%A0%80", "%FF" * 64])
async def test_a_non_ascii_export_link_signature_is_forbidden(server: LiveServer, bad: str) -> None:
    expires = int(time.time()) + 3600
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get(f"/exports/1/1?expires={expires}&signature={bad}")
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_a_non_ascii_inbound_webhook_signature_is_unauthenticated(server: LiveServer, tenant: Tenant) -> None:
    created = await tenant.api(
        "mutation($i: CreateChannelInput!) { createChannel(input: $i) { "
        "channel { id publicKey } userErrors { code } } }",
        {"i": {"name": "Texts", "kind": "SMS"}},
        token=tenant.owner_token,
    )
    key = created["createChannel"]["channel"]["publicKey"]
    body = b'{"from": "+14155550100", "text": "hi"}'
    stamp = int(time.time())
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for v1 in ("\xe9" * 64, "0" * 63 + "\xff"):
            header = f"t={stamp},v1={v1}".encode("latin-1")
            response = await http.post(
                f"/hooks/channels/{key}/inbound",
                content=body,
                headers={"content-type": "application/json", SIGNATURE_HEADER: header},
            )
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "UNAUTHENTICATED"
        # Beside the right one, a hostile entry (a sender mid-way through a rotation) does no harm.
        right = signature((await Channel.get(public_key=key)).secret, body, stamp)
        response = await http.post(
            f"/hooks/channels/{key}/inbound",
            content=body,
            headers={"content-type": "application/json", SIGNATURE_HEADER: f"{right},v1=\xe9".encode("latin-1")},
        )
        assert response.status_code == 200, response.text


async def test_a_non_ascii_api_key_is_unauthenticated(server: LiveServer, tenant: Tenant) -> None:
    prefix = tenant.api_key.split("_")[1]
    for credential in (f"pk_{prefix}_" + "é" * 43, tenant.api_key[:-1] + "\xff"):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.post(
                "/graphql",
                json={"query": "{ contacts(first: 1) { totalCount } }"},
                headers={"authorization": f"Bearer {credential}".encode("latin-1")},
            )
        assert response.status_code in (200, 401), response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
