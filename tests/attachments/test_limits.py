"""What a workspace accepts (its policy, and what is refused whatever it says), the caps of
a multipart request, and who may set the policy or ask for an upload URL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.config import settings
from tests.attachments.helpers import (
    SEND,
    UPLOAD_URL,
    contact_conversation,
    multipart,
    send_files,
    stored_files,
    widget_session,
)
from tests.conftest import LiveServer, Tenant, gql, start_server
from tests.security.test_request_limits import _raw_request as raw_request

POLICY = (
    "mutation($i: SetAttachmentPolicyInput!) { setAttachmentPolicy(input: $i) { "
    "policy { maxBytes contentTypes } userErrors { field code message } } }"
)
READ_POLICY = "{ attachmentPolicy { maxBytes contentTypes } }"


async def test_the_default_policy_and_an_admins_own(tenant: Tenant) -> None:
    default = (await tenant.api(READ_POLICY, token=tenant.owner_token))["attachmentPolicy"]
    assert default == {
        "maxBytes": settings.attachment_max_bytes,
        "contentTypes": settings.attachment_content_types,
    }
    changed = await tenant.api(
        POLICY, {"i": {"maxBytes": 2048, "contentTypes": ["image/*", "Application/PDF"]}}, token=tenant.owner_token
    )
    assert changed["setAttachmentPolicy"] == {
        "policy": {"maxBytes": 2048, "contentTypes": ["application/pdf", "image/*"]},
        "userErrors": [],
    }
    # Omitted values stay; the contact's widget reads the same limits.
    kept = await tenant.api(POLICY, {"i": {"maxBytes": 4096}}, token=tenant.owner_token)
    assert kept["setAttachmentPolicy"]["policy"] == {"maxBytes": 4096, "contentTypes": ["application/pdf", "image/*"]}
    token, _ = await widget_session(tenant, "policy-reader")
    assert (await tenant.api(READ_POLICY, token=token))["attachmentPolicy"]["maxBytes"] == 4096


async def test_a_policy_is_checked_field_by_field(tenant: Tenant) -> None:
    ceiling = settings.attachment_max_bytes_ceiling
    data = await tenant.api(
        POLICY,
        {"i": {"maxBytes": ceiling + 1, "contentTypes": ["image/png", "text/html", "not a type", "x" * 5000]}},
        token=tenant.owner_token,
    )
    assert data["setAttachmentPolicy"]["userErrors"] == [
        {"field": ["maxBytes"], "code": "INVALID", "message": f"maxBytes is 1 to {ceiling}."},
        {"field": ["contentTypes", "1"], "code": "NOT_ALLOWED", "message": "text/html files are always refused."},
        {
            "field": ["contentTypes", "2"],
            "code": "INVALID",
            "message": "A media type (image/png) or a pattern (image/*).",
        },
        {
            "field": ["contentTypes", "3"],
            "code": "INVALID",
            "message": "A media type (image/png) or a pattern (image/*).",
        },
    ]
    many = await tenant.api(POLICY, {"i": {"contentTypes": ["image/png"] * 101}}, token=tenant.owner_token)
    assert many["setAttachmentPolicy"]["userErrors"][0] == {
        "field": ["contentTypes"],
        "code": "INVALID",
        "message": "At most 100 types.",
    }


async def test_only_owners_and_admins_set_the_policy(tenant: Tenant) -> None:
    _, agent_token = await tenant.agent("agent")
    for token in (agent_token, tenant.api_key):
        errors = await tenant.api.errors(POLICY, {"i": {"maxBytes": 1}}, token=token)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    contact_token, _ = await widget_session(tenant, "policy-writer")
    errors = await tenant.api.errors(POLICY, {"i": {"maxBytes": 1}}, token=contact_token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert (await tenant.api(READ_POLICY, token=tenant.owner_token))["attachmentPolicy"]["maxBytes"] != 1


@pytest.mark.parametrize(
    ("file", "code", "message"),
    [
        (
            ("run.exe", b"MZ" + b"0" * 100, "application/octet-stream"),
            "NOT_ALLOWED",
            "run.exe: files ending in .exe are refused.",
        ),
        (("logo.svg", b"<svg/>", "image/svg+xml"), "NOT_ALLOWED", "logo.svg: files ending in .svg are refused."),
        (("page", b"<html>", "text/html"), "NOT_ALLOWED", "page: text/html files are refused."),
        (
            ("data.bin", b"\x00" * 10, "application/x-thing"),
            "NOT_ALLOWED",
            "data.bin: application/x-thing is not among this workspace's allowed types.",
        ),
        (("big.png", b"\x89PNG" + b"0" * 3000, "image/png"), "TOO_LONG", "big.png: a file may be at most 2048 bytes."),
        (
            ("odd.png", b"\x89PNG", "not/a type"),
            "INVALID",
            "odd.png: the content type is not a media type (such as image/png).",
        ),
    ],
    ids=["exe", "svg", "html", "not-allowed", "too-large", "bad-type"],
)
async def test_refused_files_name_the_field_and_store_nothing(
    server: LiveServer, tenant: Tenant, file: tuple[str, bytes, str], code: str, message: str
) -> None:
    await tenant.api(POLICY, {"i": {"maxBytes": 2048}}, token=tenant.owner_token)
    token, _ = await widget_session(tenant, "refused")
    conversation_id = await contact_conversation(tenant, token)
    response = await multipart(
        server,
        SEND,
        {"i": {"conversationId": conversation_id, "attachments": [None]}},
        {"variables.i.attachments.0": file},
        token,
    )
    assert response.json()["data"]["sendMessage"] == {
        "message": None,
        "userErrors": [{"field": ["attachments", "0"], "code": code, "message": message}],
    }
    assert stored_files(tenant.workspace.id) == []


async def test_upload_urls_are_checked_before_anything_is_made(server: LiveServer, tenant: Tenant) -> None:
    await tenant.api(POLICY, {"i": {"maxBytes": 2048}}, token=tenant.owner_token)
    cases = [
        ({"filename": "a.png", "contentType": "image/png", "size": 4096}, ["size"], "TOO_LONG"),
        ({"filename": "a.png", "contentType": "image/png", "size": 0}, ["size"], "INVALID"),
        ({"filename": "a.html", "contentType": "text/html", "size": 10}, ["contentType"], "NOT_ALLOWED"),
        ({"filename": "a" * 1001, "contentType": "image/png", "size": 10}, ["filename"], "TOO_LONG"),
        ({"filename": "a.png", "contentType": "image/" + "p" * 200, "size": 10}, ["contentType"], "TOO_LONG"),
    ]
    for values, field, code in cases:
        payload = (await gql(server, UPLOAD_URL, {"i": values}, tenant.owner_token))["createUploadUrl"]
        assert payload["url"] is None and [(e["field"], e["code"]) for e in payload["userErrors"]] == [(field, code)]
    # A stranger holding only the widget key gets nothing.
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = (
            await http.post(
                "/graphql",
                json={
                    "query": UPLOAD_URL,
                    "variables": {"i": {"filename": "a.png", "contentType": "image/png", "size": 9}},
                },
                headers={"x-parley-channel-key": tenant.channel.public_key},
            )
        ).json()
    assert answer["data"] is None and answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_too_many_files_in_one_message(server: LiveServer, tenant: Tenant) -> None:
    token, _ = await widget_session(tenant, "many")
    conversation_id = await contact_conversation(tenant, token)
    most = settings.attachments_per_message
    files = {f"variables.i.attachments.{n}": (f"{n}.png", b"\x89PNG", "image/png") for n in range(most + 1)}
    response = await multipart(
        server, SEND, {"i": {"conversationId": conversation_id, "attachments": [None] * (most + 1)}}, files, token
    )
    # Starlette's parser stops at the limit: the request is refused before any resolver runs.
    assert response.status_code == 400
    assert "Too many files" in response.json()["errors"][0]["message"]
    assert stored_files(tenant.workspace.id) == []


async def test_a_multipart_body_has_the_ceiling_for_limit_and_json_keeps_its_own(
    tmp_path: Path, tenant: Tenant
) -> None:
    live = start_server(tmp_path, env={"ATTACHMENT_MAX_BYTES_CEILING": "100000", "MAX_BODY_BYTES": "20000"})
    try:
        multipart_head = (
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            "Content-Length: 200000\r\n"
        )
        status, body = await raw_request(live, multipart_head, [b"--b\r\n"])
        assert status == 413 and "larger than 100000 bytes" in body["errors"][0]["message"]
        json_head = "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000\r\n"
        status, body = await raw_request(live, json_head, [b'{"query": "'])
        assert status == 413 and "larger than 20000 bytes" in body["errors"][0]["message"]

        # A file larger than any JSON body may be, within the ceiling and the policy.
        token, _ = await widget_session(tenant, "huge")
        conversation_id = await contact_conversation(tenant, token)
        sent = await send_files(
            live, token, conversation_id, [("scan.pdf", b"%PDF" + b"0" * 60_000, "application/pdf")]
        )
        assert sent["message"]["attachments"][0]["size"] == 60_004
    finally:
        live.stop()


async def test_a_contact_session_is_rate_limited_on_files(tmp_path: Path, tenant: Tenant) -> None:
    live = start_server(tmp_path, env={"RATE_LIMIT_ATTACHMENTS_PER_CONTACT": "2/hour"})
    try:
        token, _ = await widget_session(tenant, "flood")
        conversation_id = await contact_conversation(tenant, token)
        await send_files(live, token, conversation_id, [("1.png", b"1", "image/png"), ("2.png", b"2", "image/png")])
        response = await multipart(
            live,
            SEND,
            {"i": {"conversationId": conversation_id, "attachments": [None]}},
            {"variables.i.attachments.0": ("3.png", b"3", "image/png")},
            token,
        )
        assert response.status_code == 429
        assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        ticket = await gql(
            live, UPLOAD_URL, {"i": {"filename": "4.png", "contentType": "image/png", "size": 1}}, tenant.owner_token
        )
        assert ticket["createUploadUrl"]["userErrors"] == []  # agents are not counted
    finally:
        live.stop()


async def test_a_string_in_place_of_a_file_is_a_request_error(tenant: Tenant) -> None:
    token, _ = await widget_session(tenant, "not-a-file")
    conversation_id = await contact_conversation(tenant, token)
    as_variable = await tenant.api.raw(
        SEND, {"i": {"conversationId": conversation_id, "attachments": ["/etc/passwd"]}}, token=token
    )
    literal = (
        f'mutation {{ sendMessage(input: {{conversationId: "{conversation_id}", attachments: ["/etc/passwd"]}}) '
        "{ userErrors { code } } }"
    )
    in_document = await tenant.api.raw(literal, token=token)
    for response in (as_variable, in_document):
        [error] = response.json()["errors"]
        assert "An Upload is a file sent as a part of a multipart request" in error["message"]
        assert error.get("extensions", {}).get("code") != "INTERNAL"
