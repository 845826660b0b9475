"""schema.graphql is the API's contract: it must match the code."""

from pathlib import Path

from cli import sdl

ROOT = Path(__file__).resolve().parents[2]


def test_schema_graphql_is_up_to_date() -> None:
    checked_in = (ROOT / "schema.graphql").read_text()
    assert checked_in == sdl(), "schema.graphql is out of date: run `make schema` and commit it"


def test_introspection_is_off_in_production() -> None:
    from schema import build_schema

    prod = build_schema(introspection=False)
    result = prod.execute_sync("{ __schema { types { name } } }")
    assert result.errors and "introspection" in result.errors[0].message.lower()
