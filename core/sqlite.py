"""SQLite for several processes writing at once: the embedded default's API, worker and CLI.

Tortoise's SQLite client opens WAL with foreign keys and nothing more. Two processes
writing then fail each other's requests with "database is locked", for two reasons:

- A transaction begins *deferred*: it reads under a snapshot and asks for the write lock
  at its first write. If another process committed in between, SQLite cannot let it
  write on a stale snapshot and answers SQLITE_BUSY at once, whatever the busy timeout
  (nothing can wait that out). So every transaction here begins IMMEDIATE: it takes the
  write lock first, waiting for it, and then nothing inside it can be refused.
- A write that waits longer than the busy timeout is refused. Here a refusal at BEGIN (or
  of a statement on its own, which is its own transaction) is retried with backoff, this
  process's connection free for its other tasks meanwhile, for SQLITE_WRITE_WAIT_SECONDS; then
  `DatabaseBusy` says nothing was written (a request answers BUSY, HTTP 503 with
  Retry-After; a worker job is retried). A transaction is never retried halfway: the
  lock is all it waits for, and it waits before its first statement.

Each connection also sets `synchronous=NORMAL`: in WAL mode a commit then no longer waits
for the disk; a power cut (not a crash of the process) can lose the last transactions
committed before it, never corrupt the file.

A statement that runs longer than its process's statement timeout
(DATABASE_STATEMENT_TIMEOUT_SECONDS for the API, WORKER_STATEMENT_TIMEOUT_SECONDS for jobs
and migrations) is interrupted by a progress handler: sqlite3.OperationalError
"interrupted", which a request answers as code TIMEOUT (core/errors.py).

Within one process there is one connection: Tortoise's lock keeps one task's transaction
from running another task's statements, and this module waits for the write lock without
holding it.

    {"engine": "core.sqlite", "credentials": {"file_path": "data/parley.sqlite3"}}
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.connection import get_connections
from tortoise.exceptions import OperationalError, TransactionManagementError

from core.config import settings
from core.errors import DatabaseBusy

log = logging.getLogger("parley.sqlite")

T = TypeVar("T")

# How long one attempt waits inside SQLite, holding this process's only connection (in all,
# a write waits SQLITE_WRITE_WAIT_SECONDS).
BUSY_TIMEOUT_MS = 200


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY ("database is locked"), as sqlite3 raises it or Tortoise wraps it."""
    if isinstance(exc, OperationalError) and exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


class _Backoff:
    """Sleeps between attempts: 10 ms doubling to 250 ms, until SQLITE_WRITE_WAIT_SECONDS."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.delay = 0.01

    async def wait_or_give_up(self) -> None:
        waited = time.monotonic() - self.started
        if waited >= settings.sqlite_write_wait_seconds:
            log.warning("gave up on the write lock after %.1f s", waited)
            raise DatabaseBusy(waited)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 0.25)


async def _retried(attempt: Callable[[], Awaitable[T]]) -> T:
    """One statement outside a transaction: refused whole or applied whole, so retried."""
    backoff: _Backoff | None = None
    while True:
        try:
            return await attempt()
        except (OperationalError, sqlite3.OperationalError) as exc:
            if not _is_busy(exc):
                raise
        backoff = backoff or _Backoff()
        await backoff.wait_or_give_up()


class _Deadline:
    """Stops a statement that runs longer than `seconds`: SQLite calls this progress handler
    every PROGRESS_STEPS virtual-machine instructions, and a non-zero answer interrupts
    the statement (sqlite3.OperationalError "interrupted"; core/errors.py answers TIMEOUT).
    The clock starts when aiosqlite's thread takes up a call (Tortoise runs a statement
    and fetches its rows in one), not while the call waits in the queue."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = math.inf

    def __call__(self) -> int:
        return time.monotonic() > self.at

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.at = time.monotonic() + self.seconds
        try:
            return fn(*args, **kwargs)
        finally:
            self.at = math.inf


# Between two checks of the clock: a few tens of microseconds of work.
PROGRESS_STEPS = 1000


async def _limit_statements(connection: aiosqlite.Connection, seconds: float) -> None:
    deadline = _Deadline(seconds)
    queue: Callable[..., Awaitable[Any]] = connection._execute

    async def execute(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await queue(deadline.run, fn, *args, **kwargs)

    await queue(connection._conn.set_progress_handler, deadline, PROGRESS_STEPS)
    connection._execute = execute  # type: ignore[method-assign]


class Client(SqliteClient):
    def __init__(self, file_path: str, statement_timeout: float = 0, **kwargs: Any) -> None:
        # Order matters: the busy timeout first, so that switching to WAL waits too.
        pragmas = {
            "busy_timeout": BUSY_TIMEOUT_MS,
            "journal_mode": "WAL",
            "synchronous": "NORMAL",
            "foreign_keys": "ON",
        }
        super().__init__(file_path, **{**pragmas, **kwargs})
        self.statement_timeout = float(statement_timeout)

    async def create_connection(self, with_db: bool) -> None:
        fresh = self._connection is None
        await super().create_connection(with_db)
        if fresh and self._connection is not None and self.statement_timeout > 0:
            await _limit_statements(self._connection, self.statement_timeout)

    def _in_transaction(self) -> SqliteTransactionContext:
        return _TransactionContext(_Transaction(self), self._lock)

    async def execute_insert(self, query: str, values: list[Any]) -> int:
        return await _retried(lambda: super(Client, self).execute_insert(query, values))

    async def execute_query(self, query: str, values: list[Any] | None = None) -> tuple[int, Sequence[dict[str, Any]]]:
        return await _retried(lambda: super(Client, self).execute_query(query, values))

    async def execute_query_dict(self, query: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
        return await _retried(lambda: super(Client, self).execute_query_dict(query, values))

    async def execute_many(self, query: str, values: list[list[Any]]) -> None:
        # Tortoise runs these in a transaction of their own: begin it IMMEDIATE too.
        async with self._in_transaction() as tx:
            await tx.execute_many(query, values)


class _Transaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        await self._connection.execute("BEGIN IMMEDIATE")


class _TransactionContext(SqliteTransactionContext):
    async def __aenter__(self) -> TransactionalDBClient:
        backoff: _Backoff | None = None
        while True:
            await self._trxlock.acquire()
            try:
                await self.ensure_connection()
                await self.connection.begin()
                break
            except sqlite3.OperationalError as exc:
                self._trxlock.release()
                if not _is_busy(exc):
                    raise TransactionManagementError(exc) from exc
            except BaseException:
                self._trxlock.release()
                raise
            backoff = backoff or _Backoff()
            await backoff.wait_or_give_up()
        self.token = get_connections().set(self.connection_name, self.connection)
        connection: TransactionalDBClient = self.connection
        return connection


client_class = Client
