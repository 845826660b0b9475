"""Tortoise configuration, and the one place that knows which SQL dialect is in use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.config import settings

MODEL_MODULES = [
    "models.workspaces",
    "models.channels",
    "models.contacts",
    "models.segments",
    "models.conversations",
    "models.job_records",
    "models.sync",
    "models.webhooks",
    "models.campaigns",
    "models.proactive",
    "models.attribution",
    "models.push",
    "models.routing",
    "models.canned",
    "models.search",
    "models.bulk",
    "models.attachments",
    "models.short_links",
]


def _connection(url: str, statement_timeout: float) -> str | dict[str, Any]:
    """SQLite through core/sqlite.py, set up for several processes writing at once.

    PostgreSQL connections plan every statement for its parameters: asyncpg prepares
    statements, and after five runs PostgreSQL may switch to a generic plan that cannot see
    the values (a segment's `attributes @> …` then walks the whole last-seen index: 1 s
    instead of 1 ms).

    On both, a statement that runs longer than `statement_timeout` seconds (0: no limit) is
    stopped by the database (core/errors.py answers TIMEOUT)."""
    from tortoise.backends.base.config_generator import expand_db_url

    if url.startswith("sqlite://"):
        # Set up for several processes writing at once (core/sqlite.py).
        config = {**expand_db_url(url), "engine": "core.sqlite"}
        config["credentials"]["statement_timeout"] = statement_timeout
        return config
    if not url.startswith(("postgres://", "postgresql://", "asyncpg://", "psycopg://")):
        return url
    config = expand_db_url(url)
    server_settings = config["credentials"].setdefault("server_settings", {})
    server_settings["plan_cache_mode"] = "force_custom_plan"
    server_settings["statement_timeout"] = str(round(statement_timeout * 1000))
    return config


def tortoise_config(database_url: str | None = None, *, statement_timeout: float | None = None) -> dict[str, Any]:
    """The API's configuration; the worker and migrations pass their own, longer
    `statement_timeout` (WORKER_STATEMENT_TIMEOUT_SECONDS)."""
    url = database_url or settings.database_url
    if statement_timeout is None:
        statement_timeout = settings.database_statement_timeout_seconds
    return {
        "connections": {"default": _connection(url, statement_timeout)},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# What `tortoise -c core.db.TORTOISE_ORM makemigrations|migrate` reads: migrations, with
# the worker's statement timeout.
TORTOISE_ORM = tortoise_config(statement_timeout=settings.worker_statement_timeout_seconds)


def dialect() -> str:
    """'sqlite' or 'postgres', for the few places that must emit dialect-specific SQL."""
    from tortoise import connections

    return str(connections.get("default").capabilities.dialect)


def json_text(column: str, key: str) -> str:
    """The SQL of a JSON column's top-level value at `key`, as text: `attributes->>'plan'`
    on PostgreSQL, `json_extract(attributes, '$.plan')` on SQLite. The caller passes a key it
    has checked (contact attribute keys are lowercase letters, digits and _): it is inlined."""
    if not key.replace("_", "").isalnum() or not key.isascii():
        raise ValueError(f"not an attribute key: {key!r}")
    return f"{column}->>'{key}'" if dialect() == "postgres" else f"json_extract({column}, '$.{key}')"


def pool_usage() -> tuple[int, int, int]:
    """This process's database connections: (in use, open, at most), for GET /metrics.
    PostgreSQL's are asyncpg's pool (at most Tortoise's `maxsize`: 5 unless the URL says
    otherwise); before the pool is made, and under psycopg, (0, 0, maxsize). SQLite has one
    connection a process (core/sqlite.py), in use while a statement or transaction holds it."""
    from tortoise import connections

    client = connections.get("default")
    pool = getattr(client, "_pool", None)
    if pool is not None and hasattr(pool, "get_idle_size"):  # asyncpg's
        size = pool.get_size()
        return size - pool.get_idle_size(), size, pool.get_max_size()
    lock = getattr(client, "_lock", None)
    if lock is not None:
        return int(lock.locked()), int(getattr(client, "_connection", None) is not None), 1
    return 0, 0, int(getattr(client, "pool_maxsize", 0))


async def migrate(database_url: str | None = None) -> None:
    """Apply every migration in models/migrations (idempotent)."""
    from tortoise import Tortoise
    from tortoise.migrations.api.migrate import migrate as run_migrations

    try:
        await run_migrations(
            config=tortoise_config(database_url, statement_timeout=settings.worker_statement_timeout_seconds)
        )
    finally:
        await Tortoise.close_connections()


def bind_datetime(value: datetime) -> Any:
    """A datetime to store through raw SQL, written the way Tortoise writes it: PostgreSQL
    takes the aware datetime, SQLite the text of `str(datetime)` in UTC (which drops the
    microseconds when they are zero, so compare such text with >= and <, as the segment
    compiler does)."""
    value = value.astimezone(UTC)
    if dialect() == "postgres":
        return value
    return str(value)


async def allow_generic_plans(conn: Any) -> None:
    """Inside a transaction of bulk writes on PostgreSQL: back to PostgreSQL's own plan
    cache (`plan_cache_mode = auto`) until the commit. Every foreign-key check is a cached
    query that the server runs once per written row; forced custom plans re-plan it each
    time (20-30 us a check here, 6-9 us with its cached plan), which made a 100,000-row
    INSERT with three foreign keys take 9 s instead of 3. For statements whose best plan
    does not depend on their values (the campaign job's keyset reads, INSERTs from arrays)."""
    if dialect() == "postgres":
        await conn.execute_script("SET LOCAL plan_cache_mode = auto")


class SqlBuilder:
    """Raw SQL with parameters in the dialect's placeholder style, built left to right.

    q = SqlBuilder()
    sql = f"SELECT id FROM contacts WHERE workspace_id = {q.param(7)}"
    await conn.execute_query_dict(sql, q.params)
    """

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.postgres = dialect() == "postgres"

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}" if self.postgres else "?"

    def in_list(self, values: list[Any]) -> str:
        return "(" + ", ".join(self.param(v) for v in values) + ")"

    def extend(self, params: list[Any]) -> None:
        self.params.extend(params)

    @property
    def next_index(self) -> int:
        return len(self.params) + 1
