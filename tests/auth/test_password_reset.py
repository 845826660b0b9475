"""Password reset by e-mail (issue 22, part 4), on a live uvicorn sending through a real
aiosmtpd server: the e-mail arrives, its token works once, not twice, not after expiry,
and every token the agent held before stops working. The answer never tells whether an
e-mail is known, and requests are rate-limited per e-mail."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth.test_revocation import ERRORS, VIEWER, assert_refused, data, login
from tests.conftest import LiveServer, Tenant, start_server
from tests.loopback import SmtpSink

REQUEST = f"mutation($input: RequestPasswordResetInput!) {{ requestPasswordReset(input: $input) {{ ok {ERRORS} }} }}"
RESET = (
    f"mutation($input: ResetPasswordInput!) {{ resetPassword(input: $input) {{ token agent {{ email }} {ERRORS} }} }}"
)
CREATE_AGENT = f"mutation($input: CreateAgentInput!) {{ createAgent(input: $input) {{ agent {{ id }} {ERRORS} }} }}"
PASSWORD = "an old long password"
PER_ACCOUNT = 3


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as smtp:
        yield smtp


@pytest.fixture(scope="module")
def mail_server(tmp_path_factory: pytest.TempPathFactory, sink: SmtpSink) -> Iterator[LiveServer]:
    env = {
        **sink.env,
        "RATE_LIMIT_PASSWORD_RESET_PER_ACCOUNT": f"{PER_ACCOUNT}/hour",
        "PASSWORD_RESET_URL": "https://app.example.com/reset",
    }
    live = start_server(tmp_path_factory.mktemp("password_reset"), env=env, name="password_reset")
    yield live
    live.stop()


async def new_agent(server: LiveServer, tenant: Tenant) -> str:
    email = f"reset-{secrets.token_hex(4)}@example.com"  # its own: the limit counts per e-mail
    created = (
        await data(
            server, CREATE_AGENT, {"input": {"email": email, "name": "Rita", "password": PASSWORD}}, tenant.owner_token
        )
    )["createAgent"]
    assert created["userErrors"] == []
    return email


async def token_from_mail(sink: SmtpSink, email: str) -> str:
    [mail] = [m for m in await sink.wait_for(1) if m.envelope_to == [email]]
    assert mail.message["Subject"] == "Reset your Parley password"
    [link] = re.findall(r"https://app\.example\.com/reset\?token=(\S+)", mail.text)
    assert link in mail.text.split()  # the bare token too, for the resetPassword mutation
    return link


async def test_the_mailed_token_works_once_and_ends_older_tokens(
    mail_server: LiveServer, sink: SmtpSink, tenant: Tenant
) -> None:
    email = await new_agent(mail_server, tenant)
    old = (await login(mail_server, email, PASSWORD, tenant.workspace.slug))["token"]
    sink.clear()
    asked = (await data(mail_server, REQUEST, {"input": {"email": email.upper()}}))["requestPasswordReset"]
    assert asked == {"ok": True, "userErrors": []}
    token = await token_from_mail(sink, email)
    assert (await data(mail_server, VIEWER, token=old))["viewer"] is not None  # asking ends nothing

    short = (await data(mail_server, RESET, {"input": {"token": token, "newPassword": "short"}}))["resetPassword"]
    assert [(e["field"], e["code"]) for e in short["userErrors"]] == [(["newPassword"], "INVALID")]
    done = (await data(mail_server, RESET, {"input": {"token": token, "newPassword": "a brand new password"}}))[
        "resetPassword"
    ]
    assert done["userErrors"] == [] and done["agent"] == {"email": email} and done["token"]
    assert (await data(mail_server, VIEWER, token=done["token"]))["viewer"] == {"kind": "AGENT"}
    await assert_refused(mail_server, old)

    twice = (await data(mail_server, RESET, {"input": {"token": token, "newPassword": "another new password"}}))[
        "resetPassword"
    ]
    assert twice == {
        "token": None,
        "agent": None,
        "userErrors": [
            {"field": ["token"], "code": "INVALID", "message": "This reset token is invalid, expired or already used."}
        ],
    }
    assert (await login(mail_server, email, "a brand new password", tenant.workspace.slug))["userErrors"] == []
    assert [e["code"] for e in (await login(mail_server, email, PASSWORD, tenant.workspace.slug))["userErrors"]] == [
        "INVALID_CREDENTIALS"
    ]


async def test_an_expired_or_forged_token_is_refused(mail_server: LiveServer, tenant: Tenant) -> None:
    from core.auth import issue_reset_token  # signed with the server's SECRET_KEY (the same environment)

    expired = issue_reset_token(workspace_id=tenant.workspace.id, agent_id=tenant.owner.id, version=0, ttl_seconds=-1)
    session = issue_reset_token(workspace_id=tenant.workspace.id, agent_id=tenant.owner.id, version=0, ttl_seconds=600)
    for token in (expired, tenant.owner_token, session[:-4] + "AAAA", "nonsense"):
        refused = (await data(mail_server, RESET, {"input": {"token": token, "newPassword": "a brand new password"}}))[
            "resetPassword"
        ]
        assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["token"], "INVALID")], token
    # and a reset token is no bearer token
    assert (await data(mail_server, VIEWER, token=session))["viewer"] is None


async def test_the_answer_is_the_same_for_an_unknown_email_and_nothing_is_sent(
    mail_server: LiveServer, sink: SmtpSink, tenant: Tenant
) -> None:
    email = await new_agent(mail_server, tenant)
    sink.clear()
    unknown = (await data(mail_server, REQUEST, {"input": {"email": f"nobody-{secrets.token_hex(4)}@example.com"}}))[
        "requestPasswordReset"
    ]
    known = (await data(mail_server, REQUEST, {"input": {"email": email}}))["requestPasswordReset"]
    assert unknown == known == {"ok": True, "userErrors": []}
    mails = await sink.wait_for(1)
    assert [m.envelope_to for m in mails] == [[email]]


async def test_requests_are_limited_per_email(mail_server: LiveServer, tenant: Tenant) -> None:
    email = await new_agent(mail_server, tenant)
    for _ in range(PER_ACCOUNT):
        assert (await data(mail_server, REQUEST, {"input": {"email": email}}))["requestPasswordReset"]["ok"] is True
    async with httpx.AsyncClient(base_url=mail_server.url, timeout=10) as http:
        response = await http.post("/graphql", json={"query": REQUEST, "variables": {"input": {"email": email}}})
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED" and error["extensions"]["retryAfter"] > 0


async def test_a_deactivated_agent_gets_no_reset(mail_server: LiveServer, sink: SmtpSink, tenant: Tenant) -> None:
    from strawberry.relay import GlobalID

    from models.workspaces import Agent

    email = await new_agent(mail_server, tenant)
    agent = await Agent.get(email=email)
    deactivate = f"mutation($input: AgentIdInput!) {{ deactivateAgent(input: $input) {{ {ERRORS} }} }}"
    assert (
        await data(
            mail_server, deactivate, {"input": {"id": str(GlobalID("Agent", str(agent.id)))}}, tenant.owner_token
        )
    )["deactivateAgent"]["userErrors"] == []
    sink.clear()
    assert (await data(mail_server, REQUEST, {"input": {"email": email}}))["requestPasswordReset"] == {
        "ok": True,
        "userErrors": [],
    }
    other = await new_agent(mail_server, tenant)
    await data(mail_server, REQUEST, {"input": {"email": other}})
    assert [m.envelope_to for m in await sink.wait_for(1)] == [[other]]  # the marker mail, and nothing before it


async def test_requests_are_limited_per_address_whatever_the_email(tmp_path: Path, sink: SmtpSink) -> None:
    """One address asking for resets of many e-mails (an enumeration, or mail-bombing many
    inboxes) is stopped by the per-address limit; another address still gets through."""
    env = {**sink.env, "RATE_LIMIT_PASSWORD_RESET_PER_IP": "4/hour", "TRUSTED_PROXIES": '["127.0.0.1"]'}
    server = start_server(tmp_path, env=env, name="reset_per_ip")

    async def ask(http: httpx.AsyncClient, n: int, address: str) -> httpx.Response:
        variables = {"input": {"email": f"nobody-{n}-{secrets.token_hex(3)}@example.com"}}
        return await http.post(
            "/graphql", json={"query": REQUEST, "variables": variables}, headers={"x-forwarded-for": address}
        )

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            for n in range(4):
                answered = await ask(http, n, "198.51.100.1")
                assert answered.status_code == 200 and answered.json()["data"]["requestPasswordReset"]["ok"] is True
            refused = await ask(http, 4, "198.51.100.1")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
            [error] = refused.json()["errors"]
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert error["message"].startswith("Too many password resets from this address:")
            other = await ask(http, 5, "198.51.100.2")
            assert other.status_code == 200 and other.json()["data"]["requestPasswordReset"]["ok"] is True
    finally:
        server.stop()
