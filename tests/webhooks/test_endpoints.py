"""Webhook endpoints through the API: who may manage them, validation, secrets shown once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, Tenant
from tests.webhooks.conftest import CREATE_ENDPOINT, register

ENDPOINTS = """{ webhookEndpoints { edges { node {
  id url description eventTypes enabled consecutiveFailures disabledReason
} } } }"""
UPDATE = """mutation($i: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $i) {
  endpoint { id url description eventTypes enabled disabledReason } userErrors { field code message }
} }"""
ROTATE = "mutation($i: WebhookEndpointIdInput!) { rotateWebhookEndpointSecret(input: $i) { secret userErrors { field code } } }"
DELETE = "mutation($i: WebhookEndpointIdInput!) { deleteWebhookEndpoint(input: $i) { deletedId userErrors { field code } } }"


async def test_owners_register_endpoints_and_see_the_secret_once(tenant: Tenant) -> None:
    payload = (await tenant.api(CREATE_ENDPOINT, {"i": {
        "url": "https://crm.example.com/parley", "eventTypes": ["CONTACT_UPDATED", "CONTACT_CREATED", "CONTACT_UPDATED"],
    }}, token=tenant.owner_token))["createWebhookEndpoint"]  # fmt: skip
    assert payload["userErrors"] == []
    assert payload["secret"].startswith("whsec_") and len(payload["secret"]) > 40
    assert payload["endpoint"]["eventTypes"] == ["CONTACT_CREATED", "CONTACT_UPDATED"]
    listed = (await tenant.api(ENDPOINTS, token=tenant.owner_token))["webhookEndpoints"]["edges"]
    assert [e["node"]["url"] for e in listed] == ["https://crm.example.com/parley"]
    # The secret is not a field of the endpoint: it cannot be read back, only rotated.
    errors = await tenant.api.errors("{ webhookEndpoints { edges { node { secret } } } }", token=tenant.owner_token)
    assert "secret" in errors[0]["message"]
    endpoint_id = payload["endpoint"]["id"]
    rotated = (await tenant.api(ROTATE, {"i": {"id": endpoint_id}}, token=tenant.owner_token))["rotateWebhookEndpointSecret"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != payload["secret"]

    updated = (await tenant.api(UPDATE, {"i": {"id": endpoint_id, "description": "  Salesforce   sync ", "eventTypes": ["SEGMENT_JOINED"],
                                              "enabled": False}}, token=tenant.owner_token))["updateWebhookEndpoint"]  # fmt: skip
    assert updated["userErrors"] == []
    assert updated["endpoint"] | {"id": None} == {
        "id": None, "url": "https://crm.example.com/parley", "description": "Salesforce sync", "eventTypes": ["SEGMENT_JOINED"],
        "enabled": False, "disabledReason": "Disabled by a user.",
    }  # fmt: skip
    enabled = (await tenant.api(UPDATE, {"i": {"id": endpoint_id, "enabled": True}}, token=tenant.owner_token))["updateWebhookEndpoint"]
    assert enabled["endpoint"]["enabled"] is True and enabled["endpoint"]["disabledReason"] is None
    deleted = (await tenant.api(DELETE, {"i": {"id": endpoint_id}}, token=tenant.owner_token))["deleteWebhookEndpoint"]
    assert deleted == {"deletedId": endpoint_id, "userErrors": []}
    assert (await tenant.api(ENDPOINTS, token=tenant.owner_token))["webhookEndpoints"]["edges"] == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"url": "ftp://crm.example.com", "eventTypes": ["CONTACT_CREATED"]}, [(["url"], "INVALID")]),
        ({"url": "https://user:pw@crm.example.com", "eventTypes": ["CONTACT_CREATED"]}, [(["url"], "INVALID")]),
        ({"url": "https://crm.example.com", "eventTypes": []}, [(["eventTypes"], "REQUIRED")]),
        ({"url": "https://crm.example.com", "eventTypes": ["PING"]}, [(["eventTypes"], "INVALID")]),
        ({"url": "https://crm.example.com", "eventTypes": ["CONTACT_CREATED"], "description": "x" * 201}, [(["description"], "TOO_LONG")]),
    ],
)
async def test_invalid_endpoints_are_refused(tenant: Tenant, fields: dict[str, Any], expected: list[Any]) -> None:
    payload = (await tenant.api(CREATE_ENDPOINT, {"i": fields}, token=tenant.owner_token))["createWebhookEndpoint"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == expected
    assert payload["endpoint"] is None and payload["secret"] is None


async def test_production_refuses_plain_http_and_private_addresses(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import settings

    monkeypatch.setattr(settings, "env", "prod")  # https only; private networks refused when not allowed
    monkeypatch.setattr(settings, "outbound_allow_private_networks", None)
    for url in ("http://crm.example.com/hook", "https://127.0.0.1/hook", "https://10.0.0.8/hook", "https://[::1]/hook",
                "https://169.254.169.254/latest", "https://localhost/hook"):  # fmt: skip
        payload = (await tenant.api(CREATE_ENDPOINT, {"i": {"url": url, "eventTypes": ["CONTACT_CREATED"]}}, token=tenant.owner_token))
        assert [e["code"] for e in payload["createWebhookEndpoint"]["userErrors"]] == ["INVALID"], url


async def test_only_owners_admins_and_keys_with_the_scope_manage_endpoints(tenant: Tenant, api: Api) -> None:
    _, agent_token = await tenant.agent()
    _, admin_token = await tenant.agent(role="admin")
    await register(tenant, "https://crm.example.com/a", ["CONTACT_CREATED"], token=admin_token)
    await register(tenant, "https://crm.example.com/b", ["CONTACT_CREATED"], token=tenant.api_key)  # the default key has every scope
    reader = (await tenant.api('mutation { createApiKey(input: {name: "r", scopes: ["contacts:read"]}) { secret } }',
                               token=tenant.owner_token))["createApiKey"]["secret"]  # fmt: skip
    for token in (agent_token, reader):
        for query, variables in ((ENDPOINTS, None), (CREATE_ENDPOINT, {"i": {"url": "https://x.example.com", "eventTypes": ["CONTACT_CREATED"]}})):
            body = (await api.raw(query, variables, token=token)).json()
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert len((await tenant.api(ENDPOINTS, token=admin_token))["webhookEndpoints"]["edges"]) == 2


async def test_a_workspace_has_at_most_twenty_endpoints(tenant: Tenant) -> None:
    for i in range(20):
        await register(tenant, f"https://crm.example.com/{i}", ["CONTACT_CREATED"])
    payload = (await tenant.api(CREATE_ENDPOINT, {"i": {"url": "https://crm.example.com/21", "eventTypes": ["CONTACT_CREATED"]}},
                                token=tenant.owner_token))["createWebhookEndpoint"]  # fmt: skip
    assert [e["code"] for e in payload["userErrors"]] == ["NOT_ALLOWED"]
