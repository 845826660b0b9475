"""Throwaway PostgreSQL databases beside a given one, for the tests and the benchmarks:
they never touch the database they are pointed at.

    db = ScratchDatabase.beside("postgres://root@127.0.0.1:5432/test", prefix="parley_test")
    await db.create()      # db.url -> postgres://root@127.0.0.1:5432/parley_test_1a2b3c4d
    ...
    await db.drop()
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class ScratchDatabase:
    admin_dsn: str  # the server's maintenance database
    name: str
    url: str

    @classmethod
    def beside(cls, url: str, prefix: str) -> ScratchDatabase:
        parts = urlsplit(url)
        name = f"{prefix}_{secrets.token_hex(4)}"
        return cls(
            admin_dsn=urlunsplit(("postgresql", parts.netloc, "/postgres", "", "")),
            name=name,
            url=urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, "")),
        )

    async def _execute(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self) -> None:
        await self._execute(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        await self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
