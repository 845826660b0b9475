"""The operator commands as an operator runs them: `parley …` in a shell (a subprocess), on
a fresh database (a SQLite file, and a PostgreSQL database made here), then what they made
used against a real server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import CONTACTS, CREATE_CONTACT, PARLEY, PASSWORD, field, gql, login, ok, parley
from tests.conftest import ROOT, start_server


async def test_a_fresh_database_to_a_working_api_key(fresh_db: str, tmp_path: Path) -> None:
    assert "Migrations applied." in ok(parley("migrate", db=fresh_db, cwd=tmp_path))
    made = ok(
        parley(
            "create-workspace",
            "--name",
            "Acme",
            "--owner-email",
            "Boss@Acme.example",
            "--password-stdin",
            db=fresh_db,
            cwd=tmp_path,
            stdin=PASSWORD + "\n",
        )
    )
    slug = field(made, "workspace slug")
    assert PASSWORD not in made
    keyed = ok(
        parley(
            "create-api-key",
            "--workspace",
            slug,
            "--name",
            "CRM",
            "--scope",
            "contacts:read",
            "--scope",
            "contacts:write",
            "--scope",
            "contacts:identity",
            db=fresh_db,
            cwd=tmp_path,
        )
    )
    key = keyed.strip().splitlines()[-1]
    assert "contacts:identity, contacts:read, contacts:write" in keyed and key.startswith("pk_")
    ok(
        parley(
            "create-agent",
            "--workspace",
            slug,
            "--email",
            "ann@acme.example",
            "--name",
            "Ann",
            "--role",
            "admin",
            "--password-stdin",
            db=fresh_db,
            cwd=tmp_path,
            stdin="ann's long password\n",
        )
    )

    server = start_server(tmp_path, env={"DATABASE_URL": fresh_db})
    try:
        created = await gql(server, CREATE_CONTACT, {"i": {"name": "Ada Lovelace", "email": "ada@example.com"}}, key)
        assert created["createContact"]["userErrors"] == []
        found = await gql(server, CONTACTS, {}, key)
        assert found["contacts"]["edges"] == [{"node": {"name": "Ada Lovelace", "email": "ada@example.com"}}]
        # The key has only its scopes: no webhooks.
        async with httpx.AsyncClient(base_url=server.url) as http:
            refused = (
                await http.post(
                    "/graphql",
                    json={"query": "{ webhookEndpoints(first: 1) { totalCount } }"},
                    headers={"authorization": f"Bearer {key}"},
                )
            ).json()
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

        before_reset = (await login(server, "boss@acme.example", PASSWORD))["token"]
        assert (await gql(server, "{ viewer { agent { email } } }", {}, before_reset))["viewer"]["agent"][
            "email"
        ] == "boss@acme.example"
        assert (await login(server, "ann@acme.example", "ann's long password"))["token"]

        changed = parley(
            "reset-password",
            "--email",
            "boss@acme.example",
            "--password-stdin",
            db=fresh_db,
            cwd=tmp_path,
            stdin="a brand new password\n",
        )
        assert "Password of boss@acme.example changed." in ok(changed)
        assert (await login(server, "boss@acme.example", "a brand new password"))["token"]
        assert (await login(server, "boss@acme.example", PASSWORD))["token"] is None
        # Every token from before the reset stopped working.
        async with httpx.AsyncClient(base_url=server.url) as http:
            stale = (
                await http.post(
                    "/graphql",
                    json={"query": "{ viewer { agent { email } } }"},
                    headers={"authorization": f"Bearer {before_reset}"},
                )
            ).json()
        assert stale.get("errors") or stale["data"]["viewer"] is None, stale
    finally:
        server.stop()


def test_refusals_are_messages_not_tracebacks(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/refusals.sqlite3"
    ok(parley("migrate", db=db, cwd=tmp_path))

    def refused(*args: str, stdin: str | None = "") -> str:
        result = parley(*args, db=db, cwd=tmp_path, stdin=stdin)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result
        return result.stderr

    assert "at least 10 characters" in refused(
        "create-workspace", "--name", "A", "--owner-email", "a@a.example", "--password-stdin", stdin="short\n"
    )
    assert "--password-stdin" in refused(
        "create-workspace", "--name", "A", "--owner-email", "a@a.example"
    )  # no terminal
    assert "unrecognized arguments: --password" in refused(
        "create-workspace", "--name", "A", "--owner-email", "a@a.example", "--password", PASSWORD
    )
    assert "e-mail 'nobody'" in refused(
        "create-workspace", "--name", "A", "--owner-email", "nobody", "--password-stdin", stdin=PASSWORD
    )
    assert "no workspace 'nope'" in refused(
        "create-api-key", "--workspace", "nope", "--name", "K", "--scope", "contacts:read"
    )
    slug = field(
        ok(
            parley(
                "create-workspace",
                "--name",
                "A",
                "--owner-email",
                "a@a.example",
                "--password-stdin",
                db=db,
                cwd=tmp_path,
                stdin=PASSWORD,
            )
        ),
        "workspace slug",
    )
    assert "unknown scope workspace:manage" in refused(
        "create-api-key", "--workspace", slug, "--name", "K", "--scope", "workspace:manage"
    )
    assert "already has an agent a@a.example" in refused(
        "create-agent", "--workspace", slug, "--email", "A@a.example", "--name", "A", "--password-stdin", stdin=PASSWORD
    )
    assert "no agent b@a.example" in refused(
        "reset-password", "--email", "b@a.example", "--password-stdin", stdin=PASSWORD
    )
    assert "--demo" in refused("seed")


DEMO_QUERY = """{
  contacts(first: 20, search: "ada") { totalCount edges { node { name tags attributes { key value } } } }
  segments(first: 10) { edges { node { name count } } }
  conversations(first: 10) { totalCount edges { node { messages(first: 10) { edges { node { body senderKind } } } } } }
  proactiveMessages(first: 10) { edges { node { name status } } }
  attributeDefinitions(first: 50) { edges { node { key } } }
}"""


def _credentials(text: str) -> dict[str, str]:
    login = re.search(r"owner login\s+(\S+) / (.+)", text)
    assert login, text
    return {"email": login.group(1), "password": login.group(2).strip(), "key": field(text, "API key")}


async def test_seed_demo_fills_the_workspace_the_readme_queries(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/demo.sqlite3"
    ok(parley("migrate", db=db, cwd=tmp_path))
    printed = ok(parley("seed", "--demo", db=db, cwd=tmp_path, env={"DATA_DIR": str(tmp_path / "state")}))
    saved = (tmp_path / "state" / "demo-credentials.txt").read_text()
    assert _credentials(saved) == _credentials(printed)
    assert (tmp_path / "state" / "demo-credentials.txt").stat().st_mode & 0o077 == 0

    server = start_server(tmp_path, env={"DATABASE_URL": db})
    try:
        creds = _credentials(saved)
        token = (await login(server, creds["email"], creds["password"]))["token"]
        data = await gql(server, DEMO_QUERY, {}, token)
        ada = data["contacts"]["edges"][0]["node"]
        assert ada["name"] == "Ada Byron" and "vip" in ada["tags"]
        assert {"key": "plan", "value": "enterprise"} in ada["attributes"]
        assert {"key": "plan"} in [e["node"] for e in data["attributeDefinitions"]["edges"]]
        assert {"name": "VIP customers", "count": 2} in [e["node"] for e in data["segments"]["edges"]]
        assert data["conversations"]["totalCount"] == 3
        for edge in data["conversations"]["edges"]:
            assert [m["node"]["senderKind"] for m in edge["node"]["messages"]["edges"]] == ["CONTACT", "AGENT"]
        assert {"name": "Pricing help", "status": "LIVE"} in [e["node"] for e in data["proactiveMessages"]["edges"]]
        # The README's walkthrough then creates its own Ada, whom the demo leaves free.
        readme_ada = {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+442071838750", "tags": ["vip"]}
        assert (await gql(server, CREATE_CONTACT, {"i": readme_ada}, token))["createContact"]["userErrors"] == []
        events = await gql(
            server,
            '{ contacts(first: 5, search: "byron") { edges { node { events(first: 5) { totalCount } } } } }',
            {},
            creds["key"],
        )
        assert [e["node"]["events"]["totalCount"] for e in events["contacts"]["edges"]] == [2]
    finally:
        server.stop()


@pytest.mark.skipif(
    not shutil.which("redis-server") and not shutil.which("valkey-server"), reason="no redis-server on PATH"
)
def test_run_prints_the_demo_credentials_every_time(tmp_path: Path) -> None:
    """`parley run` (what `make run` runs) on an empty database seeds the demo and prints its
    credentials; the next run, which seeds nothing, prints the same ones from the file."""
    from core.embedded_redis import free_port

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # a private Redis, as on a laptop
    env.update(DATABASE_URL=f"sqlite://{tmp_path}/run.sqlite3", PYTHONPATH=str(ROOT))
    outputs = []
    for _ in range(2):
        port = free_port()
        log = tmp_path / "run.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [*PARLEY, "run", "--port", str(port)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, log.read_text()
                time.sleep(0.1)
            else:
                raise AssertionError(log.read_text())
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0, log.read_text()
        outputs.append(log.read_text())
    first, second = (_credentials(o) for o in outputs)
    assert first == second and first["key"].startswith("pk_")
    # And the two demo pages, the widget with the demo channel's key (tests/browser/ opens them).
    channel = field(outputs[0], "widget channel")
    for output in outputs:
        assert f"/demo/widget?key={channel}\n" in output, output
        assert "/demo/inbox" in output, output
    assert "Demo workspace" in outputs[0] and "Demo workspace" in outputs[1]
    assert not (tmp_path / "data" / "redis" / "dump.rdb").exists()


def test_api_and_worker_commands_serve(tmp_path: Path) -> None:
    """What the containers run: `parley api` answers, `parley worker` runs; neither starts a
    Redis of its own."""
    from core.embedded_redis import free_port

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    api = subprocess.Popen(
        [*PARLEY, "api", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([*PARLEY, "worker"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert api.poll() is None
            time.sleep(0.1)
        else:
            raise AssertionError("parley api never answered /readyz")
        assert worker.poll() is None
    finally:
        for process in (api, worker):
            process.terminate()
            process.wait(timeout=30)
    assert "Starting worker" in log.read_text()

    no_redis = {k: v for k, v in env.items() if k != "REDIS_URL"}
    for command in ("api", "worker"):
        result = subprocess.run(
            [*PARLEY, command], cwd=tmp_path, env=no_redis, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1 and "REDIS_URL is not set" in result.stderr
