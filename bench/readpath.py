"""Read-path benchmark: GraphQL queries against bare Starlette endpoints returning the
same rows from the same database, in the same server process, in the same run.

    .venv/bin/python -m bench.readpath                 # SQLite (temporary file)
    .venv/bin/python -m bench.readpath --postgres      # PostgreSQL, a scratch database
    .venv/bin/python -m bench.readpath --duration 10 --connections 1,32
    .venv/bin/python -m bench.readpath --profile /tmp/prof    # py-spy on the server, raw stacks

One uvicorn process (`bench.bare_app:app`: the real app plus /bare/* routes) pinned to
CPU 0, wrk pinned to CPU 1 (`apt-get install wrk`). Each figure is printed beside its
baseline and the ratio, and the server's RSS before and after each GraphQL run (thousands
of requests: a leak of a few hundred bytes a request shows). Needs REDIS_URL or starts a
private redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import BENCH_RATE_LIMITS

ROOT = Path(__file__).resolve().parent.parent

CONTACTS_QUERY = "{ contacts(first: 50) { edges { node { id name email phone lastSeenAt } } } }"
CONVERSATIONS_QUERY = (
    "{ conversations(first: 25) { edges { node { id status contact { id name } assignee { id name } "
    "lastMessage { id body } } } } }"
)


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float


def _ms(text: str) -> float:
    """wrk's durations: 850.00us, 1.05ms, 1.20s, 2.00m."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def run_wrk(url: str, connections: int, duration: int, *, body: str | None = None, token: str | None = None) -> Result:
    script = ""
    if body is not None:
        script = (
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", f.name, url]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return Result(rps, p50, p99)


async def seed(contacts: int, conversations: int) -> tuple[int, str]:
    """One workspace: contacts, agents, conversations with messages and assignees."""
    from datetime import UTC, datetime, timedelta

    from tortoise import Tortoise

    from core.auth import TokenKind, issue_token
    from core.db import migrate, tortoise_config
    from models.contacts import Contact
    from models.conversations import Conversation, Direction, Message, SenderKind
    from models.workspaces import Agent
    from resolvers.workspaces import create_workspace

    await migrate()
    await Tortoise.init(config=tortoise_config())
    try:
        boot = await create_workspace("Bench", "owner@example.com", "correct horse battery", owner_name="Olive Owner")
        ws = boot.workspace.id
        now = datetime.now(UTC)
        await Contact.bulk_create(
            [
                Contact(
                    workspace_id=ws,
                    name=f"Contact {i}",
                    email=f"c{i}@example.com",
                    phone=f"+1415555{i:04d}",
                    last_seen_at=now - timedelta(minutes=i),
                )
                for i in range(contacts)
            ],
            batch_size=1000,
        )
        agents = [
            await Agent.create(workspace_id=ws, email=f"a{i}@example.com", name=f"Agent {i}", password_hash="x")
            for i in range(5)
        ]
        contact_ids = (
            await Contact.filter(workspace_id=ws).order_by("id").limit(conversations).values_list("id", flat=True)
        )
        for i, contact_id in enumerate(contact_ids):
            conversation = await Conversation.create(
                workspace_id=ws,
                contact_id=contact_id,
                channel_id=boot.channel.id,
                assignee_id=agents[i % 5].id,
                last_message_at=now - timedelta(minutes=i),
            )
            message = await Message.create(
                workspace_id=ws,
                conversation_id=conversation.id,
                sender_kind=SenderKind.CONTACT,
                direction=Direction.INBOUND,
                body=f"Question number {i} about my order",
            )
            await Conversation.filter(id=conversation.id).update(last_message_id=message.id)
        token = issue_token(TokenKind.AGENT, workspace_id=ws, subject_id=boot.owner.id)
        return ws, token
    finally:
        await Tortoise.close_connections()


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def profile(pid: int, directory: str, name: str, seconds: int) -> subprocess.Popen[bytes]:
    """py-spy on the server for the length of one run (py-spy: pip install py-spy)."""
    os.makedirs(directory, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = os.path.join(directory, f"{name}.txt")
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--rate",
            "500",
            "--nonblocking",
            "-o",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def check(url: str, token: str, query: str) -> None:
    import httpx

    body = httpx.post(f"{url}/graphql", json={"query": query}, headers={"authorization": f"Bearer {token}"}).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--postgres", action="store_true", help="PostgreSQL (BENCH_DATABASE_URL or 127.0.0.1:5432/test's server)"
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument(
        "--profile", metavar="DIR", help="record the server with py-spy during each GraphQL run (raw stacks)"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    from bench.common import rss_bytes
    from core.embedded_redis import PrivateRedis, free_port
    from core.scratch_db import ScratchDatabase

    scratch = None
    tmp = tempfile.mkdtemp(prefix="parley-bench-")
    if args.postgres:
        scratch = ScratchDatabase.beside(
            os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/test"), prefix="parley_bench"
        )
        asyncio.run(scratch.create())
        database_url = scratch.url
    else:
        database_url = f"sqlite://{tmp}/bench.sqlite3"
    redis = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis = PrivateRedis(workdir=tmp).start()
        redis_url = redis.url
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"bench{secrets.token_hex(3)}",
        "ENV": "prod",
        "SECRET_KEY": secrets.token_hex(32),
        "LOG_LEVEL": "WARNING",
        **BENCH_RATE_LIMITS,
    }
    os.environ.update(env)
    server = None
    try:
        workspace_id, token = asyncio.run(seed(args.contacts, args.conversations))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(env, port)
        wait_ready(url, server)
        for query in (CONTACTS_QUERY, CONVERSATIONS_QUERY):
            check(url, token, query)
        print(
            f"\n{'PostgreSQL' if args.postgres else 'SQLite'}, {os.cpu_count()} CPUs, server on CPU 0, wrk on CPU 1, "
            f"{args.duration} s per figure\n"
        )
        print(
            "| query | connections | bare req/s | GraphQL req/s | ratio | GraphQL p50 / p99 ms | bare p50 / p99 ms "
            "| server RSS MiB before → after the GraphQL run |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        cases = [
            ("contacts(first: 50)", f"{url}/bare/contacts?workspace={workspace_id}", CONTACTS_QUERY),
            (
                "conversations(first: 25) + contact, assignee, last message",
                f"{url}/bare/conversations?workspace={workspace_id}",
                CONVERSATIONS_QUERY,
            ),
        ]
        for label, bare_url, query in cases:
            for connections in (int(c) for c in args.connections.split(",")):
                run_wrk(bare_url, connections, 2)  # warm up both
                run_wrk(f"{url}/graphql", connections, 2, body=json.dumps({"query": query}), token=token)
                bare = run_wrk(bare_url, connections, args.duration)
                rss_before = rss_bytes(server.pid)
                spy = (
                    profile(server.pid, args.profile, f"{label.split('(')[0]}-{connections}", args.duration)
                    if args.profile
                    else None
                )
                graphql = run_wrk(
                    f"{url}/graphql", connections, args.duration, body=json.dumps({"query": query}), token=token
                )
                if spy is not None:
                    spy.wait()
                rss_after = rss_bytes(server.pid)
                ratio = graphql.requests_per_second / bare.requests_per_second
                print(
                    f"| {label} | {connections} | {bare.requests_per_second:,.0f} | {graphql.requests_per_second:,.0f} "
                    f"| {ratio:.2f}× | {graphql.p50_ms:.2f} / {graphql.p99_ms:.2f} | "
                    f"{bare.p50_ms:.2f} / {bare.p99_ms:.2f} | {rss_before / 2**20:.0f} → {rss_after / 2**20:.0f} |",
                    flush=True,
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if redis is not None:
            redis.stop()
        if scratch is not None:
            asyncio.run(scratch.drop())
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
