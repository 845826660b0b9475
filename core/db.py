"""Tortoise configuration, and the one place that knows which SQL dialect is in use."""

from __future__ import annotations

from typing import Any

from core.config import settings

MODEL_MODULES = [
    "models.workspaces",
    "models.channels",
    "models.contacts",
]


def tortoise_config(database_url: str | None = None) -> dict[str, Any]:
    url = database_url or settings.database_url
    return {
        "connections": {"default": url},
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


# What `tortoise -c core.db.TORTOISE_ORM makemigrations|migrate` reads.
TORTOISE_ORM = tortoise_config()


def dialect() -> str:
    """'sqlite' or 'postgres', for the few places that must emit dialect-specific SQL."""
    from tortoise import connections

    return str(connections.get("default").capabilities.dialect)


async def migrate(database_url: str | None = None) -> None:
    """Apply every migration in models/migrations (idempotent)."""
    from tortoise import Tortoise
    from tortoise.migrations.api.migrate import migrate as run_migrations

    try:
        await run_migrations(config=tortoise_config(database_url))
    finally:
        await Tortoise.close_connections()
