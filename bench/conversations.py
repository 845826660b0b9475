"""Real-time inbox benchmark: message send → subscriber delivery latency with 1,000
connected subscribers, beside the bare transport measured in the same run.

    .venv/bin/python -m bench.conversations                          # PostgreSQL, private Redis
    .venv/bin/python -m bench.conversations --sqlite
    .venv/bin/python -m bench.conversations --subscribers 1000 --messages 30 \\
        --database-url postgres://root@127.0.0.1:5432/test --redis-url redis://127.0.0.1:6379/0
    .venv/bin/python -m bench.conversations --scenarios fanout --profile /tmp/prof   # py-spy, raw stacks

Starts one `uvicorn asgi:app` pinned to one core (the load generator runs on the others)
against a scratch database (beside --database-url, never in it; or a temporary SQLite
file), migrated, and a Redis (a private one unless --redis-url; a shared one gets a random
key prefix and is cleaned afterwards). Two scenarios, each on a fresh server process:

- fanout: N agents' sockets subscribed to `messageAdded` of one conversation; an agent posts
  `sendMessage` over HTTP at each rate in --fanout-rates (messages/s; `max`: all at once).
- one-to-one: N contact sessions (`startContactSession`, `startConversation`), each
  subscribed to `myMessages`; the agent replies to the conversations round-robin at each
  rate in --rates for --seconds.

Latency is the arrival of the `next` frame at the subscriber minus the moment the
mutation's request was written (one process, one monotonic clock; each body carries a
sequence number). Deliveries/s counts frames from the first request to the last arrival.
Server CPU comes from /proc/<pid>/stat over the same window (the mutations' own cost
included); RSS from /proc/<pid>/status. Sending is open-loop at the given rate over a pool
of --connections keep-alive HTTP connections: when the pool is busy the sender falls
behind, which the "sent/s" column shows. "Other load on the server's core" is that core's
busy time (/proc/stat) minus the server's own: PostgreSQL backends, or other programs on
the machine; when it is high, the row was disturbed.

The fan-out sockets all authenticate with the workspace owner's token. No arq worker
runs: the `deliver_message` jobs sendMessage queues stay queued (and are deleted with the
run's Redis keys). A private Redis runs on the load generator's cores; PostgreSQL is not
pinned.

Baseline, in the same run and on the server's core while the server is not running:
`core.hub.Hub` alone — each message PUBLISHed to Redis, read back on one pub/sub connection
and fanned out to the same number of local subscriber queues, each drained by a task —
at the same rates and counts. It is what the transport costs without GraphQL, the
database or WebSockets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    CoreLayout,
    HttpPool,
    Latencies,
    Server,
    Stack,
    Subscriber,
    core_busy_seconds,
    cpu_seconds,
    load_average,
    machine_facts,
    markdown_table,
    metrics_text,
    raise_open_files,
    rss_bytes,
    scratch_stack,
    self_cpu_seconds,
    spawn,
    start_server,
    stop_process,
    wait_for_subscribers,
)

SEND = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { code message } } }"
MESSAGE_ADDED = (
    "subscription($id: ID!) { messageAdded(conversationId: $id) { cursor message { id body senderKind createdAt } } }"
)
MY_MESSAGES = "subscription { myMessages { cursor message { id conversationId body senderKind createdAt } } }"
SESSION = (
    "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token userErrors { code message } } }"
)
START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } "
    "userErrors { code message } } }"
)

SEQ = re.compile(rb"seq=(\d+)")


@dataclass(frozen=True)
class Load:
    label: str
    rate: float | None  # messages/s; None: every message at once
    messages: int

    @property
    def offered(self) -> str:
        return "all at once" if self.rate is None else f"{self.rate:g} msg/s"


@dataclass
class Row:
    label: str
    offered: str
    messages: int
    sent_per_s: float
    expected: int
    received: int
    deliveries_per_s: float
    latency: dict[str, float]
    mutation: dict[str, float] | None
    cpu_share: float  # of one core, over the window
    cpu_per_delivery_us: float
    loadgen_cpu_share: float | None = None
    other_share: float | None = None  # of the server's core, used by anything but the server
    rss_mib: float | None = None  # the server's, once the load is delivered
    failures: int = 0

    def cells(self, who: str) -> list[str]:
        lat, mut = self.latency, self.mutation
        return [
            f"{self.label}: {who}",
            self.offered,
            f"{self.sent_per_s:,.0f}",
            f"{self.received:,}" + ("" if self.received == self.expected else f" of {self.expected:,}"),
            f"{self.deliveries_per_s:,.0f}",
            f"{lat['p50']:.1f}",
            f"{lat['p95']:.1f}",
            f"{lat['p99']:.1f}",
            f"{lat['max']:.1f}",
            f"{mut['p50']:.1f} / {mut['p99']:.1f}" if mut else "–",
            f"{self.cpu_share * 100:.0f} %",
            f"{self.cpu_per_delivery_us:,.0f}",
            f"{self.loadgen_cpu_share * 100:.0f} %" if self.loadgen_cpu_share is not None else "–",
            f"{self.other_share * 100:.0f} %" if self.other_share is not None else "–",
            f"{self.rss_mib:.0f}" if self.rss_mib is not None else "–",
        ]


HEADERS = [
    "load",
    "offered",
    "sent msg/s",
    "deliveries",
    "deliveries/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "sendMessage p50 / p99 ms",
    "server CPU (1 core)",
    "CPU µs / delivery",
    "load-gen CPU",
    "other load on the server's core",
    "server RSS MiB after",
]


class Deliveries:
    """Arrival times by sequence number, filled by every subscriber's `on_next`."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.arrivals: list[tuple[int, float]] = []
        self.first_seq = 0
        self.next_seq = 1
        self.expected = 0
        self.unmatched: list[bytes] = []
        self.done = asyncio.Event()

    def begin(self, messages: int, per_message: int) -> int:
        self.first_seq, self.next_seq = self.next_seq, self.next_seq + messages
        self.expected = messages * per_message
        self.arrivals = []
        self.done.clear()
        return self.first_seq

    def on_next(self, data: bytes, arrived: float) -> None:
        found = SEQ.search(data)
        if found is None:  # an error payload, most likely
            self.unmatched.append(data[:500])
            return
        if int(found.group(1)) < self.first_seq:
            return  # a straggler from an earlier load
        self.arrivals.append((int(found.group(1)), arrived))
        if len(self.arrivals) >= self.expected:
            self.done.set()

    def latencies(self) -> Latencies:
        return Latencies([arrived - self.sent[seq] for seq, arrived in self.arrivals if seq in self.sent])


def busy(core: int | None) -> float:
    return core_busy_seconds(core) if core is not None else 0.0


async def paced(count: int, rate: float | None, fire: Callable[[int], Awaitable[None]]) -> None:
    """fire(0) … fire(count - 1), open-loop at `rate` a second (None: all at once)."""
    tasks = []
    start = time.monotonic()
    i = 0
    while i < count:
        now = time.monotonic()
        while i < count and (rate is None or start + i / rate <= now):
            tasks.append(asyncio.ensure_future(fire(i)))
            i += 1
        if i < count and rate is not None:
            await asyncio.sleep(start + i / rate - time.monotonic())
    await asyncio.gather(*tasks)


async def drive(
    http: HttpPool,
    token: str,
    targets: Sequence[str],
    load: Load,
    per_message: int,
    deliveries: Deliveries,
    server: Server,
    core: int | None,
    drain_timeout: float,
) -> Row:
    """Send `load` through sendMessage, wait for every delivery (or the timeout), measure."""
    first = deliveries.begin(load.messages, per_message)
    mutation = Latencies()
    failures: list[str] = []
    written: list[float] = []

    async def send(i: int) -> None:
        seq = first + i
        variables = {"i": {"conversationId": targets[i % len(targets)], "body": f"bench seq={seq}"}}
        try:
            reply = await http.post_graphql(SEND, variables, token=token)
        except (OSError, ConnectionError) as exc:
            failures.append(repr(exc))
            return
        deliveries.sent[seq] = reply.written_at
        written.append(reply.written_at)
        mutation.samples.append(time.monotonic() - reply.written_at)
        if reply.status != 200 or b'"userErrors":[]' not in reply.body:
            failures.append(reply.body.decode()[:300])

    server_cpu, own_cpu, core_busy, started = cpu_seconds(server.pid), self_cpu_seconds(), busy(core), time.monotonic()
    await paced(load.messages, load.rate, send)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(deliveries.done.wait(), drain_timeout)
    ended = time.monotonic()
    server_cpu, own_cpu = cpu_seconds(server.pid) - server_cpu, self_cpu_seconds() - own_cpu
    core_busy = busy(core) - core_busy
    if failures:
        print(f"  {load.label}: {len(failures)} sendMessage failures, e.g. {failures[0]}", file=sys.stderr)
    received = len(deliveries.arrivals)
    last = max((a for _, a in deliveries.arrivals), default=ended)
    span = (max(written) - min(written)) if len(written) > 1 else 0.0
    return Row(
        label=load.label,
        offered=load.offered,
        messages=load.messages,
        sent_per_s=(len(written) - 1) / span if span else float(len(written)),
        expected=deliveries.expected,
        received=received,
        deliveries_per_s=received / (last - min(written)) if written and last > min(written) else 0.0,
        latency=deliveries.latencies().summary(),
        mutation=mutation.summary(),
        cpu_share=server_cpu / (ended - started),
        cpu_per_delivery_us=server_cpu / max(received, 1) * 1e6,
        loadgen_cpu_share=own_cpu / (ended - started),
        failures=len(failures),
        other_share=max(core_busy - server_cpu, 0.0) / (ended - started) if core is not None else None,
        rss_mib=rss_bytes(server.pid) / 2**20,
    )


# -- the baseline: core.hub.Hub on its own ---------------------------------------------------


async def baseline_worker(spec: dict[str, Any]) -> None:
    """In a child process on the server's core: publish, read back and fan out through the
    Hub to `per_channel` local subscribers on each of `channels` channels; one JSON line
    per load on stdout."""
    from core.hub import Hub

    hub = Hub(spec["redis_url"], queue_size=256)
    await hub.start()
    try:
        await _baseline_loads(hub, spec)
    finally:
        await hub.stop()


async def _baseline_loads(hub: Any, spec: dict[str, Any]) -> None:
    prefix = spec["prefix"]
    channels = [f"{prefix}:baseline:{i}" for i in range(spec["channels"])]
    silent = f"{prefix}:baseline:nobody"  # the server publishes each message on two channels
    await asyncio.wait_for(hub.connected.wait(), 10)
    arrivals: list[tuple[int, float]] = []
    sent: dict[int, float] = {}
    state = {"expected": 0, "first": 0}
    done = asyncio.Event()

    async def consume(sub: Any) -> None:
        async for event in sub:
            if event["cursor"] >= state["first"]:
                arrivals.append((event["cursor"], time.monotonic()))
                if len(arrivals) >= state["expected"]:
                    done.set()

    async with contextlib.AsyncExitStack() as stack:
        subs = [
            await stack.enter_async_context(hub.subscribe(ch)) for ch in channels for _ in range(spec["per_channel"])
        ]
        for _ in range(200):
            counts = await hub.redis.pubsub_numsub(*channels)
            if all(n == 1 for _, n in counts):
                break
            await asyncio.sleep(0.05)
        consumers = [asyncio.create_task(consume(s)) for s in subs]
        next_seq = 1
        for label, rate, messages in [("warm-up", 50, 5), *spec["loads"]]:
            first, next_seq = next_seq, next_seq + messages
            state.update(expected=messages * spec["per_channel"], first=first)
            arrivals.clear()
            done.clear()

            async def publish(i: int, first: int = first) -> None:
                seq = first + i
                event = {
                    "type": "message",
                    "cursor": seq,
                    "message": {
                        "id": seq,
                        "conversationId": 1,
                        "senderKind": "agent",
                        "agentId": 1,
                        "direction": "outbound",
                        "body": f"bench seq={seq}",
                        "deliveryState": "received",
                        "createdAt": "2026-11-30T12:00:00.000000+00:00",
                    },
                }
                sent[seq] = time.monotonic()
                await hub.publish([(channels[i % len(channels)], event), (silent, event)])

            cpu, core_busy, started = self_cpu_seconds(), busy(spec["core"]), time.monotonic()
            await paced(messages, rate, publish)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), spec["drain_timeout"])
            ended = time.monotonic()
            cpu, core_busy = self_cpu_seconds() - cpu, busy(spec["core"]) - core_busy
            if label == "warm-up":
                continue
            last = max((a for _, a in arrivals), default=ended)
            first_sent = min(sent[s] for s in range(first, first + messages))
            last_sent = max(sent[s] for s in range(first, first + messages))
            row = Row(
                label=label,
                offered=Load(label, rate, messages).offered,
                messages=messages,
                sent_per_s=(messages - 1) / (last_sent - first_sent) if last_sent > first_sent else float(messages),
                expected=state["expected"],
                received=len(arrivals),
                deliveries_per_s=len(arrivals) / (last - first_sent) if last > first_sent else 0.0,
                latency=Latencies([a - sent[s] for s, a in arrivals]).summary(),
                mutation=None,
                cpu_share=cpu / (ended - started),
                cpu_per_delivery_us=cpu / max(len(arrivals), 1) * 1e6,
                other_share=max(core_busy - cpu, 0.0) / (ended - started) if spec["core"] is not None else None,
            )
            print(json.dumps(row.__dict__), flush=True)
        for task in consumers:
            task.cancel()


async def run_baseline(
    stack: Stack, layout: CoreLayout, *, channels: int, per_channel: int, loads: Sequence[Load], drain_timeout: float
) -> list[Row]:
    spec = {
        "redis_url": stack.redis_url,
        "prefix": stack.redis_prefix,
        "channels": channels,
        "per_channel": per_channel,
        "loads": [(load.label, load.rate, load.messages) for load in loads],
        "drain_timeout": drain_timeout,
        "core": layout.server_core,
    }
    argv = [sys.executable, "-m", "bench.conversations", "--baseline-worker", json.dumps(spec)]
    process = spawn(argv, env=stack.env, core=layout.server_core, log=stack.workdir / "baseline.log", capture=True)
    try:
        out, _ = await asyncio.to_thread(process.communicate)
    finally:
        stop_process(process)
    if process.returncode != 0:
        raise RuntimeError(f"the baseline failed:\n{(stack.workdir / 'baseline.log').read_text()[-4000:]}")
    return [Row(**json.loads(line)) for line in out.decode().splitlines() if line.strip()]


# -- scenarios ---------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    stack: Stack
    layout: CoreLayout
    owner_token: str
    channel_key: str
    notes: list[str] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def server(self, name: str) -> AsyncIterator[tuple[Server, HttpPool]]:
        server = await start_server(self.stack.env, core=self.layout.server_core, log_dir=self.stack.workdir, name=name)
        http = HttpPool("127.0.0.1", server.port, size=self.args.connections)
        try:
            yield server, http
        except BaseException:
            print(f"\nserver log ({name}), last lines:\n{server.log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            http.close()
            server.stop()

    async def subscribe_all(
        self,
        server: Server,
        specs: Sequence[tuple[str, str, dict[str, Any]]],
        deliveries: Deliveries,
        opened: list[Subscriber],
    ) -> None:
        limit = asyncio.Semaphore(64)

        async def one(token: str, query: str, variables: dict[str, Any]) -> None:
            async with limit:
                opened.append(
                    await Subscriber.open(server.port, server.ws_url, token, query, variables, deliveries.on_next)
                )

        async with asyncio.TaskGroup() as group:
            for spec in specs:
                group.create_task(one(*spec))

    @contextlib.asynccontextmanager
    async def profiling(self, server: Server, name: str) -> AsyncIterator[None]:
        if not self.args.profile:
            yield
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out = Path(self.args.profile) / f"{name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                "100",
                "--native",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self.notes.append(f"py-spy profile of {name}: {out}")

    async def run(
        self,
        name: str,
        title: str,
        server: Server,
        http: HttpPool,
        token: str,
        targets: Sequence[str],
        per_message: int,
        loads: Sequence[Load],
        warmup: Load,
        deliveries: Deliveries,
        baseline: Sequence[Row],
        subscribers: list[Subscriber],
        rss_before: int,
    ) -> None:
        rss_connected, load_before = rss_bytes(server.pid), load_average()
        core, timeout = self.layout.server_core, self.args.drain_timeout
        await drive(http, token, targets, warmup, per_message, deliveries, server, core, timeout)
        rows = []
        async with self.profiling(server, name):
            for load in loads:
                rows.append(await drive(http, token, targets, load, per_message, deliveries, server, core, timeout))
        metrics = await metrics_text(http)
        dropped = re.search(r"parley_hub_dropped_subscribers_total (\d+)", metrics)
        table = []
        by_label = {row.label: row for row in baseline}
        for row in rows:
            table.append(row.cells("Parley"))
            if row.label in by_label:
                table.append(by_label[row.label].cells("baseline"))
        n = len(subscribers)
        problems = [p for s in subscribers for p in s.problems]
        print(f"\n### {title}\n")
        print(markdown_table(HEADERS, table))
        print(
            f"\nServer RSS: {rss_before / 2**20:.0f} MiB before the sockets, "
            f"{rss_connected / 2**20:.0f} MiB with {n:,} "
            f"subscribed ({(rss_connected - rss_before) / max(n, 1) / 1024:.0f} KiB each), "
            f"{rss_bytes(server.pid) / 2**20:.0f} MiB at the end. Hub subscribers dropped as too slow: "
            f"{dropped.group(1) if dropped else '?'}; subscriber errors: {len(problems)}; "
            f"frames without a sequence number: {len(deliveries.unmatched)}. Machine load average (1/5/15 min): "
            f"{load_before} before the loads, {load_average()} after."
        )
        for sample in problems[:2] + [u.decode(errors="replace") for u in deliveries.unmatched[:2]]:
            print(f"  e.g. {sample}")

    async def fanout(self) -> None:
        n, args = self.args.subscribers, self.args
        loads = [
            Load(f"fan-out {rate}", None if rate == "max" else float(rate), args.messages)
            for rate in args.fanout_rates.split(",")
        ]
        baseline = await run_baseline(
            self.stack, self.layout, channels=1, per_channel=n, loads=loads, drain_timeout=args.drain_timeout
        )
        subscribers: list[Subscriber] = []
        async with self.server("fanout") as (server, http):
            session = (
                await http.graphql(SESSION, {"i": {"channelKey": self.channel_key, "externalId": "bench-fanout"}})
            )["startContactSession"]
            started = (await http.graphql(START, {"i": {"body": "Hello"}}, token=session["token"]))["startConversation"]
            conversation = started["conversation"]["id"]
            deliveries = Deliveries()
            rss_before = rss_bytes(server.pid)
            try:
                await self.subscribe_all(
                    server, [(self.owner_token, MESSAGE_ADDED, {"id": conversation})] * n, deliveries, subscribers
                )
                await wait_for_subscribers(http, n)
                await self.run(
                    "fanout",
                    f"Fan-out: {n:,} agent sockets on messageAdded of one conversation, "
                    f"{args.messages} messages a load",
                    server,
                    http,
                    self.owner_token,
                    [conversation],
                    n,
                    loads,
                    Load("warm-up", 2, 3),
                    deliveries,
                    baseline,
                    subscribers,
                    rss_before,
                )
            finally:
                for sub in subscribers:
                    sub.close()

    async def one_to_one(self) -> None:
        n, args = self.args.subscribers, self.args
        loads = [
            Load(
                f"1:1 {rate}",
                None if rate == "max" else float(rate),
                args.max_messages if rate == "max" else int(float(rate) * args.seconds),
            )
            for rate in args.rates.split(",")
        ]
        baseline = await run_baseline(
            self.stack, self.layout, channels=n, per_channel=1, loads=loads, drain_timeout=args.drain_timeout
        )
        subscribers: list[Subscriber] = []
        async with self.server("one_to_one") as (server, http):
            limit = asyncio.Semaphore(16)
            sessions: list[tuple[str, str]] = [("", "")] * n

            async def contact(i: int) -> None:
                async with limit:
                    s = (
                        await http.graphql(SESSION, {"i": {"channelKey": self.channel_key, "externalId": f"bench-{i}"}})
                    )["startContactSession"]
                    c = (await http.graphql(START, {"i": {"body": "Hello"}}, token=s["token"]))["startConversation"]
                    sessions[i] = (s["token"], c["conversation"]["id"])

            seeding = time.monotonic()
            async with asyncio.TaskGroup() as group:
                for i in range(n):
                    group.create_task(contact(i))
            self.notes.append(
                f"one-to-one: {n:,} contact sessions and conversations through the API "
                f"in {time.monotonic() - seeding:.1f} s"
            )
            deliveries = Deliveries()
            rss_before = rss_bytes(server.pid)
            try:
                await self.subscribe_all(
                    server, [(token, MY_MESSAGES, {}) for token, _ in sessions], deliveries, subscribers
                )
                await wait_for_subscribers(http, n)
                await self.run(
                    "one_to_one",
                    f"One-to-one: {n:,} contact sockets on myMessages, the agent replying round-robin",
                    server,
                    http,
                    self.owner_token,
                    [c for _, c in sessions],
                    1,
                    loads,
                    Load("warm-up", 100, 100),
                    deliveries,
                    baseline,
                    subscribers,
                    rss_before,
                )
            finally:
                for sub in subscribers:
                    sub.close()


async def seed_workspace() -> tuple[str, str]:
    """A workspace (owner, API key, web widget); the owner's token and the widget's key."""
    from tortoise import Tortoise

    from core.auth import TokenKind, issue_token
    from core.db import migrate, tortoise_config
    from resolvers.workspaces import create_workspace

    await migrate()
    await Tortoise.init(config=tortoise_config(), _enable_global_fallback=True)
    try:
        boot = await create_workspace(
            "Bench", "owner@example.com", "correct horse battery", owner_name="Bench Owner", identity_verification=False
        )
        token = issue_token(TokenKind.AGENT, workspace_id=boot.workspace.id, subject_id=boot.owner.id)
        return token, boot.channel.public_key
    finally:
        await Tortoise.close_connections()


async def describe(stack: Stack, layout: CoreLayout, open_files: tuple[int, int]) -> str:
    facts = machine_facts()
    if stack.sqlite:
        import sqlite3

        database = f"SQLite {sqlite3.sqlite_version} (temporary file)"
    else:
        import asyncpg

        conn = await asyncpg.connect(stack.database_url.replace("postgres://", "postgresql://", 1))
        try:
            server_version = await conn.fetchval("SHOW server_version")
            scratch_database = stack.database_url.rsplit("/", 1)[1]
            database = f"PostgreSQL {server_version} on 127.0.0.1 (scratch database {scratch_database})"
        finally:
            await conn.close()
    import redis.asyncio as redis

    client = redis.Redis.from_url(stack.redis_url)
    try:
        redis_version = (await client.info("server"))["redis_version"]
    finally:
        await client.aclose()
    return (
        f"Machine: {facts['cpus']} CPUs ({facts['cpu model']}), {facts['memory']}, Linux {facts['kernel']}, "
        f"Python {facts['python']}.\n"
        f"Database: {database}. Redis {redis_version}: {stack.redis_description}.\n"
        f"Pinning: {layout.describe()}. Open files (soft/hard, inherited by the server): "
        f"{open_files[0]}/{open_files[1]}."
    )


async def main(args: argparse.Namespace) -> None:
    layout = CoreLayout.split()
    layout.pin_this_process()
    open_files = raise_open_files()
    if open_files[0] < args.subscribers * 2 + 200:
        print(f"warning: the open-file limit ({open_files[0]}) is low for {args.subscribers} sockets", file=sys.stderr)
    async with scratch_stack(sqlite=args.sqlite, database_url=args.database_url, redis_url=args.redis_url) as stack:
        owner_token, channel_key = await seed_workspace()
        print(await describe(stack, layout, open_files))
        bench = Bench(args, stack, layout, owner_token, channel_key)
        for scenario in args.scenarios.split(","):
            await {"fanout": bench.fanout, "one-to-one": bench.one_to_one}[scenario]()
        if bench.notes:
            print()
            for note in bench.notes:
                print(f"- {note}")


async def cancelled_by_signals(job: Awaitable[None]) -> None:
    """Ctrl-C and SIGTERM cancel the job, so every `finally` and `async with` cleans up.
    (Done by hand: asyncio.Runner's own Ctrl-C handling did not fire under uvloop.)"""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    await job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.conversations", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000, help="sockets per scenario (default 1000)")
    parser.add_argument("--scenarios", default="fanout,one-to-one", help="fanout, one-to-one or both (default)")
    parser.add_argument("--messages", type=int, default=30, help="messages per fan-out load (default 30)")
    parser.add_argument(
        "--fanout-rates", default="1,2,4,max", help="fan-out messages/s, comma-separated; max: all at once"
    )
    parser.add_argument(
        "--rates", default="50,100,200,1000", help="one-to-one messages/s, comma-separated; max: --max-messages at once"
    )
    parser.add_argument("--seconds", type=float, default=5, help="length of each one-to-one load (default 5)")
    parser.add_argument("--max-messages", type=int, default=2000, help="messages of a one-to-one `max` load")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive HTTP connections of the sender")
    parser.add_argument(
        "--drain-timeout", type=float, default=60, help="seconds to wait for deliveries after the last send"
    )
    db = parser.add_mutually_exclusive_group()
    db.add_argument(
        "--database-url",
        help="a PostgreSQL URL the scratch database is created beside "
        "(default $BENCH_DATABASE_URL or postgres://root@127.0.0.1:5432/test)",
    )
    db.add_argument("--sqlite", action="store_true", help="a temporary SQLite file instead of PostgreSQL")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private redis-server)")
    parser.add_argument(
        "--profile", metavar="DIR", help="record the server with py-spy during the loads (raw stacks in DIR)"
    )
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - {"fanout", "one-to-one"}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop_factory = None
    job = baseline_worker(json.loads(args.baseline_worker)) if args.baseline_worker else main(args)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            runner.run(cancelled_by_signals(job))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("\ninterrupted; everything started was stopped and removed", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run())
