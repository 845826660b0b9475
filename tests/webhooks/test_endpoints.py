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
ROTATE = (
    "mutation($i: WebhookEndpointIdInput!) { "
    "rotateWebhookEndpointSecret(input: $i) { secret userErrors { field code } } }"
)
DELETE = (
    "mutation($i: WebhookEndpointIdInput!) { deleteWebhookEndpoint(input: $i) { deletedId userErrors { field code } } }"
)


async def test_owners_register_endpoints_and_see_the_secret_once(tenant: Tenant) -> None:
    payload = (
        await tenant.api(
            CREATE_ENDPOINT,
            {
                "i": {
                    "url": "https://crm.example.com/parley",
                    "eventTypes": ["CONTACT_UPDATED", "CONTACT_CREATED", "CONTACT_UPDATED"],
                }
            },
            token=tenant.owner_token,
        )
    )["createWebhookEndpoint"]
    assert payload["userErrors"] == []
    assert payload["secret"].startswith("whsec_") and len(payload["secret"]) > 40
    assert payload["endpoint"]["eventTypes"] == ["CONTACT_CREATED", "CONTACT_UPDATED"]
    listed = (await tenant.api(ENDPOINTS, token=tenant.owner_token))["webhookEndpoints"]["edges"]
    assert [e["node"]["url"] for e in listed] == ["https://crm.example.com/parley"]
    # The secret is not a field of the endpoint: it cannot be read back, only rotated.
    errors = await tenant.api.errors("{ webhookEndpoints { edges { node { secret } } } }", token=tenant.owner_token)
    assert "secret" in errors[0]["message"]
    endpoint_id = payload["endpoint"]["id"]
    rotated = (await tenant.api(ROTATE, {"i": {"id": endpoint_id}}, token=tenant.owner_token))[
        "rotateWebhookEndpointSecret"
    ]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != payload["secret"]

    updated = (
        await tenant.api(
            UPDATE,
            {
                "i": {
                    "id": endpoint_id,
                    "description": "  Salesforce   sync ",
                    "eventTypes": ["SEGMENT_JOINED"],
                    "enabled": False,
                }
            },
            token=tenant.owner_token,
        )
    )["updateWebhookEndpoint"]
    assert updated["userErrors"] == []
    assert updated["endpoint"] | {"id": None} == {
        "id": None,
        "url": "https://crm.example.com/parley",
        "description": "Salesforce sync",
        "eventTypes": ["SEGMENT_JOINED"],
        "enabled": False,
        "disabledReason": "Disabled by a user.",
    }
    enabled = (await tenant.api(UPDATE, {"i": {"id": endpoint_id, "enabled": True}}, token=tenant.owner_token))[
        "updateWebhookEndpoint"
    ]
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
        (
            {"url": "https://crm.example.com", "eventTypes": ["CONTACT_CREATED"], "description": "x" * 201},
            [(["description"], "TOO_LONG")],
        ),
    ],
)
async def test_invalid_endpoints_are_refused(tenant: Tenant, fields: dict[str, Any], expected: list[Any]) -> None:
    payload = (await tenant.api(CREATE_ENDPOINT, {"i": fields}, token=tenant.owner_token))["createWebhookEndpoint"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == expected
    assert payload["endpoint"] is None and payload["secret"] is None


async def test_production_refuses_plain_http_and_private_addresses(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import settings

    monkeypatch.setattr(settings, "env", "prod")  # https only; private networks refused when not allowed
    monkeypatch.setattr(settings, "outbound_allow_private_networks", None)
    for url in (
        "http://crm.example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.8/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
        "https://localhost/hook",
    ):
        payload = await tenant.api(
            CREATE_ENDPOINT, {"i": {"url": url, "eventTypes": ["CONTACT_CREATED"]}}, token=tenant.owner_token
        )
        assert [e["code"] for e in payload["createWebhookEndpoint"]["userErrors"]] == ["INVALID"], url


async def test_only_owners_admins_and_keys_with_the_scope_manage_endpoints(tenant: Tenant, api: Api) -> None:
    _, agent_token = await tenant.agent()
    _, admin_token = await tenant.agent(role="admin")
    await register(tenant, "https://crm.example.com/a", ["CONTACT_CREATED"], token=admin_token)
    await register(
        tenant, "https://crm.example.com/b", ["CONTACT_CREATED"], token=tenant.api_key
    )  # the default key has every scope
    reader = (
        await tenant.api(
            'mutation { createApiKey(input: {name: "r", scopes: ["contacts:read"]}) { secret } }',
            token=tenant.owner_token,
        )
    )["createApiKey"]["secret"]
    for token in (agent_token, reader):
        for query, variables in (
            (ENDPOINTS, None),
            (CREATE_ENDPOINT, {"i": {"url": "https://x.example.com", "eventTypes": ["CONTACT_CREATED"]}}),
        ):
            body = (await api.raw(query, variables, token=token)).json()
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert len((await tenant.api(ENDPOINTS, token=admin_token))["webhookEndpoints"]["edges"]) == 2


async def test_a_workspace_has_at_most_twenty_endpoints(tenant: Tenant) -> None:
    for i in range(20):
        await register(tenant, f"https://crm.example.com/{i}", ["CONTACT_CREATED"])
    payload = (
        await tenant.api(
            CREATE_ENDPOINT,
            {"i": {"url": "https://crm.example.com/21", "eventTypes": ["CONTACT_CREATED"]}},
            token=tenant.owner_token,
        )
    )["createWebhookEndpoint"]
    assert [e["code"] for e in payload["userErrors"]] == ["NOT_ALLOWED"]


async def _key(tenant: Tenant, *scopes: str) -> str:
    made = await tenant.api(
        "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret } }",
        {"i": {"name": "+".join(scopes), "scopes": list(scopes)}},
        token=tenant.owner_token,
    )
    return str(made["createApiKey"]["secret"])


async def test_subscribing_needs_the_scopes_the_payloads_need(tenant: Tenant) -> None:
    """A key with webhooks:manage alone cannot read contacts: it cannot have their data
    posted to a URL of its choosing either, by a new endpoint or by re-pointing one."""
    from models.webhooks import WebhookDelivery

    hooks_only = await _key(tenant, "webhooks:manage")
    made = (
        await tenant.api(
            CREATE_ENDPOINT,
            {
                "i": {
                    "url": "https://attacker.example/hook",
                    "eventTypes": [
                        "CONTACT_CREATED",
                        "CONTACT_UPDATED",
                        "SEGMENT_JOINED",
                        "CONVERSATION_STATUS_CHANGED",
                    ],
                }
            },
            token=hooks_only,
        )
    )["createWebhookEndpoint"]
    assert made["endpoint"] is None and made["secret"] is None
    assert made["userErrors"] == [
        {
            "field": ["eventTypes"],
            "code": "FORBIDDEN",
            "message": "Subscribing to CONTACT_CREATED, CONTACT_UPDATED, CONVERSATION_STATUS_CHANGED, SEGMENT_JOINED: "
            "this needs the contacts:read permission.",
        }
    ]
    # contacts:read is not enough for a conversation's events.
    readers = await _key(tenant, "webhooks:manage", "contacts:read")
    made = (
        await tenant.api(
            CREATE_ENDPOINT,
            {
                "i": {
                    "url": "https://attacker.example/hook",
                    "eventTypes": ["CONTACT_CREATED", "CONVERSATION_STATUS_CHANGED"],
                }
            },
            token=readers,
        )
    )["createWebhookEndpoint"]
    assert made["userErrors"] == [
        {
            "field": ["eventTypes"],
            "code": "FORBIDDEN",
            "message": "Subscribing to CONVERSATION_STATUS_CHANGED: this needs the conversations:read permission.",
        }
    ]
    full = await _key(tenant, "webhooks:manage", "contacts:read", "conversations:read")
    await register(
        tenant, "https://crm.example.com/own", ["CONTACT_CREATED", "CONVERSATION_STATUS_CHANGED"], token=full
    )

    # An owner's endpoint: the narrow key may neither re-point it nor widen what it receives.
    owners = await register(tenant, "https://crm.example.com/owner", ["CONTACT_CREATED"])
    for change in ({"url": "https://attacker.example/hook"}, {"eventTypes": ["CONTACT_CREATED", "CONTACT_UPDATED"]}):
        updated = (await tenant.api(UPDATE, {"i": {"id": owners.id, **change}}, token=hooks_only))[
            "updateWebhookEndpoint"
        ]
        assert updated["endpoint"] is None
        assert [(e["field"], e["code"]) for e in updated["userErrors"]] == [(["eventTypes"], "FORBIDDEN")]
        assert "contacts:read" in updated["userErrors"][0]["message"]
    listed = {
        e["node"]["url"]: e["node"]["eventTypes"]
        for e in (await tenant.api(ENDPOINTS, token=tenant.owner_token))["webhookEndpoints"]["edges"]
    }
    assert listed["https://crm.example.com/owner"] == ["CONTACT_CREATED"]
    assert "https://attacker.example/hook" not in listed
    # What it may still do: describe, disable and enable it, rotate its secret.
    updated = (
        await tenant.api(UPDATE, {"i": {"id": owners.id, "description": "CRM", "enabled": False}}, token=hooks_only)
    )["updateWebhookEndpoint"]
    assert updated["userErrors"] == [] and updated["endpoint"]["enabled"] is False
    rotated = (await tenant.api(ROTATE, {"i": {"id": owners.id}}, token=hooks_only))["rotateWebhookEndpointSecret"]
    assert rotated["userErrors"] == []
    # No contact data went anywhere the narrow key chose.
    await tenant.contact(name="Grace Hopper", email="grace@example.com")
    urls = await WebhookDelivery.filter(workspace_id=tenant.workspace.id).values_list("endpoint__url", flat=True)
    assert "https://attacker.example/hook" not in urls
