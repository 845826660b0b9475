"""What the operator-command tests share: `parley …` run as a subprocess, and a fresh
database of each kind."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, LiveServer, gql

# The console script when the package is installed beside this Python, else the same main().
_SCRIPT = Path(sys.executable).parent / "parley"
PARLEY = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli"]
PASSWORD = "correct horse battery"


def parley(
    *args: str, db: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DATABASE_URL": db, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [*PARLEY, *args], input=stdin, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=120
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, not even its tables."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/fresh.sqlite3"
        return
    from core.scratch_db import ScratchDatabase

    scratch = ScratchDatabase.beside(
        os.environ.get("TEST_DATABASE_URL", "postgres://root@127.0.0.1:5432/test"), prefix="parley_cli"
    )
    try:
        asyncio.run(scratch.create())
    except OSError as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")
    yield scratch.url
    asyncio.run(scratch.drop())


def field(output: str, label: str) -> str:
    found = re.search(rf"^\s*{label}\s+(\S+)", output, re.M)
    assert found, f"no {label!r} in:\n{output}"
    return found.group(1)


LOGIN = "mutation($i: LoginInput!) { login(input: $i) { token userErrors { code message } } }"
CREATE_CONTACT = (
    "mutation($i: CreateContactInput!) { createContact(input: $i) { contact { id name } userErrors { code message } } }"
)
CONTACTS = '{ contacts(first: 10, search: "ada") { totalCount edges { node { name email } } } }'


async def login(server: LiveServer, email: str, password: str) -> dict[str, Any]:
    return (await gql(server, LOGIN, {"i": {"email": email, "password": password}}, ""))["login"]  # type: ignore[no-any-return]
