"""Helpers for the attachment tests: requests as Apollo's and urql's upload clients send
them (the GraphQL multipart request spec) to a real uvicorn, direct uploads, downloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.config import settings
from tests.conftest import LiveServer, Tenant

ERRORS = "userErrors { field code message }"
ATTACHMENTS = "attachments { id filename contentType size url }"
SEND = (
    f"mutation($i: SendMessageInput!) {{ sendMessage(input: $i) {{ message {{ id body {ATTACHMENTS} }} {ERRORS} }} }}"
)
START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) { "
    f"conversation {{ id }} message {{ id body {ATTACHMENTS} }} {ERRORS} }} }}"
)
UPLOAD_URL = (
    f"mutation($i: CreateUploadUrlInput!) {{ createUploadUrl(input: $i) {{ url uploadId expiresAt {ERRORS} }} }}"
)
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { "
    "token contact { id } userErrors { field code message } } }"
)
MESSAGES = f"""query($id: ID!) {{ conversation(id: $id) {{ messages(first: 50) {{ edges {{ node {{
  id body {ATTACHMENTS} }} }} }} }} }}"""
MY_MESSAGES = f"""{{ myConversations(first: 10) {{ edges {{ node {{ id messages(first: 50) {{ edges {{ node {{
  id body {ATTACHMENTS} }} }} }} }} }} }} }}"""

File = tuple[str, bytes, str]  # (file name, bytes, content type)


async def multipart(
    server: LiveServer, query: str, variables: dict[str, Any], files: dict[str, File], token: str
) -> httpx.Response:
    """A POST as apollo-upload-client makes it: `operations` (the files' places null), then
    `map` (which file goes where: "variables.i.attachments.0"), then the files as "0", "1"…"""
    operations = json.loads(json.dumps({"query": query, "variables": variables}))
    mapping: dict[str, list[str]] = {}
    parts: list[tuple[str, File]] = []
    for n, (path, file) in enumerate(files.items()):
        target: Any = operations
        *parents, last = path.split(".")
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        target[int(last) if isinstance(target, list) else last] = None
        mapping[str(n)] = [path]
        parts.append((str(n), file))
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post(
            "/graphql",
            data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
            files=parts,
            headers=headers,
        )


async def send_files(
    server: LiveServer, token: str, conversation_id: str, files: list[File], body: str = "Here you are"
) -> dict[str, Any]:
    """sendMessage with files, multipart; its payload."""
    variables = {"i": {"conversationId": conversation_id, "body": body, "attachments": [None] * len(files)}}
    response = await multipart(
        server, SEND, variables, {f"variables.i.attachments.{n}": f for n, f in enumerate(files)}, token
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert not data.get("errors"), data
    return data["data"]["sendMessage"]  # type: ignore[no-any-return]


def local(url: str) -> str:
    """A link Parley made (under PUBLIC_URL), as a path on whichever server serves it."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def fetch(server: LiveServer, url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.get(local(url))


async def put(server: LiveServer, url: str, content: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.put(local(url), content=content, headers=headers)


def stored_files(workspace_id: int) -> list[Path]:
    """The files the disk store holds for a workspace (drafts included)."""
    folder = Path(settings.attachment_dir) / str(workspace_id)
    return sorted(folder.iterdir()) if folder.exists() else []


async def widget_session(tenant: Tenant, external_id: str) -> tuple[str, str]:
    data = await tenant.api(
        SESSION, {"i": {"channelKey": tenant.channel.public_key, "externalId": external_id}}, token=""
    )
    payload = data["startContactSession"]
    assert payload["userErrors"] == [], payload
    return payload["token"], payload["contact"]["id"]


async def contact_conversation(tenant: Tenant, token: str, body: str = "Hello") -> str:
    data = await tenant.api(START, {"i": {"body": body}}, token=token)
    payload = data["startConversation"]
    assert payload["userErrors"] == [], payload
    return payload["conversation"]["id"]  # type: ignore[no-any-return]
