"""Parley's command line: `parley COMMAND` (installed with the package) or `python -m cli COMMAND`.

    parley run                 # everything on one machine: private Redis, migrate, demo, API + worker
    parley migrate             # apply migrations to DATABASE_URL
    parley api                 # one API process (uvicorn) on DATABASE_URL and REDIS_URL
    parley worker              # one job worker (arq) on DATABASE_URL and REDIS_URL
    parley create-workspace --name Acme --owner-email you@acme.example   # asks for the password
    parley create-agent --workspace SLUG --email them@acme.example --name "Them" --role admin
    parley create-api-key --workspace SLUG --name CRM --scope contacts:read --scope contacts:write
    parley reset-password --email you@acme.example
    parley seed --demo         # a demo workspace with contents; its credentials in DATA_DIR/demo-credentials.txt
    parley backup              # a consistent copy of DATABASE_URL in DATA_DIR/backups (or --to FOLDER)
    parley restore FILE --yes  # replaces what DATABASE_URL holds with a backup (stop the API and worker first)
    parley schema              # print the SDL checked in as schema.graphql

Passwords are asked at the terminal, or read from the first line of standard input with
--password-stdin; never given on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


def _data_dir() -> Path:
    """DATA_DIR (./data unless set), read before the settings are: the private Redis's URL
    must be in the environment before anything loads them."""
    return Path(os.environ.get("DATA_DIR") or "data")


class CommandError(Exception):
    pass


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


async def _with_db(work: Callable[[], Awaitable[Any]]) -> Any:
    """Runs `work` with the ORM connected to DATABASE_URL; an OperatorError becomes a
    CommandError (a message, exit status 1)."""
    from tortoise import Tortoise

    from core.db import tortoise_config
    from ops.operators import OperatorError

    _ensure_sqlite_dir()
    await Tortoise.init(config=tortoise_config())
    try:
        return await work()
    except OperatorError as exc:
        raise CommandError(str(exc)) from None
    finally:
        await Tortoise.close_connections()


def _password(args: argparse.Namespace, prompt: str = "Password: ") -> str:
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CommandError("--password-stdin: standard input had no password")
        return line
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask the password at: pipe it in with --password-stdin")
    first = getpass.getpass(prompt)
    if getpass.getpass("Again: ") != first:
        raise CommandError("the two passwords differ")
    return first


def _print_credentials() -> None:
    from ops.demo import credentials_file

    path = credentials_file()
    if path.exists():
        print(f"\n{path.read_text()}(from {path})\n")


async def _seed_demo() -> None:
    from ops.demo import credentials_file, seed_demo

    demo = await _with_db(seed_demo)
    print(f"\n{demo.text()}(also in {credentials_file()})\n")


async def _seed_if_empty() -> None:
    from models.workspaces import Workspace

    async def empty() -> bool:
        return not await Workspace.exists()

    if await _with_db(empty):
        await _seed_demo()
    else:
        _print_credentials()


def _private_redis(env: dict[str, str]) -> Any:
    """A private redis-server under DATA_DIR/redis when REDIS_URL is unset (its URL put into
    `env` and os.environ); None when REDIS_URL is set."""
    if env.get("REDIS_URL"):
        return None
    from core.embedded_redis import PrivateRedis

    workdir = _data_dir() / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        private = PrivateRedis(workdir=str(workdir)).start()
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    env["REDIS_URL"] = os.environ["REDIS_URL"] = private.url
    print(f"Private Redis at {private.url} (pid {private.process.pid if private.process else '?'})")
    return private


def api_command(host: str, port: int, workers: int = 1) -> list[str]:
    from core.config import settings

    # uvicorn then refuses larger WebSocket frames before assembling them (the app closes
    # larger messages with 1009 whatever the server was started with).
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "asgi:app",
        "--host",
        host,
        "--port",
        str(port),
        "--no-proxy-headers",
        "--ws-max-size",
        str(settings.ws_max_message_bytes),
        "--workers",
        str(workers),
    ]


WORKER_COMMAND = [sys.executable, "-m", "arq", "jobs.worker.WorkerSettings"]


def _supervise(children: list[subprocess.Popen[bytes]], on_exit: Callable[[], None] = lambda: None) -> int:
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
        on_exit()
    return 0 if stopping else 1


def _run(host: str, port: int) -> int:
    from core.metrics import multiprocess_env, remove_multiprocess_dir

    env = dict(os.environ)
    private = _private_redis(env)
    # The API's /metrics then has the worker's job metrics too (core/metrics.py).
    metrics_dir = multiprocess_env(env)

    def stop() -> None:
        if private:
            private.stop()
        remove_multiprocess_dir(metrics_dir)

    try:
        asyncio.run(_migrate())
        asyncio.run(_seed_if_empty())
        # Our own commands (sys.executable -m ...), no shell.
        children = [subprocess.Popen(api_command(host, port), env=env), subprocess.Popen(WORKER_COMMAND, env=env)]  # noqa: S603
    except BaseException:
        stop()
        raise
    print(f"Parley on http://{host}:{port}/graphql  (Ctrl-C stops)")
    _print_demo_urls(f"http://{host}:{port}")
    return _supervise(children, stop)


def _print_demo_urls(base_url: str) -> None:
    from core.config import settings
    from ops.demo import demo_channel_key
    from runtime.demo_pages import demo_urls

    if not settings.serves_demo_pages:
        return
    widget, inbox = demo_urls(base_url, demo_channel_key() or "<a widget channel's public key>")
    print(f"Demo widget   {widget}\nDemo inbox    {inbox}  (the owner login above)")


def _serve(command: list[str], workers: int = 1) -> int:
    """One API process or one worker (what a container runs): REDIS_URL is required.
    Several API worker processes share a metrics directory (a fresh one unless
    PROMETHEUS_MULTIPROC_DIR names one): any of them answers /metrics for all."""
    if not os.environ.get("REDIS_URL"):
        raise CommandError("REDIS_URL is not set (only `parley run` starts a private Redis)")
    if workers > 1:
        from core.metrics import multiprocess_env

        multiprocess_env(os.environ)  # type: ignore[arg-type]
    os.execv(command[0], command)  # noqa: S606 - our own command, no shell
    return 0  # pragma: no cover - execv does not return


def _backup_step(step: Callable[[], Any]) -> Any:
    from ops.backup import BackupError

    try:
        return step()
    except BackupError as exc:
        raise CommandError(str(exc)) from None


def sdl() -> str:
    from schema import build_schema

    return build_schema(introspection=True).as_str() + "\n"


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: `--password SECRET` must not pass for --password-stdin.
    parser = argparse.ArgumentParser(
        prog="parley", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, allow_abbrev=False)

    run = command("run", "private Redis (unless REDIS_URL), migrate, demo if empty, serve API and worker")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    api = command("api", "one API process (uvicorn); needs REDIS_URL")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    command("worker", "one job worker (arq); needs REDIS_URL")
    command("migrate", "apply migrations")
    seed = command("seed", "a demo workspace with contents (a known password: not for production)")
    seed.add_argument("--demo", action="store_true", required=True, help="say it: the owner's password is known")
    command("schema", "print the GraphQL SDL (what schema.graphql holds)")

    def password_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input's first line"
        )

    ws = command("create-workspace", "a workspace, its owner, a Default API key and a web widget channel")
    ws.add_argument("--name", required=True)
    ws.add_argument("--owner-email", required=True)
    ws.add_argument("--owner-name", default="Owner")
    password_flag(ws)
    agent = command("create-agent", "an agent of a workspace")
    agent.add_argument("--workspace", required=True, metavar="SLUG")
    agent.add_argument("--email", required=True)
    agent.add_argument("--name", required=True)
    agent.add_argument("--role", choices=["owner", "admin", "agent"], default="agent")
    password_flag(agent)
    key = command("create-api-key", "an API key with scopes; prints the key once")
    key.add_argument("--workspace", required=True, metavar="SLUG")
    key.add_argument("--name", required=True)
    key.add_argument("--scope", action="append", default=[], dest="scopes", metavar="SCOPE", help="repeat for several")
    key.add_argument("--all-scopes", action="store_true", help="every scope an API key may have")
    back = command("backup", "a consistent copy of the database (SQLite online backup, or pg_dump)")
    back.add_argument("--to", metavar="FOLDER", help="where the file goes (default: DATA_DIR/backups)")
    restore = command("restore", "replace what the database holds with a backup (stop the API and worker first)")
    restore.add_argument("file", metavar="FILE")
    restore.add_argument("--yes", action="store_true", help="say it: everything the database holds now is replaced")
    reset = command("reset-password", "set an agent's password")
    reset.add_argument("--email", required=True)
    reset.add_argument("--workspace", metavar="SLUG", help="needed when the e-mail is an agent of several workspaces")
    password_flag(reset)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "schema":
        sys.stdout.write(sdl())
    elif command == "migrate":
        asyncio.run(_migrate())
        print("Migrations applied.")
    elif command == "run":
        return _run(args.host, args.port)
    elif command == "api":
        return _serve(api_command(args.host, args.port, args.workers), args.workers)
    elif command == "worker":
        return _serve(WORKER_COMMAND)
    elif command == "seed":
        env = dict(os.environ)
        private = _private_redis(env)
        try:
            asyncio.run(_seed_demo())
        finally:
            if private:
                private.close()
    elif command == "create-workspace":
        from ops import operators

        password = _password(args)
        boot = asyncio.run(
            _with_db(lambda: operators.create_workspace(args.name, args.owner_email, password, args.owner_name))
        )
        print(
            f"Workspace {boot.workspace.name!r} created\n"
            f"  workspace slug   {boot.workspace.slug}\n"
            f"  owner login      {boot.owner.email}\n"
            f"  API key          {boot.api_key}   (every scope; shown once: keep it now)\n"
            f"  widget channel   {boot.channel.public_key}"
        )
    elif command == "create-agent":
        from models.workspaces import Role
        from ops import operators

        password = _password(args)
        made = asyncio.run(
            _with_db(lambda: operators.create_agent(args.workspace, args.email, args.name, password, Role(args.role)))
        )
        print(f"Agent {made.email} ({made.role.value}) created in {args.workspace}.")
    elif command == "create-api-key":
        from core.permissions import API_KEY_SCOPES
        from ops import operators

        scopes = sorted(API_KEY_SCOPES) if args.all_scopes else args.scopes
        row, secret = asyncio.run(_with_db(lambda: operators.create_api_key(args.workspace, args.name, scopes)))
        print(f"API key {row.name!r} ({', '.join(row.scopes)}), shown once:")
        print(secret)
    elif command == "backup":
        from core.config import settings
        from ops.backup import backup

        made = _backup_step(
            lambda: backup(settings.database_url, Path(args.to) if args.to else _data_dir() / "backups")
        )
        print(f"Backed up to {made.path} ({made.size:,} bytes), as of {made.taken_at:%Y-%m-%d %H:%M:%S} UTC.")
    elif command == "restore":
        from core.config import settings
        from ops.backup import restore

        if not args.yes:
            raise CommandError(f"this replaces everything the database holds with {args.file}: add --yes to go on")
        _backup_step(lambda: restore(settings.database_url, Path(args.file)))
        print(f"Restored {args.file}. Start the API and the worker again.")
    elif command == "reset-password":
        from ops import operators

        password = _password(args, "New password: ")
        agent = asyncio.run(_with_db(lambda: operators.reset_password(args.email, password, args.workspace)))
        print(f"Password of {agent.email} changed.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except CommandError as exc:
        print(f"parley {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
