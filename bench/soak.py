"""`make soak` (python -m bench.soak): the whole system under load while its parts fail.

    SOAK_SECONDS=600 SOAK_SEED=7 python -m bench.soak

Starts its own PostgreSQL (`initdb` in a scratch folder, run as the `postgres` user when we
are root), its own Redis (append-only, as production runs it), two API processes and one
worker, then at the same time:

- visitors (widget sessions) each with a conversation, subscribed to `myMessages`, and
  agent sockets subscribed to `messageAdded` of every conversation; a dropped socket
  reconnects and catches up with `messages(after:)` from the last cursor it saw;
- messages sent both ways (agents with `sendMessage`, visitors with `sendMessage`);
- `syncContacts` batches from an integrator;
- `/readyz` probed on both API processes;

and kills (SIGKILL) and restarts PostgreSQL, Redis, the worker and one API process, each at
least once, at moments drawn from a seed it prints. At the end it checks, and prints one
line:

    soak: 600 s, 48213 requests, lost 0, duplicated 0, 5xx outside outages 0, RSS growth 4.1 %

- lost: a message whose send was acknowledged but that is not in the database, or that a
  subscriber never saw (live or by catching up);
- duplicated: one send stored twice (two ids for one body), or a subscriber given two ids
  for one body; the same id twice is fine (a client can tell);
- 5xx outside outages: a 5xx answer more than OUTAGE_GRACE seconds away from every outage;
- readiness: `/readyz` answers 503 while PostgreSQL or Redis is down and 200 within
  READY_WITHIN seconds of its return;
- RSS growth: the API process that was never killed, from the end of warm-up to the end.

Exit status 0 only when all hold. Not yet covered (issue 26): a campaign, an export and a
segment refresh under faults, webhooks to a failing receiver, and the multi-host layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bench.common import BENCH_RATE_LIMITS, ROOT, raise_open_files, rss_bytes, spawn, stop_process

OUTAGE_GRACE = 10.0  # seconds around an outage in which errors are expected
READY_WITHIN = 10.0
PASSWORD = "soak password 1234"
SEND = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id body } userErrors { code } } }"
SESSION = "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token userErrors { code } } }"
START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) "
    "{ conversation { id } userErrors { code message } } }"
)
LOGIN = "mutation($i: LoginInput!) { login(input: $i) { token userErrors { code } } }"
SYNC = "mutation($i: SyncContactsInput!) { syncContacts(input: $i) { results { status } userErrors { code } } }"
CATCH_UP = (
    "query($id: ID!, $after: String) { conversation(id: $id) { messages(first: 100, after: $after) "
    "{ edges { cursor node { id body } } pageInfo { hasNextPage } } } }"
)
MY_MESSAGES = "subscription { myMessages { cursor message { id body conversationId } } }"
MESSAGE_ADDED = (
    "subscription($id: ID!) { messageAdded(conversationId: $id) { cursor message { id body conversationId } } }"
)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    from core.embedded_redis import free_port as free

    return free()


# -- the parts ---------------------------------------------------------------------------------


class Postgres:
    """A PostgreSQL cluster of our own in `folder`: killable and restartable."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.bin = Path(sorted(glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
        self.user: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgres://root@127.0.0.1:{self.port}/parley"

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self.user, *argv], capture_output=True, text=True, timeout=120)  # noqa: S603
        if done.returncode:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr or done.stdout}")

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user:  # root: the cluster belongs to postgres, which must reach its folder
            self.folder.parent.chmod(0o755)
            shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "root", "--no-sync")
        self.start()
        subprocess.run(  # noqa: S603
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "root", "parley"], check=True
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.folder / "pg.log"),
            "-w",
            "start",
        )

    def kill(self) -> None:
        """The server's host dies: the postmaster and every backend, SIGKILL at once."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout  # noqa: S603, S607
        for victim in [pid, *(int(p) for p in children.split())]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


class Redis:
    """redis-server of our own, append-only with fsync every second (production's setting)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from core.embedded_redis import server_binary

        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode:  # noqa: S607
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@dataclass
class Api:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# -- what the load generator saw ------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    errors_5xx: list[float] = field(default_factory=list)  # when each 5xx came
    failed_sends: int = 0  # no answer or an error: the client cannot know whether it was stored
    acked: dict[str, str] = field(default_factory=dict)  # body -> message id
    acked_in: dict[str, str] = field(default_factory=dict)  # body -> conversation id
    outages: list[tuple[str, float, float]] = field(default_factory=list)  # (part, down at, back at)
    ready: dict[int, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    reconnects: int = 0
    catch_up_failures: list[str] = field(default_factory=list)


class CatchUpFailed(Exception):
    pass


class Subscriber:
    """One socket: a visitor on myMessages, or an agent on messageAdded of several
    conversations. It reconnects when dropped and catches up from its last cursors."""

    def __init__(self, apis: list[Api], token: str, conversations: list[str], *, visitor: bool) -> None:
        self.apis = apis
        self.token = token
        self.conversations = conversations
        self.visitor = visitor
        self.cursors: dict[str, str | None] = dict.fromkeys(conversations)
        self.seen: dict[str, set[str]] = defaultdict(set)  # body -> ids
        self.stopping = False

    def note(self, conversation: str, cursor: str | None, message: dict[str, Any]) -> None:
        self.seen[message["body"]].add(message["id"])
        if cursor is not None and conversation in self.cursors:
            self.cursors[conversation] = cursor

    async def run(self, tally: Tally) -> None:
        attempt = 0
        while not self.stopping:
            api = self.apis[attempt % len(self.apis)]
            attempt += 1
            try:
                await self._session(api, tally)
            except CatchUpFailed as exc:
                tally.catch_up_failures.append(str(exc)[:500])
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidStatus, TimeoutError, KeyError, ValueError):
                pass
            if not self.stopping:
                tally.reconnects += 1
                await asyncio.sleep(0.5 + random.random())  # noqa: S311

    async def _session(self, api: Api, tally: Tally) -> None:
        url = api.url.replace("http", "ws") + "/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10, close_timeout=1) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if ack.get("type") != "connection_ack":
                return
            ops = {}
            if self.visitor:
                ops["1"] = self.conversations[0]
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": MY_MESSAGES}}))
            else:
                for n, conversation in enumerate(self.conversations, 1):
                    ops[str(n)] = conversation
                    payload = {"query": MESSAGE_ADDED, "variables": {"id": conversation}}
                    await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
            # Subscribed first, then caught up: nothing falls between the two.
            await self.catch_up(api, tally)
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif frame.get("type") == "next" and frame["payload"].get("data"):
                    event = next(iter(frame["payload"]["data"].values()))
                    message = event["message"]
                    self.note(message["conversationId"], event["cursor"], message)
                elif frame.get("type") in ("error", "complete"):
                    return
                if self.stopping:
                    return

    async def catch_up(self, api: Api, tally: Tally) -> None:
        async with httpx.AsyncClient(base_url=api.url, timeout=15) as http:
            for conversation in self.conversations:
                while True:
                    variables = {"id": conversation, "after": self.cursors[conversation]}
                    tally.requests += 1
                    answer = await http.post(
                        "/graphql",
                        json={"query": CATCH_UP, "variables": variables},
                        headers={"authorization": f"Bearer {self.token}"},
                    )
                    if answer.status_code >= 500:
                        tally.errors_5xx.append(time.monotonic())
                    body = answer.json()
                    if not (body.get("data") or {}).get("conversation"):
                        raise CatchUpFailed(f"{'visitor' if self.visitor else 'agent'} catch-up: {body}")
                    page = body["data"]["conversation"]["messages"]
                    for edge in page["edges"]:
                        self.note(conversation, edge["cursor"], edge["node"])
                    if not page["pageInfo"]["hasNextPage"]:
                        break


# -- the run ----------------------------------------------------------------------------------------


class Soak:
    def __init__(self, seconds: float, seed: int, visitors: int, agent_sockets: int) -> None:
        self.seconds = seconds
        self.seed = seed
        self.random = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
        self.visitors = visitors
        self.agent_sockets = agent_sockets
        self.folder = Path(tempfile.mkdtemp(prefix="parley-soak-"))
        self.pg = Postgres(self.folder / "pg")
        self.redis = Redis(self.folder / "redis")
        self.apis = [Api(free_port()), Api(free_port())]
        self.worker: subprocess.Popen[bytes] | None = None
        self.tally = Tally()
        self.env: dict[str, str] = {}
        self.stop_load = asyncio.Event()
        self.bodies = itertools.count(1)
        self.last_errors: Any = None

    # parts

    def start_api(self, api: Api) -> None:
        argv = [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(api.port)]
        api.process = spawn(argv, env=self.env, core=None, log=self.folder / f"api-{api.port}.log")

    def start_worker(self) -> None:
        self.worker = spawn(
            [sys.executable, "-m", "cli", "worker"], env=self.env, core=None, log=self.folder / "worker.log"
        )

    async def until_ready(self, api: Api, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=api.url, timeout=2) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(
            f"API on {api.port} never ready: {(self.folder / f'api-{api.port}.log').read_text()[-3000:]}"
        )

    async def setup(self) -> tuple[str, str, str]:
        made = await asyncio.to_thread(self.prepare)
        for api in self.apis:
            await self.until_ready(api)
        return made

    def prepare(self) -> tuple[str, str, str]:
        """The database and Redis, migrated, a workspace, then the API processes and the worker."""
        self.pg.init()
        self.redis.start()
        self.env = {
            "DATABASE_URL": self.pg.url,
            "REDIS_URL": self.redis.url,
            "ENV": "prod",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "LOG_LEVEL": "WARNING",
            "DATA_DIR": str(self.folder / "data"),
            "PYTHONPATH": str(ROOT),
            **BENCH_RATE_LIMITS,
            "MAX_SOCKETS_PER_PRINCIPAL": "100000",
        }
        run = {**os.environ, **self.env}
        subprocess.run([sys.executable, "-m", "cli", "migrate"], env=run, check=True, capture_output=True, cwd=ROOT)  # noqa: S603
        made = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "cli",
                "create-workspace",
                "--name",
                "Soak",
                "--owner-email",
                "owner@soak.example",
                "--password-stdin",
            ],
            env=run,
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
            cwd=ROOT,
        ).stdout
        fields = {
            line.split()[0] + " " + line.split()[1]: line.split()[2]
            for line in made.splitlines()
            if line.startswith("  ")
        }
        for api in self.apis:
            self.start_api(api)
        self.start_worker()
        return fields["API key"], fields["widget channel"], "owner@soak.example"

    async def gql(
        self, http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str
    ) -> dict[str, Any] | None:
        """The data, or None when the request failed (counted)."""
        self.tally.requests += 1
        try:
            answer = await http.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {token}"} if token else {},
            )
        except httpx.HTTPError as exc:
            self.last_errors = repr(exc)
            return None
        if answer.status_code >= 500:
            self.tally.errors_5xx.append(time.monotonic())
            self.last_errors = f"{answer.status_code}: {answer.text[:300]}"
            return None
        body = answer.json()
        if body.get("errors"):
            self.last_errors = body["errors"]
            return None
        return body["data"]  # type: ignore[no-any-return]

    async def must(self, http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        """The data of a set-up request, which must work."""
        data = await self.gql(http, query, variables, token)
        if data is None:
            raise RuntimeError(f"set-up request failed: {query[:60]}…: {self.last_errors}")
        return data

    # load

    async def send_loop(
        self, http_clients: list[httpx.AsyncClient], senders: list[tuple[str, str]], rate: float
    ) -> None:
        """Messages both ways: (token, conversation) pairs, agents' and visitors'."""
        while not self.stop_load.is_set():
            token, conversation = self.random.choice(senders)
            body = f"soak {next(self.bodies)} {secrets.token_hex(4)}"
            http = self.random.choice(http_clients)
            data = await self.gql(http, SEND, {"i": {"conversationId": conversation, "body": body}}, token)
            message = data and data["sendMessage"]["message"]
            if message:
                self.tally.acked[body] = message["id"]
                self.tally.acked_in[body] = conversation
            else:
                self.tally.failed_sends += 1
            await asyncio.sleep(1 / rate)

    async def sync_loop(self, http: httpx.AsyncClient, api_key: str) -> None:
        n = 0
        while not self.stop_load.is_set():
            rows = [{"externalId": f"crm-{(n * 50 + i) % 5000}", "name": f"Customer {n}-{i}"} for i in range(50)]
            n += 1
            await self.gql(http, SYNC, {"i": {"contacts": rows}}, api_key)
            await asyncio.sleep(1)

    async def probe_loop(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while not self.stop_load.is_set():
                for api in self.apis:
                    try:
                        status = (await http.get(api.url + "/readyz")).status_code
                    except httpx.HTTPError:
                        status = 0
                    self.tally.ready[api.port].append((time.monotonic(), status))
                await asyncio.sleep(0.5)

    # faults

    async def fault_loop(self, started: float) -> None:
        parts = ["postgres", "redis", "worker", "api"]
        self.random.shuffle(parts)
        span = self.seconds * 0.7
        moments = sorted(self.random.uniform(self.seconds * 0.1, self.seconds * 0.1 + span) for _ in parts)
        for part, moment in zip(parts, moments, strict=True):
            await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
            if self.stop_load.is_set():
                return
            down_for = self.random.uniform(2, 8)
            log(f"fault: killing {part} for {down_for:.1f} s")
            down_at = time.monotonic()
            await asyncio.to_thread(self.kill, part)
            await asyncio.sleep(down_for)
            await asyncio.to_thread(self.restart, part)
            if part == "api":
                await self.until_ready(self.apis[1])
            self.tally.outages.append((part, down_at, time.monotonic()))
            log(f"fault: {part} back")

    def kill(self, part: str) -> None:
        if part == "postgres":
            self.pg.kill()
        elif part == "redis":
            self.redis.kill()
        elif part == "worker" and self.worker is not None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait()
        elif part == "api":
            process = self.apis[1].process
            assert process is not None
            process.send_signal(signal.SIGKILL)
            process.wait()

    def restart(self, part: str) -> None:
        if part == "postgres":
            self.pg.start()
        elif part == "redis":
            self.redis.start()
        elif part == "worker":
            self.start_worker()
        elif part == "api":
            self.start_api(self.apis[1])

    # checks

    def in_outage(self, moment: float) -> bool:
        return any(down - OUTAGE_GRACE <= moment <= back + OUTAGE_GRACE for _, down, back in self.tally.outages)

    async def run(self) -> int:
        raise_open_files()
        log(f"soak: seed {self.seed}, {self.seconds:.0f} s, {self.visitors} visitors, folder {self.folder}")
        try:
            api_key, channel_key, owner = await self.setup()
            return await self.load_and_check(api_key, channel_key, owner)
        finally:
            for api in self.apis:
                if api.process is not None:
                    stop_process(api.process)
            if self.worker is not None:
                stop_process(self.worker)
            self.redis.stop()
            self.pg.stop()
            if os.environ.get("SOAK_KEEP") != "1":
                shutil.rmtree(self.folder, ignore_errors=True)

    async def load_and_check(self, api_key: str, channel_key: str, owner: str) -> int:
        clients = [httpx.AsyncClient(base_url=api.url, timeout=15) for api in self.apis]
        first = clients[0]
        try:
            agent = await self.must(first, LOGIN, {"i": {"email": owner, "password": PASSWORD}}, "")
            agent_token = agent["login"]["token"]
            assert agent_token, agent
            visitors: list[tuple[str, str]] = []
            for n in range(self.visitors):
                session = await self.must(first, SESSION, {"i": {"channelKey": channel_key}}, "")
                token = session["startContactSession"]["token"]
                assert token, session
                started = await self.must(first, START, {"i": {"body": f"hello from visitor {n}"}}, token)
                assert started["startConversation"]["conversation"], started
                visitors.append((token, started["startConversation"]["conversation"]["id"]))
            conversations = [c for _, c in visitors]
            subscribers = [Subscriber(self.apis, t, [c], visitor=True) for t, c in visitors]
            per_socket = max(1, len(conversations) // max(1, self.agent_sockets))
            for i in range(0, len(conversations), per_socket):
                subscribers.append(Subscriber(self.apis, agent_token, conversations[i : i + per_socket], visitor=False))
            tasks = [asyncio.create_task(s.run(self.tally)) for s in subscribers]
            await asyncio.sleep(5)  # sockets open and subscribed
            warm_rss = rss_bytes(self.apis[0].process.pid)  # type: ignore[union-attr]
            log(f"load: {len(subscribers)} sockets; API RSS {warm_rss / 2**20:.0f} MiB")

            started = time.monotonic()
            senders = [(agent_token, c) for c in conversations] + visitors
            load = [
                asyncio.create_task(self.send_loop(clients, senders, rate=20)),
                asyncio.create_task(self.send_loop(clients, senders, rate=20)),
                asyncio.create_task(self.sync_loop(first, api_key)),
                asyncio.create_task(self.probe_loop()),
            ]
            faults = asyncio.create_task(self.fault_loop(started))
            await asyncio.sleep(self.seconds)
            self.stop_load.set()
            await faults
            await asyncio.gather(*load)
            end_rss = rss_bytes(self.apis[0].process.pid)  # type: ignore[union-attr]

            # Let the last events arrive, then every subscriber catches up once more.
            await asyncio.sleep(3)
            for s in subscribers:
                s.stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in subscribers:
                await s.catch_up(self.apis[0], self.tally)
            elapsed = time.monotonic() - started
            return await self.report(subscribers, elapsed, warm_rss, end_rss, agent_token)
        finally:
            for c in clients:
                await c.aclose()

    async def report(
        self, subscribers: list[Subscriber], elapsed: float, warm_rss: int, end_rss: int, agent_token: str
    ) -> int:
        tally = self.tally
        problems: list[str] = []
        # Stored: every acknowledged message is in its conversation.
        stored: dict[str, set[str]] = defaultdict(set)
        reader = Subscriber(self.apis, agent_token, sorted(set(tally.acked_in.values())), visitor=False)
        await reader.catch_up(self.apis[0], tally)
        for body, ids in reader.seen.items():
            stored[body] |= ids
        lost_db = [b for b, i in tally.acked.items() if i not in stored.get(b, set())]
        duplicated_db = [b for b, ids in stored.items() if len(ids) > 1]
        # Delivered: each subscriber saw every acknowledged message of its conversations.
        lost_delivery = 0
        duplicated_delivery = 0
        examples: list[str] = []
        for s in subscribers:
            mine = set(s.conversations)
            for body, conversation in tally.acked_in.items():
                if conversation in mine and tally.acked[body] not in s.seen.get(body, set()):
                    lost_delivery += 1
                    if len(examples) < 5:
                        examples.append(
                            f"{'visitor' if s.visitor else 'agent'} missed {body!r} ({tally.acked[body]}) "
                            f"in {conversation}; its cursor there: {s.cursors.get(conversation)}"
                        )
            duplicated_delivery += sum(1 for ids in s.seen.values() if len(ids) > 1)
        lost = len(lost_db) + lost_delivery
        duplicated = len(duplicated_db) + duplicated_delivery
        outside = [t for t in tally.errors_5xx if not self.in_outage(t)]
        if lost_db:
            problems.append(f"{len(lost_db)} acknowledged messages missing from the database, e.g. {lost_db[:3]}")
        if lost_delivery:
            problems.append(f"{lost_delivery} (subscriber, message) pairs never delivered: " + "; ".join(examples))
        if duplicated:
            problems.append(
                f"duplicated: {len(duplicated_db)} stored twice, {duplicated_delivery} delivered under 2 ids"
            )
        if outside:
            problems.append(f"{len(outside)} 5xx answers outside outages")
        problems += self.readiness_problems()
        growth = (end_rss - warm_rss) / warm_rss * 100
        print(
            f"soak: {elapsed:.0f} s, {tally.requests} requests, lost {lost}, duplicated {duplicated}, "
            f"5xx outside outages {len(outside)}, RSS growth {growth:.1f} %"
        )
        print(
            f"  seed {self.seed}; {len(tally.acked)} messages acknowledged, {tally.failed_sends} sends unanswered or "
            f"refused; {tally.reconnects} reconnects; outages: "
            + ", ".join(f"{part} {back - down:.1f} s" for part, down, back in tally.outages)
        )
        for problem in problems:
            print(f"  FAIL: {problem}")
        return 1 if problems else 0

    def readiness_problems(self) -> list[str]:
        problems = []
        for part, down, back in self.tally.outages:
            if part not in ("postgres", "redis"):
                continue
            samples = self.tally.ready[self.apis[0].port]
            during = [status for t, status in samples if down + 1 <= t <= back - 0.5]
            if during and 503 not in during:
                problems.append(f"/readyz never answered 503 while {part} was down: {sorted(set(during))}")
            after = [t for t, status in samples if t >= back and status == 200]
            if not after or after[0] - back > READY_WITHIN:
                problems.append(f"/readyz not 200 within {READY_WITHIN:.0f} s after {part} came back")
        return problems


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    seed = int(os.environ.get("SOAK_SEED") or secrets.randbelow(10**6))
    visitors = int(os.environ.get("SOAK_VISITORS", "500"))
    agent_sockets = int(os.environ.get("SOAK_AGENT_SOCKETS", "50"))
    return asyncio.run(Soak(seconds, seed, visitors, agent_sockets).run())


if __name__ == "__main__":
    sys.exit(main())
