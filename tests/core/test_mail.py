"""core.mail against a real SMTP server on loopback (tests/loopback.py's SmtpSink), and the
HttpSink's programmable answers that webhook retry tests rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.config import settings
from core.embedded_redis import free_port
from core.mail import Mail, MailError, MailNotConfigured, send_mail
from tests.conftest import ROOT, SmtpSettings
from tests.loopback import HttpSink, SmtpSink

TEXT = "Bonjour Ada,\n\nÇa marche — 你好, naïve café ✓.\n"


async def test_send_mail_delivers_a_utf8_message(smtp_settings: SmtpSettings) -> None:
    message_id = await send_mail(
        Mail(
            to=["Ada Lovelace <ada@example.com>", "bob@example.com"],
            subject="Réponse à votre question ✓",
            text=TEXT,
            reply_to="Support <support+c_42@parley.localhost>",
            in_reply_to="<original@example.com>",
            references=["<first@example.com>", "<original@example.com>"],
            headers={"X-Parley-Conversation": "c_42", "Auto-Submitted": "auto-generated"},
        )
    )

    [mail] = await smtp_settings.sink.wait_for(1)
    assert mail.envelope_from == "no-reply@parley.localhost"
    assert mail.envelope_to == ["ada@example.com", "bob@example.com"]
    msg = mail.message
    assert msg["Message-ID"] == message_id
    assert message_id.startswith("<") and message_id.endswith("@parley.localhost>")
    assert msg["From"] == settings.mail_from
    assert msg["To"] == "Ada Lovelace <ada@example.com>, bob@example.com"
    assert msg["Subject"] == "Réponse à votre question ✓"
    assert msg["Reply-To"] == "Support <support+c_42@parley.localhost>"
    assert msg["In-Reply-To"] == "<original@example.com>"
    assert msg["References"] == "<first@example.com> <original@example.com>"
    assert msg["X-Parley-Conversation"] == "c_42"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"].datetime.tzinfo is not None
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert mail.text == TEXT


async def test_from_addr_sets_the_sender_and_the_message_id_domain(smtp_settings: SmtpSettings) -> None:
    message_id = await send_mail(
        Mail(to=["ada@example.com"], subject="Hi", text="Hi", from_addr="Acme Support <help@acme.example>")
    )

    [mail] = await smtp_settings.sink.wait_for(1)
    assert mail.envelope_from == "help@acme.example"
    assert mail.message["From"] == "Acme Support <help@acme.example>"
    assert message_id.endswith("@acme.example>")


@pytest.mark.parametrize(
    ("field", "override"),
    [
        ("subject", {"subject": "Hello\r\nBcc: victim@example.com"}),
        ("subject", {"subject": "Hello\nBcc: victim@example.com"}),
        ("subject", {"subject": "Hello\u2028Bcc: victim@example.com"}),
        ("to", {"to": ["ada@example.com\r\nBcc: victim@example.com"]}),
        ("to", {"to": ["ada@example.com, victim@example.com"]}),
        ("to", {"to": []}),
        ("from_addr", {"from_addr": "a@example.com\nBcc: victim@example.com"}),
        ("reply_to", {"reply_to": "a@example.com\rBcc: victim@example.com"}),
        ("in_reply_to", {"in_reply_to": "<x@example.com>\r\nBcc: victim@example.com"}),
        ("references", {"references": ["<x@example.com>", "<y@example.com>\nBcc: victim@example.com"]}),
        ("headers", {"headers": {"X-Tag": "a\r\nBcc: victim@example.com"}}),
        ("headers", {"headers": {"X-Tag\r\nBcc": "victim@example.com"}}),
        ("headers", {"headers": {"Bcc": "victim@example.com"}}),
    ],
)
async def test_header_injection_is_refused(smtp_settings: SmtpSettings, field: str, override: dict[str, Any]) -> None:
    args: dict[str, Any] = {"to": ["ada@example.com"], "subject": "Hello", "text": "Hi", **override}
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        await send_mail(Mail(**args))
    assert smtp_settings.sink.messages == []


async def test_no_smtp_host_means_mail_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "smtp_host", None)
    with pytest.raises(MailNotConfigured, match="SMTP_HOST"):
        await send_mail(Mail(to=["ada@example.com"], subject="Hi", text="Hi"))


async def test_unreachable_server_is_a_mail_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
    monkeypatch.setattr(settings, "smtp_port", port)
    monkeypatch.setattr(settings, "smtp_tls", "none")
    with pytest.raises(MailError, match=f"127.0.0.1:{port}"):
        await send_mail(Mail(to=["ada@example.com"], subject="Hi", text="Hi"))


async def test_a_refused_message_is_a_mail_error(smtp_settings: SmtpSettings) -> None:
    smtp_settings.sink.fail_next(1)
    with pytest.raises(MailError, match="Try again later"):
        await send_mail(Mail(to=["ada@example.com"], subject="Hi", text="first"))
    await send_mail(Mail(to=["ada@example.com"], subject="Hi", text="second"))

    [mail] = await smtp_settings.sink.wait_for(1)
    assert mail.text == "second\n"


async def test_a_subprocess_sends_to_the_sink_through_env(smtp_settings: SmtpSettings) -> None:
    # The test blocks its own loop here; the sink answers from its thread all the same.
    code = (
        "import asyncio; from core.mail import Mail, send_mail; "
        "print(asyncio.run(send_mail(Mail(to=['ada@example.com'], subject='From afar', text='hi'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **smtp_settings.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

    [mail] = await smtp_settings.sink.wait_for(1)
    assert mail.message["Subject"] == "From afar"
    assert mail.message["Message-ID"] == done.stdout.strip()


async def test_smtp_sink_wait_for_times_out_with_what_it_got(smtp_sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError, match="expected 1 messages within 0.1s, received 0"):
        await smtp_sink.wait_for(1, timeout=0.1)


async def test_http_sink_answers_as_programmed_and_records_requests(http_sink: HttpSink) -> None:
    http_sink.respond_with([500, 503], body='{"ok": true}', headers={"Content-Type": "application/json"})
    async with httpx.AsyncClient(base_url=http_sink.url) as client:
        statuses = [
            (
                await client.post("/hooks/1?try=1", json={"event": "conversation.created"}, headers={"X-Sig": "abc"})
            ).status_code,
            (await client.post("/hooks/1?try=2", json={"event": "conversation.created"})).status_code,
            (await client.post("/hooks/1?try=3", json={"event": "conversation.created"})).status_code,
        ]
        assert statuses == [500, 503, 200]
        last = await client.get("/health")
        assert last.status_code == 200 and last.json() == {"ok": True}

    requests = await http_sink.wait_for(4)
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/hooks/1?try=1"),
        ("POST", "/hooks/1?try=2"),
        ("POST", "/hooks/1?try=3"),
        ("GET", "/health"),
    ]
    assert requests[0].json() == {"event": "conversation.created"}
    assert requests[0].headers["x-sig"] == "abc"
    assert requests[0].headers["content-type"] == "application/json"
    assert requests[3].body == b""


async def test_http_sink_reads_chunked_bodies(http_sink: HttpSink) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"hello, "
        yield b"world"

    async with httpx.AsyncClient() as client:
        response = await client.put(f"{http_sink.url}/upload", content=parts())
    assert response.status_code == 200

    [request] = await http_sink.wait_for(1)
    assert request.headers["transfer-encoding"] == "chunked"
    assert request.body == b"hello, world"


async def test_http_sink_can_be_slower_than_the_client(http_sink: HttpSink) -> None:
    http_sink.respond_with(delay_seconds=0.5)
    async with httpx.AsyncClient(timeout=0.1) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{http_sink.url}/slow", content=b"x")
    [request] = await http_sink.wait_for(1)
    assert request.body == b"x"
