"""Outbound HTTP to URLs a tenant wrote (core/outbound.py): which addresses are refused,
that the connection goes to the address that was checked (with TLS still verifying the
name), no redirects, https in production, capped reads, and that a remote body never
comes back to the API client. Real servers on loopback throughout."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import outbound
from core.config import Settings, settings
from core.outbound import OutboundError, literal_address, refusal, url_problem
from jobs.sending import deliver_message
from models.conversations import DeliveryState, Message
from tests.conftest import Tenant
from tests.conversations.test_inbound import (
    empty_queue,  # noqa: F401 - the autouse fixture, here too
    job_ctx,
)
from tests.conversations.test_sending import reply, subscribed_sms_conversation
from tests.loopback import HttpSink
from tests.webhooks.conftest import CREATE_ENDPOINT, drain, register
from tests.webhooks.test_deliveries import delivery_log

SECRET = "db-password=hunter2-internal-only"


@pytest.fixture
def private_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "outbound_allow_private_networks", False)


# -- which addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("fec0::1", "private"),  # site-local: ipaddress calls it global
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),  # ipaddress calls IPv4 multicast global
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),  # TEST-NET-1
        # IPv6 forms that carry an IPv4 address: the IPv4 decides.
        ("::ffff:10.0.0.5", "private (embeds 10.0.0.5)"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "loopback (embeds 127.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (embeds 169.254.169.254)"),
        ("::ffff:0:10.0.0.5", "private (embeds 10.0.0.5)"),  # SIIT-translated
        ("::10.0.0.5", "private (embeds 10.0.0.5)"),  # IPv4-compatible
        ("::127.0.0.1", "loopback (embeds 127.0.0.1)"),
        ("64:ff9b::10.0.0.5", "private (embeds 10.0.0.5)"),  # NAT64
        ("64:ff9b::a9fe:a9fe", "link-local (embeds 169.254.169.254)"),
        ("64:ff9b::7f00:1", "loopback (embeds 127.0.0.1)"),
        ("64:ff9b::100.64.0.1", "carrier-grade NAT (embeds 100.64.0.1)"),
        ("2002:a00:5::1", "private (embeds 10.0.0.5)"),  # 6to4
        ("2002:7f00:1::", "loopback (embeds 127.0.0.1)"),
        ("2002:a9fe:a9fe::1", "link-local (embeds 169.254.169.254)"),
        ("64:ff9b:1::a00:5", "private"),  # NAT64 local use (RFC 8215)
        ("2001::1", "private"),  # Teredo
        # The same forms around a public IPv4 are as good as it.
        ("64:ff9b::8.8.8.8", None),
        ("2002:808:808::1", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_classification(address: str, expected: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == expected


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::ffff:127.0.0.1]"])
def test_odd_literal_forms_are_read_as_the_address_they_are(host: str) -> None:
    address = literal_address(host)
    assert address is not None and refusal(address) is not None and "loopback" in str(refusal(address))


def test_urls_are_checked_when_saved(private_refused: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert url_problem("https://sms.example.com/send") is None
    assert url_problem("http://sms.example.com/send") is None  # plain http outside production
    assert url_problem("ftp://sms.example.com") == "must be an http(s) URL."
    assert url_problem("https://") == "must be an http(s) URL."
    assert url_problem("https://10.0.0.5/send") == "must not point at 10.0.0.5: it is private."
    assert (
        url_problem("https://[64:ff9b::a00:5]/x")
        == "must not point at 64:ff9b::a00:5: it is private (embeds 10.0.0.5)."
    )
    assert url_problem("https://2130706433/x") == "must not point at 127.0.0.1: it is loopback."
    assert url_problem("https://LOCALHOST./x") == "must not point at this server (localhost)."
    monkeypatch.setattr(settings, "outbound_allow_private_networks", True)
    assert url_problem("http://10.0.0.5/send") is None
    monkeypatch.setattr(settings, "env", "prod")
    assert url_problem("http://sms.example.com/send") == "must use https."


def test_the_old_setting_name_still_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "false")
    assert Settings(_env_file=None).outbound_allow_private_networks is False  # type: ignore[call-arg]
    monkeypatch.setenv("OUTBOUND_ALLOW_PRIVATE_NETWORKS", "true")
    assert Settings(_env_file=None).outbound_allow_private_networks is True  # type: ignore[call-arg]


# -- at connect time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("localhost", "127.0.0.1 is loopback"),  # a name: resolved, then checked
        ("127.0.0.1", "127.0.0.1 is loopback"),
        ("127.1", "127.0.0.1 is loopback"),
        ("2130706433", "127.0.0.1 is loopback"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1 is loopback (embeds 127.0.0.1)"),
        ("[::127.0.0.1]", "::7f00:1 is loopback (embeds 127.0.0.1)"),
        ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1 is loopback (embeds 127.0.0.1)"),
    ],
)
async def test_a_loopback_address_is_refused_when_connecting(
    private_refused: None, http_sink: HttpSink, host: str, refused: str
) -> None:
    with pytest.raises(OutboundError) as caught:
        await outbound.post(f"http://{host}:{http_sink.port}/hook", content=b"{}")
    assert caught.value.reason == f"address refused: {refused}"
    assert http_sink.requests == []


async def test_the_connection_goes_to_the_address_that_was_checked(
    http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, by us: the client connects to that address and never
    resolves the name itself (this one exists nowhere else), yet sends it as Host."""
    answers: list[str] = []

    async def resolve(host: str, port: int) -> list[Any]:
        answers.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(outbound, "resolve", resolve)
    response = await outbound.post(f"http://gateway.parley.test:{http_sink.port}/send", content=b"hi")
    assert response.status == 200 and answers == ["gateway.parley.test"]
    [request] = await http_sink.wait_for(1)
    assert request.headers["host"] == f"gateway.parley.test:{http_sink.port}" and request.body == b"hi"

    # The same answer while private networks are refused: nothing is sent.
    monkeypatch.setattr(settings, "outbound_allow_private_networks", False)
    with pytest.raises(OutboundError, match="address refused: 127.0.0.1 is loopback"):
        await outbound.post(f"http://gateway.parley.test:{http_sink.port}/send", content=b"hi")
    assert len(http_sink.requests) == 1


async def test_a_name_answering_one_private_address_among_public_ones_is_refused(
    private_refused: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("::ffff:169.254.169.254")]

    monkeypatch.setattr(outbound, "resolve", resolve)
    with pytest.raises(OutboundError) as caught:
        await outbound.post("http://mixed.parley.test/x")
    assert caught.value.reason == "address refused: ::ffff:a9fe:a9fe is link-local (embeds 169.254.169.254)"


async def test_a_redirect_is_not_followed(http_sink: HttpSink) -> None:
    with HttpSink() as internal:
        http_sink.respond_with([302], headers={"Location": f"{internal.url}/admin"})
        response = await outbound.post(f"{http_sink.url}/hook", content=b"{}")
        assert (response.status, response.summary, response.ok) == (302, "HTTP 302", False)
        assert internal.requests == []


async def test_https_is_required_in_production(http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "env", "prod")
    monkeypatch.setattr(settings, "outbound_allow_private_networks", True)
    with pytest.raises(OutboundError) as caught:
        await outbound.post(f"{http_sink.url}/hook", content=b"{}")
    assert (caught.value.reason, caught.value.retryable) == ("https required", False)
    assert http_sink.requests == []


async def test_the_answer_is_read_up_to_the_cap(http_sink: HttpSink) -> None:
    http_sink.respond_with(body=b"x" * 1_000_000)
    response = await outbound.request("GET", f"{http_sink.url}/big", max_bytes=1000)
    assert (len(response.body), response.truncated) == (1000, True)
    [request] = await http_sink.wait_for(1)
    assert request.headers["accept-encoding"] == "identity"


async def test_a_slow_answer_ends_at_the_deadline(http_sink: HttpSink) -> None:
    http_sink.respond_with(delay_seconds=1)
    with pytest.raises(OutboundError, match=r"^no answer within 0\.2 s$"):
        await outbound.post(f"{http_sink.url}/slow", timeout=0.2)


async def test_an_answer_trickling_in_ends_at_the_deadline_too() -> None:
    """A byte every 0.05 s never trips a per-read timeout: the deadline covers it all."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
            try:
                for _ in range(40):
                    time.sleep(0.05)
                    connection.sendall(b"x")
            except OSError:
                pass  # the client hung up, as it should

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(OutboundError, match=r"^no answer within 0\.5 s$"):
            await outbound.request("GET", f"http://127.0.0.1:{port}/", timeout=0.5)
        assert time.monotonic() - started < 1.5
    finally:
        thread.join()
        listener.close()


async def test_a_closed_port_is_connection_refused() -> None:
    with HttpSink() as gone:
        pass
    with pytest.raises(OutboundError) as caught:
        await outbound.post(f"{gone.url}/hook")
    assert caught.value.reason == "connection refused"


# -- TLS to a pinned address -----------------------------------------------------------------


class _TlsServer:
    """HTTPS on 127.0.0.1 with a self-signed certificate for `name`; records the SNI name
    and the Host header of what it serves."""

    def __init__(self, cert: Path, key: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.sni: list[str | None] = []
        self.hosts: list[str] = []
        context.sni_callback = lambda sock, name, ctx: self.sni.append(name)  # type: ignore[assignment,func-returns-value]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hosts.append(self.headers["Host"])
                self.send_response(200)
                self.send_header("Content-Length", "6")
                self.end_headers()
                self.wfile.write(b"tls ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[_TlsServer, ssl.SSLContext]]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = _certificate(tmp_path, "localhost")
    server = _TlsServer(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        yield server, trust
    finally:
        server.close()


async def test_tls_to_the_pinned_address_keeps_sni_the_host_header_and_verification(
    tls_server: tuple[_TlsServer, ssl.SSLContext], tmp_path: Path
) -> None:
    server, trust = tls_server
    response = await outbound.request("GET", f"https://localhost:{server.port}/x", verify=trust)
    assert (response.status, response.body) == (200, b"tls ok")
    assert server.sni == ["localhost"] and server.hosts == [f"localhost:{server.port}"]

    # Verification stays on: a certificate for another name is refused.
    other, _ = _certificate(tmp_path, "other.parley.test")
    with pytest.raises(OutboundError) as caught:
        await outbound.request(
            "GET", f"https://localhost:{server.port}/x", verify=ssl.create_default_context(cafile=str(other))
        )
    assert caught.value.reason == "TLS certificate not valid"


# -- what reaches the API client -------------------------------------------------------------


async def test_a_receivers_body_never_reaches_the_api_client(
    tenant: Tenant, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "webhook_max_attempts", 1)
    monkeypatch.setattr(settings, "webhook_disable_after", 1)
    endpoint = await register(tenant, f"{http_sink.url}/hook", ["CONTACT_CREATED"])
    http_sink.respond_with(default_status=500, body=f"Traceback ... {SECRET}")
    await tenant.contact(name="Leaky")
    assert await drain(tenant.workspace.id) == ["failed"]
    raw = (await tenant.api.raw(LOG_QUERY, {"id": endpoint.id}, token=tenant.owner_token)).text
    assert SECRET not in raw and "Traceback" not in raw
    log = await delivery_log(tenant, endpoint)
    [delivery] = log["deliveries"]
    assert (delivery["lastStatusCode"], delivery["lastError"]) == (500, "HTTP 500")
    assert [a["error"] for a in delivery["attemptLog"]] == ["HTTP 500"]
    assert delivery["job"]["error"] == "Attempt 1: HTTP 500"
    assert log["disabledReason"] == "1 failed attempts in a row; the last: HTTP 500"


LOG_QUERY = """query($id: ID!) { node(id: $id) { ... on WebhookEndpoint { disabledReason
  deliveries(first: 10) { edges { node { lastError attemptLog { error } job { error } } } } } } }"""


async def test_a_webhook_redirect_is_reported_and_not_followed(
    tenant: Tenant, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "webhook_max_attempts", 1)
    with HttpSink() as internal:
        endpoint = await register(tenant, f"{http_sink.url}/hook", ["CONTACT_CREATED"])
        http_sink.respond_with(default_status=307, headers={"Location": f"{internal.url}/admin"})
        await tenant.contact(name="Redirected")
        assert await drain(tenant.workspace.id) == ["failed"]
        [delivery] = (await delivery_log(tenant, endpoint))["deliveries"]
        assert delivery["lastError"] == "HTTP 307" and internal.requests == []


async def test_an_endpoint_saved_earlier_is_checked_again_at_every_delivery(
    tenant: Tenant, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saved while loopback was allowed (as a name that later resolves somewhere private
    would be): the delivery resolves it again and refuses to connect."""
    monkeypatch.setattr(settings, "webhook_max_attempts", 1)
    endpoint = await register(tenant, f"http://localhost:{http_sink.port}/hook", ["CONTACT_CREATED"])
    monkeypatch.setattr(settings, "outbound_allow_private_networks", False)
    await tenant.contact(name="Rebound")
    assert await drain(tenant.workspace.id) == ["failed"]
    [delivery] = (await delivery_log(tenant, endpoint))["deliveries"]
    assert (delivery["lastStatusCode"], delivery["lastError"]) == (None, "address refused: 127.0.0.1 is loopback")
    assert http_sink.requests == []


async def test_saving_a_url_that_names_a_private_address_is_a_user_error(tenant: Tenant, private_refused: None) -> None:
    payload = (
        await tenant.api(
            CREATE_ENDPOINT,
            {"i": {"url": "https://[::ffff:10.0.0.5]/hook", "eventTypes": ["CONTACT_CREATED"]}},
            token=tenant.owner_token,
        )
    )["createWebhookEndpoint"]
    assert payload["userErrors"] == [
        {
            "field": ["url"],
            "code": "INVALID",
            "message": "url must not point at ::ffff:a00:5: it is private (embeds 10.0.0.5).",
        }
    ]
    create = (
        "mutation($i: CreateChannelInput!) { createChannel(input: $i) { "
        "channel { id } userErrors { field code message } } }"
    )
    for url, message in (
        ("https://169.254.169.254/latest/meta-data", "gatewayUrl must not point at 169.254.169.254: it is link-local."),
        (
            "https://[64:ff9b::7f00:1]/send",
            "gatewayUrl must not point at 64:ff9b::7f00:1: it is loopback (embeds 127.0.0.1).",
        ),
        ("file:///etc/passwd", "gatewayUrl must be an http(s) URL."),
    ):
        made = (
            await tenant.api(
                create, {"i": {"kind": "SMS", "name": "Texts", "gatewayUrl": url}}, token=tenant.owner_token
            )
        )["createChannel"]
        assert made["channel"] is None and made["userErrors"] == [
            {"field": ["gatewayUrl"], "code": "INVALID", "message": message}
        ]


async def test_a_gateways_body_is_not_kept_and_private_gateways_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, app: Any, http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, conversation_id = await subscribed_sms_conversation(client, tenant, http_sink)
    rejected = await reply(tenant, conversation_id, "One")
    http_sink.respond_with([400], body=SECRET)
    assert await deliver_message(job_ctx(app), rejected) == "failed"
    assert (await Message.get(id=rejected)).delivery_error == "The gateway answered HTTP 400."

    monkeypatch.setattr(settings, "outbound_allow_private_networks", False)
    refused = await reply(tenant, conversation_id, "Two")
    assert await deliver_message(job_ctx(app), refused) == "failed"  # no retry: it would be refused again
    message = await Message.get(id=refused)
    assert message.delivery_state is DeliveryState.FAILED
    assert message.delivery_error == "The gateway could not be reached: address refused: 127.0.0.1 is loopback."
    assert len(http_sink.requests) == 1
