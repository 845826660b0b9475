"""Apollo's automatic persisted queries, spoken as Apollo Client sends them to a real
server: a hash alone first (PersistedQueryNotFound), then hash and query, then the hash
alone again, over POST and over GET (useGETForHashedQueries)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, Tenant, start_server

APOLLO_ACCEPT = "multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json;q=0.9"


def _document() -> str:
    # A text of its own for each test: the hash is new to the server.
    return f"query Workspace {{ workspace {{ name }} w{uuid.uuid4().hex}: workspace {{ id }} }}"


def _persisted(document: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(document.encode()).hexdigest()}}


def _headers(tenant: Tenant) -> dict[str, str]:
    return {"authorization": f"Bearer {tenant.api_key}", "accept": APOLLO_ACCEPT}


async def _post(server: LiveServer, tenant: Tenant, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.post("/graphql", json=body, headers=_headers(tenant))


async def _get(server: LiveServer, tenant: Tenant, params: dict[str, Any]) -> httpx.Response:
    query = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.get("/graphql", params=query, headers=_headers(tenant))


def _not_found(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {
        "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]
    }
    assert "no-cache" in response.headers["cache-control"]


async def test_post_a_hash_then_hash_and_query_then_the_hash_alone(server: LiveServer, tenant: Tenant) -> None:
    document = _document()
    body = {"operationName": "Workspace", "variables": {}, "extensions": _persisted(document)}
    _not_found(await _post(server, tenant, body))
    registered = await _post(server, tenant, {**body, "query": document})
    assert registered.status_code == 200 and registered.json()["data"]["workspace"]["name"] == "Acme"
    again = await _post(server, tenant, body)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["workspace"]["name"] == "Acme"


async def test_get_requests_use_the_same_store(server: LiveServer, tenant: Tenant) -> None:
    document = _document()
    params = {"operationName": "Workspace", "extensions": _persisted(document)}
    _not_found(await _get(server, tenant, params))
    registered = await _get(server, tenant, {**params, "query": document})
    assert registered.json()["data"]["workspace"]["name"] == "Acme"
    # A query registered by GET runs by POST, and the other way round.
    assert (await _post(server, tenant, {"extensions": _persisted(document)})).json()["data"]["workspace"][
        "name"
    ] == "Acme"
    assert (await _get(server, tenant, params)).json()["data"]["workspace"]["name"] == "Acme"


async def test_a_hash_that_is_not_the_querys_is_refused_and_nothing_is_kept(server: LiveServer, tenant: Tenant) -> None:
    document, other = _document(), _document()
    lying = await _post(server, tenant, {"query": other, "extensions": _persisted(document)})
    assert lying.status_code == 400
    [error] = lying.json()["errors"]
    assert error["extensions"]["code"] == "INVALID" and "sha256Hash" in error["message"]
    _not_found(await _post(server, tenant, {"extensions": _persisted(document)}))


@pytest.mark.parametrize(
    ("persisted", "says"),
    [
        ({"version": 2, "sha256Hash": "0" * 64}, "version must be 1"),
        ({"version": 1, "sha256Hash": "not-a-hash"}, "64 lowercase hex"),
        ("abc", "must be an object"),
    ],
)
async def test_malformed_persisted_query_extensions_are_named(
    server: LiveServer, tenant: Tenant, persisted: Any, says: str
) -> None:
    response = await _post(server, tenant, {"extensions": {"persistedQuery": persisted}})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "INVALID" and says in error["message"]


async def test_mutations_are_not_run_by_get(server: LiveServer, tenant: Tenant) -> None:
    document = 'mutation Tag { createContact(input: {email: "apq-get@example.com"}) { contact { id } } }'
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        await http.post(
            "/graphql", json={"query": document, "extensions": _persisted(document)}, headers=_headers(tenant)
        )
    response = await _get(server, tenant, {"extensions": _persisted(document)})
    assert response.status_code == 400 and "mutations are not allowed when using get" in response.text.lower(), (
        response.text
    )
    assert (await _post(server, tenant, {"query": '{ contacts(search: "apq-get") { totalCount } }'})).json()["data"][
        "contacts"
    ]["totalCount"] == 1


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that keeps at most two documents (under a Redis prefix of its own)."""
    live = start_server(
        tmp_path_factory.mktemp("apq-small"),
        env={"PERSISTED_QUERY_MAX_DOCUMENTS": "2", "REDIS_PREFIX": f"apq-{uuid.uuid4().hex[:8]}"},
        name="apq-small",
    )
    yield live
    live.stop()


async def test_the_store_keeps_at_most_its_bound_the_oldest_go_first(small_store: LiveServer, tenant: Tenant) -> None:
    documents = [_document() for _ in range(3)]
    for document in documents:
        assert (
            await _post(small_store, tenant, {"query": document, "extensions": _persisted(document)})
        ).status_code == 200
    _not_found(await _post(small_store, tenant, {"extensions": _persisted(documents[0])}))
    for document in documents[1:]:
        assert (await _post(small_store, tenant, {"extensions": _persisted(document)})).json()["data"]["workspace"]


async def test_a_server_that_keeps_none_says_not_supported(tmp_path: Path, tenant: Tenant) -> None:
    server = start_server(tmp_path, env={"PERSISTED_QUERY_MAX_DOCUMENTS": "0"}, name="apq-off")
    try:
        document = _document()
        refused = await _post(server, tenant, {"extensions": _persisted(document)})
        full = await _post(server, tenant, {"query": document, "extensions": _persisted(document)})
    finally:
        server.stop()
    assert refused.status_code == 200
    assert refused.json() == {
        "errors": [{"message": "PersistedQueryNotSupported", "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"}}]
    }
    assert full.json()["data"]["workspace"]["name"] == "Acme"


async def _registered(server: LiveServer, document: str, headers: dict[str, str]) -> dict[str, Any]:
    """Registers `document` (by POST) and returns a hash-only GET's parameters for it."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        await http.post("/graphql", json={"query": document, "extensions": _persisted(document)}, headers=headers)
    return {"extensions": json.dumps(_persisted(document))}


async def test_a_hash_only_get_with_credentials_may_be_kept_by_the_browser_alone(
    server: LiveServer, tenant: Tenant
) -> None:
    document = _document()
    params = await _registered(server, document, _headers(tenant))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        answer = await http.get("/graphql", params=params, headers=_headers(tenant))
        full = await http.get("/graphql", params={"query": document}, headers=_headers(tenant))
    assert answer.json()["data"]["workspace"]["name"] == "Acme"
    assert answer.headers["cache-control"] == "private, max-age=60"
    assert {"accept", "authorization"} <= {v.strip().lower() for v in answer.headers["vary"].split(",")}
    # A GET that sends its document (no hash) is not said to be cacheable.
    assert full.json()["data"]["workspace"]["name"] == "Acme" and "cache-control" not in full.headers


async def test_a_hash_only_get_without_credentials_may_be_kept_by_any_cache(server: LiveServer) -> None:
    document = f"query Anonymous {{ __typename t{uuid.uuid4().hex}: __typename }}"
    params = await _registered(server, document, {})
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        answer = await http.get("/graphql", params=params, headers={"accept": APOLLO_ACCEPT})
    assert answer.json()["data"]["__typename"] == "Query"
    assert answer.headers["cache-control"] == "public, max-age=60"


async def test_an_answer_with_errors_is_never_cached(server: LiveServer, tenant: Tenant) -> None:
    document = _document()  # the workspace: nothing for a caller without credentials
    params = await _registered(server, document, _headers(tenant))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        anonymous = await http.get("/graphql", params=params, headers={"accept": APOLLO_ACCEPT})
        signed_in = await http.get("/graphql", params=params, headers=_headers(tenant))
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", anonymous.text
    assert anonymous.headers["cache-control"] == "no-store"
    assert signed_in.headers["cache-control"] == "private, max-age=60"
