"""Rate limits against real uvicorn processes with small limits, on this run's Redis: login
lockouts and per-address budgets, widget calls per channel and address, inbound hooks
per channel, and GraphQL requests per principal shared by two API processes.

The servers count under a Redis prefix of their own (so the rest of the suite never meets
their lockouts) and believe X-Forwarded-For from 127.0.0.1: each test speaks from
addresses of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from core.auth import hash_password
from core.signing import SIGNATURE_HEADER, signature
from models.channels import ChannelKind
from models.workspaces import Agent
from resolvers.channels import create_channel
from tests.conftest import LiveServer, Tenant, start_server

LOGIN = "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { token userErrors { code } } }"
SESSION = "mutation($k: String!) { startContactSession(input: {channelKey: $k}) { token userErrors { code } } }"
PAGE_VIEW = (
    'mutation { reportPageView(input: {url: "https://shop.example/", timeOnPageSeconds: 0}) { '
    "visitNumber userErrors { code } } }"
)
TRACK = 'mutation { trackEvent(input: {kind: EVENT, name: "clicked"}) { event { name } userErrors { code } } }'
PASSWORD = "correct horse battery"


def small_limits(**extra: str) -> dict[str, str]:
    return {
        "REDIS_PREFIX": f"{os.environ['REDIS_PREFIX']}-security-{secrets.token_hex(3)}",
        "TRUSTED_PROXIES": '["127.0.0.1"]',
        "RATE_LIMIT_LOGIN_PER_IP": "10/minute",
        "RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT": "3/10 minutes",
        "LOGIN_LOCKOUT_SECONDS": "2",
        "LOGIN_LOCKOUT_MAX_SECONDS": "60",
        "RATE_LIMIT_CONTACT_SESSION_PER_IP": "5/minute",
        "RATE_LIMIT_CONTACT_SESSION_PER_CHANNEL": "8/minute",
        "RATE_LIMIT_WIDGET_EVENTS_PER_IP": "4/minute",
        "RATE_LIMIT_WIDGET_EVENTS_PER_CHANNEL": "1000/minute",
        "RATE_LIMIT_INBOUND_HOOK_PER_CHANNEL": "3/minute",
        "RATE_LIMIT_GRAPHQL_PER_PRINCIPAL": "1000/minute",
        **extra,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("limits"), env=small_limits())
    yield live
    live.stop()


async def post(
    server: LiveServer, query: str, variables: dict[str, Any] | None = None, *, ip: str, token: str | None = None
) -> httpx.Response:
    headers = {"x-forwarded-for": ip}
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)


def rate_limited(response: httpx.Response) -> int:
    """The wait of a response refused as a whole by RATE_LIMITED errors (429, Retry-After)."""
    body = response.json()
    assert response.status_code == 429, (response.status_code, body)
    errors = body["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["RATE_LIMITED"], errors
    wait = errors[0]["extensions"]["retryAfter"]
    assert isinstance(wait, int) and wait >= 1 and response.headers["retry-after"] == str(wait)
    assert f"try again in {wait} second" in errors[0]["message"]
    return wait


async def agent(tenant: Tenant) -> str:
    email = f"agent-{secrets.token_hex(4)}@example.com"
    await Agent.create(
        workspace_id=tenant.workspace.id,
        email=email,
        name="A",
        password_hash=await hash_password(PASSWORD),
        role="agent",
    )
    return email


async def login(server: LiveServer, email: str, password: str, ip: str) -> httpx.Response:
    return await post(server, LOGIN, {"e": email, "p": password}, ip=ip)


def lockouts_logged(server: LiveServer, email: str) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "login locked" in line and repr(email) in line]


async def test_thirty_wrong_passwords_lock_the_account_for_longer_each_time(server: LiveServer, tenant: Tenant) -> None:
    email, other = await agent(tenant), await agent(tenant)
    # From thirty addresses: the account's lockout does not care where attempts come from.
    answers = [await login(server, email, "wrong", ip=f"198.51.100.{i}") for i in range(1, 31)]
    codes = [
        r.json()["data"]["login"]["userErrors"][0]["code"] if r.status_code == 200 else "RATE_LIMITED" for r in answers
    ]
    assert codes == ["INVALID_CREDENTIALS"] * 3 + ["RATE_LIMITED"] * 27
    assert all(1 <= rate_limited(r) <= 2 for r in answers[3:])
    assert len(lockouts_logged(server, email)) == 1
    # The right password is refused too while the account is locked.
    wait = rate_limited(await login(server, email, PASSWORD, ip="198.51.100.31"))
    assert "locked" in (await login(server, email, PASSWORD, ip="198.51.100.31")).json()["errors"][0]["message"]
    # Another account, from another address, is not affected.
    assert (await login(server, other, PASSWORD, ip="198.51.100.200")).json()["data"]["login"]["token"]

    await asyncio.sleep(wait + 0.2)
    again = [await login(server, email, "wrong", ip="198.51.100.40") for _ in range(4)]
    assert [r.status_code for r in again] == [200, 200, 200, 429]
    assert 2 < rate_limited(again[3]) <= 4  # the second lockout lasts twice as long
    assert len(lockouts_logged(server, email)) == 2
    assert "lockout 2 in a row" in lockouts_logged(server, email)[1]

    # Once it is over, the right password works and forgets the failures and lockouts.
    await asyncio.sleep(rate_limited(await login(server, email, PASSWORD, ip="198.51.100.41")) + 0.2)
    assert (await login(server, email, PASSWORD, ip="198.51.100.42")).json()["data"]["login"]["token"]
    after = [await login(server, email, "wrong", ip="198.51.100.43") for _ in range(4)]
    assert [r.status_code for r in after] == [200, 200, 200, 429]
    assert rate_limited(after[3]) <= 2  # the first lockout's length again
    assert "lockout 1 in a row" in lockouts_logged(server, email)[2]


async def test_logins_from_one_address_are_limited_and_a_success_spends_the_budget_too(
    server: LiveServer, tenant: Tenant
) -> None:
    email = await agent(tenant)
    assert (await login(server, email, PASSWORD, ip="203.0.113.50")).json()["data"]["login"]["token"]
    # Nine wrong passwords, each for another account (none gets locked): ten attempts in all.
    for i in range(9):
        assert (await login(server, f"nobody{i}@example.com", "wrong", ip="203.0.113.50")).status_code == 200
    refused = await login(server, email, PASSWORD, ip="203.0.113.50")
    assert rate_limited(refused) > 1
    assert "from this address" in refused.json()["errors"][0]["message"]
    assert (await login(server, email, PASSWORD, ip="203.0.113.51")).json()["data"]["login"]["token"]


async def test_contact_sessions_are_limited_per_address_and_per_channel(server: LiveServer, tenant: Tenant) -> None:
    key = tenant.channel.public_key
    for _ in range(5):
        assert (await post(server, SESSION, {"k": key}, ip="192.0.2.10")).json()["data"]["startContactSession"]["token"]
    refused = await post(server, SESSION, {"k": key}, ip="192.0.2.10")
    rate_limited(refused)
    assert "from this address" in refused.json()["errors"][0]["message"]
    # Other addresses, until the channel's budget (8) is spent: the refused one spent none of it.
    for i in range(3):
        assert (await post(server, SESSION, {"k": key}, ip=f"192.0.2.{20 + i}")).json()["data"]["startContactSession"][
            "token"
        ]
    refused = await post(server, SESSION, {"k": key}, ip="192.0.2.30")
    rate_limited(refused)
    assert "on this channel" in refused.json()["errors"][0]["message"]
    # Another channel is not affected.
    other = await create_channel(tenant.workspace.id, ChannelKind.WEB_WIDGET, "second widget")
    assert (await post(server, SESSION, {"k": other.public_key}, ip="192.0.2.30")).json()["data"][
        "startContactSession"
    ]["token"]


async def test_page_views_and_events_of_a_session_share_a_budget_per_address(
    server: LiveServer, tenant: Tenant
) -> None:
    token = (await post(server, SESSION, {"k": tenant.channel.public_key}, ip="192.0.2.40")).json()["data"][
        "startContactSession"
    ]["token"]
    for query in (PAGE_VIEW, TRACK, PAGE_VIEW, TRACK):
        body = (await post(server, query, ip="192.0.2.41", token=token)).json()
        assert "errors" not in body, body
    rate_limited(await post(server, PAGE_VIEW, ip="192.0.2.41", token=token))
    rate_limited(await post(server, TRACK, ip="192.0.2.41", token=token))
    assert (await post(server, TRACK, ip="192.0.2.42", token=token)).json()["data"]["trackEvent"]["event"]


async def test_an_inbound_hook_flood_gets_429_with_retry_after(server: LiveServer, tenant: Tenant) -> None:
    sms, other = [await create_channel(tenant.workspace.id, ChannelKind.SMS, name) for name in ("sms", "sms 2")]

    async def deliver(channel: Any, n: int) -> httpx.Response:
        body = json.dumps(
            {"from": "+14155550100", "text": f"hello {n}", "messageId": f"SM{secrets.token_hex(4)}"}
        ).encode()
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: signature(channel.secret, body, int(time.time())),
        }
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            return await http.post(f"/hooks/channels/{channel.public_key}/inbound", content=body, headers=headers)

    assert [(await deliver(sms, n)).status_code for n in range(3)] == [200, 200, 200]
    refused = await deliver(sms, 3)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED" and refused.headers["retry-after"] == str(error["retryAfter"])
    assert 1 <= error["retryAfter"] <= 60
    assert (await deliver(other, 0)).status_code == 200


async def test_two_api_processes_share_the_limits(tmp_path: Path, tenant: Tenant) -> None:
    env = small_limits(RATE_LIMIT_GRAPHQL_PER_PRINCIPAL="6/minute")
    first = start_server(tmp_path, env=env, name="first")
    try:
        second = start_server(tmp_path, env=env, name="second")
        try:
            _, token = await tenant.agent()
            _, other = await tenant.agent()
            servers = [first, second]
            for n in range(6):
                body = (await post(servers[n % 2], "{ viewer { kind } }", ip="192.0.2.60", token=token)).json()
                assert body == {"data": {"viewer": {"kind": "AGENT"}}}, body
            # Refused as a whole, by both processes, whatever the address.
            for live in servers:
                refused = await post(live, "{ viewer { kind } }", ip="192.0.2.61", token=token)
                rate_limited(refused)
                assert "data" not in refused.json()
            assert (await post(second, "{ viewer { kind } }", ip="192.0.2.60", token=other)).json()["data"]["viewer"]
            # The login lockout is shared too: three failures spread over both processes.
            email = await agent(tenant)
            for n in range(3):
                assert (await login(servers[n % 2], email, "wrong", ip=f"192.0.2.{70 + n}")).status_code == 200
            for live in servers:
                rate_limited(await login(live, email, PASSWORD, ip="192.0.2.80"))
        finally:
            second.stop()
    finally:
        first.stop()


# -- without a server ------------------------------------------------------------------------


def request_from(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 5000)})


def test_the_client_address_comes_from_x_forwarded_for_only_through_trusted_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.client_ip import client_ip
    from core.config import settings

    monkeypatch.setattr(settings, "trusted_proxies", [])
    assert client_ip(request_from("10.0.0.5", "198.51.100.7")) == "10.0.0.5"
    monkeypatch.setattr(settings, "trusted_proxies", ["10.0.0.0/8", "2001:db8::1"])
    assert client_ip(request_from("10.0.0.5", "198.51.100.7")) == "198.51.100.7"
    # What the client wrote itself (left of the first untrusted hop) proves nothing.
    assert client_ip(request_from("10.0.0.5", "1.2.3.4, 198.51.100.7, 10.1.1.1")) == "198.51.100.7"
    assert client_ip(request_from("10.0.0.5", "1.2.3.4", "198.51.100.7:5123")) == "198.51.100.7"
    assert client_ip(request_from("2001:db8::1", "[2001:db8::99]:443")) == "2001:db8::99"
    assert client_ip(request_from("10.0.0.5", "garbage")) == "10.0.0.5"
    assert client_ip(request_from("10.0.0.5")) == "10.0.0.5"
    assert client_ip(request_from("192.0.2.1", "198.51.100.7")) == "192.0.2.1"  # not a trusted proxy


def test_errors_that_ask_to_come_back_later_set_the_http_status() -> None:
    from runtime.http import _retry_later

    def errors(*extensions: dict[str, Any]) -> dict[str, Any]:
        return {"data": None, "errors": [{"message": "m", "extensions": x} for x in extensions]}

    limited = {"code": "RATE_LIMITED", "retryAfter": 12}
    assert _retry_later(errors(limited, {"code": "RATE_LIMITED", "retryAfter": 3})) == (429, 12)
    assert _retry_later(errors(limited, {"code": "FORBIDDEN"})) is None  # says more than "later"
    assert _retry_later(errors({"code": "BUSY", "retryAfter": 1}, {"code": "FORBIDDEN"})) == (503, 1)
    assert _retry_later(errors({"code": "BUSY", "retryAfter": 1}, limited)) == (503, 1)
    assert _retry_later({"data": {"x": 1}}) is None


def test_rate_limited_errors_name_the_wait() -> None:
    from core.errors import RateLimited

    error = RateLimited("Too many requests", 11.2)
    assert error.extensions == {"code": "RATE_LIMITED", "retryAfter": 12}
    assert error.message == "Too many requests: try again in 12 seconds."
    assert re.search(r"in 1 second\.$", RateLimited("x", 0.1).message)
