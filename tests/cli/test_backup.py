"""`parley backup` and `parley restore` as an operator runs them, on SQLite and on
PostgreSQL: what was there at the backup comes back, what came after is gone, and a server
started on the restored database answers as before; a backup taken while a server keeps
writing holds every contact whose creation was acknowledged before it began."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.cli.conftest import CONTACTS, CREATE_CONTACT, PASSWORD, field, gql, login, ok, parley
from tests.conftest import start_server


def _backup_file(output: str) -> Path:
    found = re.search(r"^Backed up to (\S+) \(", output, re.M)
    assert found, output
    return Path(found.group(1))


def _workspace(db: str, tmp_path: Path) -> str:
    ok(parley("migrate", db=db, cwd=tmp_path))
    made = ok(
        parley(
            "create-workspace",
            "--name",
            "Acme",
            "--owner-email",
            "boss@acme.example",
            "--password-stdin",
            db=db,
            cwd=tmp_path,
            stdin=PASSWORD + "\n",
        )
    )
    return field(made, "API key")


async def test_a_restore_brings_back_the_backup_and_drops_what_came_after(fresh_db: str, tmp_path: Path) -> None:
    key = _workspace(fresh_db, tmp_path)
    server = start_server(tmp_path, env={"DATABASE_URL": fresh_db})
    try:
        for name in ("Ada Lovelace", "Ada Byron"):
            assert (await gql(server, CREATE_CONTACT, {"i": {"name": name}}, key))["createContact"]["userErrors"] == []
        # Taken while the server is up, as an operator would.
        taken = ok(parley("backup", "--to", str(tmp_path / "backups"), db=fresh_db, cwd=tmp_path))
        backup = _backup_file(taken)
        assert backup.parent == tmp_path / "backups" and backup.stat().st_size > 0
        assert not list(backup.parent.glob(".*partial"))

        # After the backup: one more contact, and the owner's password changes.
        assert (await gql(server, CREATE_CONTACT, {"i": {"name": "Ada Later"}}, key))["createContact"][
            "userErrors"
        ] == []
        ok(
            parley(
                "reset-password",
                "--email",
                "boss@acme.example",
                "--password-stdin",
                db=fresh_db,
                cwd=tmp_path,
                stdin="a password from after\n",
            )
        )
    finally:
        server.stop()

    # Without --yes nothing happens.
    unsure = parley("restore", str(backup), db=fresh_db, cwd=tmp_path)
    assert unsure.returncode == 1 and "add --yes" in unsure.stderr
    assert "Restored" in ok(parley("restore", str(backup), "--yes", db=fresh_db, cwd=tmp_path))

    server = start_server(tmp_path, env={"DATABASE_URL": fresh_db})
    try:
        found = await gql(server, CONTACTS, {}, key)
        assert sorted(e["node"]["name"] for e in found["contacts"]["edges"]) == ["Ada Byron", "Ada Lovelace"]
        assert (await login(server, "boss@acme.example", PASSWORD))["token"]
        assert (await login(server, "boss@acme.example", "a password from after"))["token"] is None
    finally:
        server.stop()


async def test_a_backup_under_writes_holds_everything_acknowledged_before_it(fresh_db: str, tmp_path: Path) -> None:
    key = _workspace(fresh_db, tmp_path)
    server = start_server(tmp_path, env={"DATABASE_URL": fresh_db})
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            answer = await gql(server, CREATE_CONTACT, {"i": {"name": f"Ada {n}"}}, key)
            assert answer["createContact"]["userErrors"] == []
            acknowledged.append(f"Ada {n}")

    try:
        writer = asyncio.create_task(write())
        while len(acknowledged) < 5:
            await asyncio.sleep(0.05)
        before = list(acknowledged)
        taken = await asyncio.to_thread(parley, "backup", "--to", str(tmp_path / "backups"), db=fresh_db, cwd=tmp_path)
        stop.set()
        await writer
    finally:
        server.stop()
    backup = _backup_file(ok(taken))
    ok(parley("restore", str(backup), "--yes", db=fresh_db, cwd=tmp_path))

    server = start_server(tmp_path, env={"DATABASE_URL": fresh_db})
    try:
        query = '{ contacts(first: 100, search: "ada") { totalCount edges { node { name } } } }'
        restored = {e["node"]["name"] for e in (await gql(server, query, {}, key))["contacts"]["edges"]}
    finally:
        server.stop()
    assert set(before) <= restored  # every acknowledged write before the backup began
    assert restored <= set(acknowledged)  # nothing invented


def test_refusals_name_the_problem(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path}/refusals.sqlite3"
    missing = parley("backup", db=db, cwd=tmp_path)
    assert (
        missing.returncode == 1 and "run `parley migrate` first" in missing.stderr and "Traceback" not in missing.stderr
    )
    ok(parley("migrate", db=db, cwd=tmp_path))
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")
    wrong = parley("restore", str(not_a_backup), "--yes", db=db, cwd=tmp_path)
    assert wrong.returncode == 1 and "is not a SQLite backup" in wrong.stderr
    absent = parley("restore", str(tmp_path / "nope.sqlite3"), "--yes", db=db, cwd=tmp_path)
    assert absent.returncode == 1 and "no backup file" in absent.stderr
    # A PostgreSQL dump offered to SQLite is refused before anything is touched.
    dump = tmp_path / "parley.pgdump"
    dump.write_bytes(b"PGDMP\x01\x0e\x00")
    assert "is not a SQLite backup" in parley("restore", str(dump), "--yes", db=db, cwd=tmp_path).stderr
    # Default folder: DATA_DIR/backups.
    made = _backup_file(ok(parley("backup", db=db, cwd=tmp_path, env={"DATA_DIR": str(tmp_path / "data")})))
    assert made.parent == tmp_path / "data" / "backups" and made.name.endswith(".sqlite3")
