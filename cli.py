"""Parley's command line.

    python -m cli run         # everything on one machine: private Redis, migrate, seed, API + worker
    python -m cli migrate     # apply migrations to DATABASE_URL
    python -m cli seed        # create a demo workspace and print its credentials
    python -m cli schema      # print the SDL checked in as schema.graphql
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _ensure_sqlite_dir() -> None:
    from core.config import settings

    if settings.database_url.startswith("sqlite://"):
        path = settings.database_url.removeprefix("sqlite://")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


async def _migrate() -> None:
    from core.db import migrate

    _ensure_sqlite_dir()
    await migrate()


async def _seed(*, only_if_empty: bool) -> None:
    from tortoise import Tortoise

    from core.db import tortoise_config
    from models.workspaces import Workspace
    from resolvers.workspaces import create_workspace

    await Tortoise.init(config=tortoise_config())
    try:
        if only_if_empty and await Workspace.exists():
            print("Database already has a workspace; not seeding (run `python -m cli seed` for another).")
            return
        password = os.environ.get("PARLEY_DEMO_PASSWORD", "parley-demo-password")
        boot = await create_workspace("Demo", "owner@example.com", password, owner_name="Demo Owner")
        print(
            "\nDemo workspace ready\n"
            f"  workspace slug   {boot.workspace.slug}\n"
            f"  owner login      owner@example.com / {password}\n"
            f"  API key          {boot.api_key}\n"
            f"  widget channel   {boot.channel.public_key}\n"
        )
    finally:
        await Tortoise.close_connections()


def _run(host: str, port: int) -> int:
    from core.embedded_redis import PrivateRedis

    private = None
    env = dict(os.environ)
    if not env.get("REDIS_URL"):
        private = PrivateRedis(workdir=str(ROOT / "data" / "redis"))
        (ROOT / "data" / "redis").mkdir(parents=True, exist_ok=True)
        private.start()
        env["REDIS_URL"] = private.url
        print(f"Private Redis at {private.url} (pid {private.process.pid if private.process else '?'})")
    os.environ.update(env)
    asyncio.run(_migrate())
    asyncio.run(_seed(only_if_empty=True))
    python = sys.executable
    from core.config import settings

    # uvicorn then refuses larger WebSocket frames before assembling them (the app closes
    # larger messages with 1009 whatever the server was started with).
    ws_max = str(settings.ws_max_message_bytes)
    children = [
        subprocess.Popen([python, "-m", "uvicorn", "asgi:app", "--host", host, "--port", str(port), "--no-proxy-headers",
                          "--ws-max-size", ws_max], cwd=ROOT, env=env),
        subprocess.Popen([python, "-m", "arq", "jobs.worker.WorkerSettings"], cwd=ROOT, env=env),
    ]
    print(f"Parley on http://{host}:{port}/graphql  (Ctrl-C stops)")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(c.poll() is None for c in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if private:
            private.stop()
    return 0 if stopping else 1


def sdl() -> str:
    from schema import build_schema

    return build_schema(introspection=True).as_str() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="private Redis (unless REDIS_URL), migrate, seed, serve API and worker")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    sub.add_parser("migrate", help="apply migrations")
    sub.add_parser("seed", help="create a demo workspace and print its credentials")
    sub.add_parser("schema", help="print the GraphQL SDL (what schema.graphql holds)")
    args = parser.parse_args(argv)
    if args.command == "schema":
        sys.stdout.write(sdl())
        return 0
    if args.command == "migrate":
        asyncio.run(_migrate())
        return 0
    if args.command == "seed":
        asyncio.run(_seed(only_if_empty=False))
        return 0
    return _run(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
