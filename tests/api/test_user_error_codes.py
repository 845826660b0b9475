"""`UserError.code` is the enum `UserErrorCode`: codegen gives clients a closed set to
switch on, and every code Parley uses is in it."""

from __future__ import annotations

from core.errors import Code
from tests.conftest import Api, Tenant


async def test_user_error_code_is_an_enum_of_every_code(api: Api) -> None:
    data = await api(
        '{ userError: __type(name: "UserError") { fields { name type { kind ofType { name kind } } } }'
        '  codes: __type(name: "UserErrorCode") { kind enumValues { name } } }'
    )
    code = next(f for f in data["userError"]["fields"] if f["name"] == "code")
    assert code["type"] == {"kind": "NON_NULL", "ofType": {"name": "UserErrorCode", "kind": "ENUM"}}
    assert data["codes"]["kind"] == "ENUM"
    assert {v["name"] for v in data["codes"]["enumValues"]} == {c.value for c in Code}


async def test_a_user_error_answers_its_code_by_name(tenant: Tenant) -> None:
    data = await tenant.api(
        "mutation($input: CreateContactInput!) { createContact(input: $input) { userErrors { field code message } } }",
        {"input": {"email": "not an address"}},
        token=tenant.owner_token,
    )
    [error] = data["createContact"]["userErrors"]
    assert error["field"] == ["email"] and error["code"] == "INVALID"
