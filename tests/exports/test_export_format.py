"""The framework-free half of exports: columns, formula neutralisation, link signatures."""

from __future__ import annotations

from domain import exports as ex


def test_columns_are_built_in_fields_tags_id_and_defined_attributes() -> None:
    columns, errors = ex.parse_columns(["id", "email", "vip", "last_seen_at", "tags", "attribute.plan"], ["plan"])
    assert errors == []
    assert [(c.name, c.kind, c.key) for c in columns] == [
        ("id", "id", "id"),
        ("email", "text", "email"),
        ("vip", "boolean", "vip"),
        ("last_seen_at", "datetime", "last_seen_at"),
        ("tags", "tags", "tags"),
        ("attribute.plan", "attribute", "plan"),
    ]


def test_unknown_and_repeated_columns_are_named_by_index() -> None:
    _, errors = ex.parse_columns(["email", "password_hash", "attribute.nope", "email", "workspace_id"], ["plan"])
    assert [(e.index, e.code) for e in errors] == [
        (1, "UNKNOWN_FIELD"),
        (2, "UNKNOWN_FIELD"),
        (3, "INVALID"),
        (4, "UNKNOWN_FIELD"),
    ]
    assert "no attribute is defined" in errors[1].message
    _, errors = ex.parse_columns([], [])
    assert [(e.index, e.code) for e in errors] == [(-1, "REQUIRED")]
    _, errors = ex.parse_columns(["email"] * (ex.MAX_COLUMNS + 1), [])
    assert [(e.index, e.code) for e in errors] == [(-1, "INVALID")]


def test_the_attribute_report_is_identity_then_every_attribute_in_order() -> None:
    assert ex.attribute_report_columns(["plan", "seats"]) == [
        "id",
        "external_id",
        "name",
        "email",
        "attribute.plan",
        "attribute.seats",
    ]


def test_cells_a_spreadsheet_would_run_get_a_leading_apostrophe() -> None:
    dangerous = ["=1+1", "+33 6 12", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\t=1", "\r=1", "-", "-1-1", "-x"]
    assert ex.neutralize_row(dangerous) == ["'" + cell for cell in dangerous]
    harmless = ["Ada", "", " =1", "a=b", "1+1", "-5", "-0.25", "42", None, 7, 2.5, "'=already quoted"]
    assert ex.neutralize_row(harmless) == harmless


def test_a_download_signature_covers_workspace_job_and_expiry() -> None:
    good = {"workspace_id": 3, "job_id": 42, "expires": 2_000}
    signature = ex.download_signature("secret", **good)
    assert ex.signature_valid("secret", **good, signature=signature, now=1_999)
    assert not ex.signature_valid("secret", **good, signature=signature, now=2_000)  # expired
    assert not ex.signature_valid("other", **good, signature=signature, now=0)
    for change in ({"workspace_id": 4}, {"job_id": 43}, {"expires": 2_001}):
        assert not ex.signature_valid("secret", **{**good, **change}, signature=signature, now=0), change
    assert not ex.signature_valid("secret", **good, signature=signature.upper(), now=0)
    assert not ex.signature_valid("secret", **good, signature="", now=0)
