"""`parley backup` and `parley restore`: a consistent copy of DATABASE_URL, and that copy
put back.

    backup(settings.database_url, Path("data/backups"))   # -> Backup(path, taken_at, size)
    restore(settings.database_url, Path("data/backups/parley-20261208T011500Z.sqlite3"))

SQLite: the online backup API (`sqlite3.Connection.backup`), a page-by-page copy that is
consistent while the API and the worker keep writing; restored the same way, page by page,
into the database file. PostgreSQL: `pg_dump --format=custom` (one snapshot: consistent
under writes too) and `pg_restore --clean --if-exists --single-transaction`, so a restore
that fails leaves the database as it was. Either way a backup holds what was committed
when it began, and nothing after.

A restore replaces what the database holds: stop the API processes and the worker first.
Sealed secrets (push credentials, webhook and channel secrets) open only with the
SECRET_KEY that sealed them: keep that key with the backups.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from glob import glob
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
_POSTGRES_SCHEMES = ("postgres://", "postgresql://", "asyncpg://", "psycopg://")


class BackupError(Exception):
    """What went wrong, in words an operator can act on."""


@dataclass(frozen=True)
class Backup:
    path: Path
    taken_at: datetime
    size: int


def backup(database_url: str, folder: Path, *, now: datetime | None = None) -> Backup:
    """A backup of `database_url` in a new file in `folder`, named by the time it began."""
    taken_at = now or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = taken_at.strftime("%Y%m%dT%H%M%SZ")
    if _is_postgres(database_url):
        path = folder / f"parley-{stamp}.pgdump"
        _pg_dump(database_url, path)
    else:
        path = folder / f"parley-{stamp}.sqlite3"
        _sqlite_backup(_sqlite_path(database_url), path)
    return Backup(path, taken_at, path.stat().st_size)


def restore(database_url: str, path: Path) -> None:
    """Replaces what `database_url` holds with the backup at `path`."""
    if not path.is_file():
        raise BackupError(f"no backup file {str(path)!r}")
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if _is_postgres(database_url):
        if not head.startswith(PG_DUMP_MAGIC):
            raise BackupError(f"{str(path)!r} is not a PostgreSQL backup (made by `parley backup` on PostgreSQL)")
        _pg_restore(database_url, path)
    else:
        if head != SQLITE_MAGIC:
            raise BackupError(f"{str(path)!r} is not a SQLite backup (made by `parley backup` on SQLite)")
        _sqlite_restore(path, _sqlite_path(database_url))


# -- SQLite ----------------------------------------------------------------------------------


def _sqlite_path(database_url: str) -> Path:
    if not database_url.startswith("sqlite://"):
        raise BackupError(f"DATABASE_URL {database_url.split('://')[0]}://… is neither SQLite nor PostgreSQL")
    path = database_url.removeprefix("sqlite://").split("?")[0]
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(path)


def _sqlite_backup(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"no database file {str(source)!r} (run `parley migrate` first?)")
    draft = target.with_name(f".{target.name}.partial")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(draft)
    try:
        src.backup(dst, pages=4096)  # a slice at a time: writers are blocked only between slices
    finally:
        dst.close()
        src.close()
    os.replace(draft, target)  # never a half-written file under the final name


def _sqlite_restore(backup_file: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=30)
    try:
        src.backup(dst)  # one step: the whole database is replaced in one write transaction
    except sqlite3.OperationalError as exc:
        raise BackupError(f"could not write {str(target)!r}: {exc} (stop the API and the worker first)") from None
    finally:
        dst.close()
        src.close()


# -- PostgreSQL ------------------------------------------------------------------------------


def _is_postgres(database_url: str) -> bool:
    return database_url.startswith(_POSTGRES_SCHEMES)


def libpq_url(database_url: str) -> str:
    """DATABASE_URL as pg_dump and pg_restore take it: `postgresql://`, without Tortoise's
    own query options (minsize, maxsize…), which libpq refuses."""
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


def _tool(name: str) -> str:
    """pg_dump or pg_restore: from PATH, else from Debian's versioned folders (newest
    first: a newer client reads an older server, not the other way round)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    if candidates:
        return candidates[0]
    raise BackupError(f"{name} is not installed: install the PostgreSQL client (Debian: postgresql-client)")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 (our own argv)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{Path(command[0]).name} failed: {detail[-1] if detail else f'exit {result.returncode}'}")


def _pg_dump(database_url: str, target: Path) -> None:
    draft = target.with_name(f".{target.name}.partial")
    try:
        _run(
            [
                _tool("pg_dump"),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--file={draft}",
                "--",
                libpq_url(database_url),
            ]
        )
    except BackupError:
        draft.unlink(missing_ok=True)
        raise
    os.replace(draft, target)


def _pg_restore(database_url: str, backup_file: Path) -> None:
    _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={libpq_url(database_url)}",
            "--",
            str(backup_file),
        ]
    )
