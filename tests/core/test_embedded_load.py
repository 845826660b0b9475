"""A small company's first week at once, on real processes (bench/embedded.py): a uvicorn
server and an arq worker on one database holding 20,000 contacts and four segments; 300
new visitor sessions and 600 agent replies 8 at a time, 5,000 contacts imported through
syncContacts meanwhile, and a campaign to them. On the embedded default (SQLite) as on
PostgreSQL: no request fails, no job fails, every acknowledged write is there, and the
campaign reaches each recipient exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_a_first_weeks_load_at_once_loses_and_fails_nothing(tmp_path: Path) -> None:
    out = tmp_path / "outcome.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "ENV", "SECRET_KEY")
    }
    database = ["--sqlite-only"]
    if os.environ.get("TEST_DATABASE_URL"):
        database = ["--postgres-only"]
        env["BENCH_DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
    run = subprocess.run(
        [sys.executable, "-m", "bench.embedded", *database, "--json", str(out), "--logs", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), run.stdout + run.stderr
    [outcome] = json.loads(out.read_text())
    assert outcome["requests"] >= 900 + 5 + 1
    assert outcome["errors"] == [], outcome["errors"][:10]
    assert outcome["failed_jobs"] == [], outcome["failed_jobs"][:10]
    assert outcome["server_errors"] == [], outcome["server_errors"][:10]
    assert outcome["lost_writes"] == []
    counts = {op: s["count"] for op, s in outcome["summary"].items()}
    assert counts["startContactSession"] == 300 and counts["sendMessage"] == 600 and counts["syncContacts"] == 5
    campaign = outcome["campaign"]
    assert campaign["status"] == "COMPLETED" and campaign["stats"]["sent"] == 5000, campaign
    assert campaign["messages_per_recipient"] == {"1": 5000}, campaign
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
