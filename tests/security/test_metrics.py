"""/metrics is for the operator's scraper: with METRICS_TOKEN set it wants that bearer
token; unset, it is open in dev (tests and benchmarks read it) and absent (404) in prod."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import settings
from tests.conftest import LiveServer, start_server

TOKEN = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def prod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = start_server(
        tmp_path_factory.mktemp("metrics"), env={"ENV": "prod", "METRICS_TOKEN": TOKEN}, name="metrics-prod"
    )
    yield s
    s.stop()


async def scrape(base_url: str, authorization: str | bytes | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return await http.get("/metrics", headers={"authorization": authorization} if authorization is not None else {})


async def test_with_a_token_only_its_bearer_reads_the_metrics(prod_server: LiveServer) -> None:
    found = await scrape(prod_server.url, f"Bearer {TOKEN}")
    assert found.status_code == 200 and "parley_hub_subscribers 0\n" in found.text
    assert (await scrape(prod_server.url, f"bearer  {TOKEN}")).status_code == 200
    for wrong in (
        None,
        "",
        TOKEN,
        f"Basic {TOKEN}",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        "Bearer",
        ("Bearer " + "é" * 32).encode("latin-1"),
    ):
        refused = await scrape(prod_server.url, wrong)
        assert refused.status_code == 401, wrong
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "parley_hub" not in refused.text
    async with httpx.AsyncClient(base_url=prod_server.url) as http:
        assert (await http.get("/healthz")).text == "ok"  # probes stay open


async def test_without_a_token_prod_has_no_metrics_and_dev_keeps_them_open(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "metrics_token", None)
    assert (await client.get("/metrics")).status_code == 200  # dev: tests and benchmarks read it
    monkeypatch.setattr(settings, "env", "prod")
    assert (await client.get("/metrics")).status_code == 404
    assert (await client.get("/metrics", headers={"authorization": "Bearer anything"})).status_code == 404
    monkeypatch.setattr(settings, "metrics_token", TOKEN)
    assert (await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})).status_code == 200


async def test_in_dev_a_token_set_is_still_required(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "metrics_token", TOKEN)
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})).status_code == 200


def test_the_token_setting_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.config import Settings

    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    assert Settings().metrics_token == TOKEN
