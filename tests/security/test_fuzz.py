"""Every query and mutation of schema.graphql, fuzzed by schemathesis (hypothesis-graphql
underneath) against a real uvicorn process, authenticated with an all-scopes API key.

A hostile client must only ever meet clear errors: no HTTP 500, and no GraphQL error with
code INTERNAL (an exception we did not mean, masked). Bounded: a few examples for each
operation, no shrinking, the whole run well under a minute. Failures are gathered over
every operation and reported together, each with the document that caused it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from schemathesis.graphql import nodes
from strawberry.relay import to_base64

from tests.conftest import ROOT, LiveServer, Tenant, pk, start_server

EXAMPLES_PER_OPERATION = 3
# Each principal's budget: what is left is skipped (and said so) rather than overrun.
BUDGET_SECONDS = 25


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("fuzz"))
    yield live
    live.stop()


def _failure(status: int, body: Any) -> str | None:
    if status >= 500:
        return f"HTTP {status}"
    if not isinstance(body, dict):
        return f"HTTP {status}, not a JSON object"
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code == "INTERNAL" or "Internal server error" in str(error.get("message")):
            return f"HTTP {status}, {code}: {error.get('message')} at {error.get('path')}"
    return None


def global_ids(schema_text: str, ids: list[int]) -> st.SearchStrategy[Any]:
    """IDs that mostly parse: global ids of every node type with the tenant's own ids (and
    some of nobody's), and now and then any string at all."""
    types = re.findall(r"^type (\w+) implements Node", schema_text, re.M)
    valid = st.builds(to_base64, st.sampled_from(types), st.sampled_from([*ids, 1, 2**31, 2**63]))
    return st.one_of(valid, valid, valid, st.text(max_size=12)).map(nodes.String)


def fuzz(url: str, token: str, ids: list[int]) -> tuple[list[str], int, list[str]]:
    """(failures, requests sent, operations not reached within the budget)."""
    schemathesis.graphql.scalar("ID", global_ids((ROOT / "schema.graphql").read_text(), ids))
    schema = schemathesis.graphql.from_path(ROOT / "schema.graphql")
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) > 50, "schemathesis found too few operations in schema.graphql"
    failures: dict[str, str] = {}
    sent = [0]
    started = time.monotonic()
    skipped: list[str] = []
    with httpx.Client(base_url=url, timeout=20, headers={"authorization": f"Bearer {token}"}) as http:
        for operation in operations:
            if time.monotonic() - started > BUDGET_SECONDS:
                skipped.append(operation.label)
                continue

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def send(case: Any) -> None:
                response = http.post("/graphql", json={"query": case.body})
                sent[0] += 1
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                problem = _failure(response.status_code, body)
                if problem and operation.label not in failures:
                    failures[operation.label] = f"{problem}\n    {case.body}"

            send()
    return [f"{label}: {text}" for label, text in failures.items()], sent[0], skipped


@pytest.mark.parametrize("principal", ["api_key", "owner"])
async def test_no_operation_answers_an_internal_error(server: LiveServer, tenant: Tenant, principal: str) -> None:
    contact = await tenant.contact(name="Fuzzy", email="fuzzy@example.com")
    ids = [tenant.workspace.id, tenant.owner.id, tenant.channel.id, pk(contact["id"])]
    token = tenant.api_key if principal == "api_key" else tenant.owner_token
    failures, sent, skipped = await asyncio.to_thread(fuzz, server.url, token, ids)
    print(f"fuzz as {principal}: {sent} requests; not reached in {BUDGET_SECONDS} s: {skipped or 'none'}")
    assert sent > 200
    assert not failures, "\n".join(failures)


# -- what the fuzzer found ------------------------------------------------------------------


@pytest.mark.parametrize("node_id", [2**31, 2**63, 2**64])
async def test_an_id_beyond_any_column_finds_nothing(tenant: Tenant, node_id: int) -> None:
    """Contact ids are 32-bit on PostgreSQL; no id is beyond 64 bits. Both answered INTERNAL."""
    gid = to_base64("Contact", node_id)
    data = await tenant.api("query($id: ID!) { contact(id: $id) { id } }", {"id": gid}, token=tenant.api_key)
    assert data == {"contact": None}
    body = (
        await tenant.api.raw(
            "mutation($id: ID!) { deleteSegment(input: {id: $id}) { deletedId } }",
            {"id": to_base64("Segment", node_id)},
            token=tenant.owner_token,
        )
    ).json()
    assert [e["extensions"]["code"] for e in body.get("errors", [])] in ([], ["NOT_FOUND"]), body


async def test_a_login_with_values_longer_than_their_columns_is_only_wrong(tenant: Tenant) -> None:
    query = (
        "mutation($e: String!, $w: String) { "
        'login(input: {email: $e, password: "x", workspace: $w}) { token userErrors { code } } }'
    )
    for email, workspace in [("owner@example.com", "w" * 65), ("o" * 255 + "@example.com", None)]:
        data = await tenant.api(query, {"e": email, "w": workspace})
        assert data["login"] == {"token": None, "userErrors": [{"code": "INVALID_CREDENTIALS"}]}
