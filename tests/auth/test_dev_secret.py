"""The secret that signs tokens (issue 22, part 4): no server starts with the value
published in Parley's source, nor in production without one; a dev run without
SECRET_KEY makes a random secret, keeps it readable by its owner only, and signs with it
across restarts. Real processes: their exit status and message, a live uvicorn."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import PUBLISHED_SECRETS
from core.embedded_redis import free_port
from tests.auth.test_revocation import VIEWER, data, login
from tests.conftest import ROOT, Tenant, start_server


def refused_start(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DATA_DIR": str(tmp_path / "data"), **env}
    full = {k: v for k, v in full.items() if v != ""}
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "asgi:app", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_published_secret_is_refused_even_on_loopback(env: str, tmp_path: Path) -> None:
    [published] = PUBLISHED_SECRETS
    run = refused_start({"ENV": env, "SECRET_KEY": published}, tmp_path)
    assert run.returncode != 0
    assert "SECRET_KEY is the example value published in Parley's source" in run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "data").exists()


def test_production_without_a_secret_is_refused(tmp_path: Path) -> None:
    run = refused_start({"ENV": "prod", "SECRET_KEY": ""}, tmp_path)
    assert run.returncode != 0
    assert "SECRET_KEY must be set when ENV=prod" in run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "data" / "secret_key").exists()


async def test_a_dev_run_keeps_a_random_secret_of_its_own(
    tmp_path: Path, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY")
    data_dir = tmp_path / "data"
    first = start_server(tmp_path, env={"ENV": "dev", "DATA_DIR": str(data_dir)}, name="first")
    try:
        token = (await login(first, "owner@example.com", "correct horse battery", tenant.workspace.slug))["token"]
        assert (await data(first, VIEWER, token=token))["viewer"] == {"kind": "AGENT"}
    finally:
        first.stop()
    kept = data_dir / "secret_key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    secret = kept.read_text().strip()
    assert len(secret) >= 32 and secret not in PUBLISHED_SECRETS and secret != os.environ.get("SECRET_KEY")
    # The test's own tokens (signed with this run's SECRET_KEY) mean nothing to it.
    second = start_server(tmp_path, env={"ENV": "dev", "DATA_DIR": str(data_dir)}, name="second")
    try:
        assert (await data(second, VIEWER, token=token))["viewer"] == {"kind": "AGENT"}  # survives the restart
        assert (await data(second, VIEWER, token=tenant.owner_token))["viewer"] is None
    finally:
        second.stop()
    assert kept.read_text().strip() == secret
