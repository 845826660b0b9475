"""Real servers on 127.0.0.1 for tests that send things out: an SMTP server that keeps what
it receives, and an HTTP server that records requests and answers as told.

    with SmtpSink() as sink:                       # or the `smtp_sink` fixture
        await send_mail(Mail(...))                 # with SMTP_HOST/SMTP_PORT pointing at it
        [mail] = await sink.wait_for(1)
        mail.message["Subject"], mail.text, mail.envelope_to

    with HttpSink() as sink:                       # or the `http_sink` fixture
        sink.respond_with([500, 500])              # two failures, then 200s
        ...POST to sink.url + "/hooks"...
        requests = await sink.wait_for(3)

Each runs in a thread of its own with its own event loop, so it answers even while the
test blocks its loop (waiting on a subprocess, say), and code in other processes reaches
it on its port like any server.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from core.embedded_redis import free_port

T = TypeVar("T")


async def _wait_for(items: list[T], lock: threading.Lock, count: int, timeout: float, what: str) -> list[T]:
    deadline = time.monotonic() + timeout
    while True:
        with lock:
            if len(items) >= count:
                return list(items)
            got = len(items)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"expected {count} {what} within {timeout}s, received {got}")
        await asyncio.sleep(0.01)


# -- SMTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        """The plain-text body, decoded, with the wire's CRLF line ends turned back into \\n."""
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None, "no text/plain part"
        return str(body.get_content()).replace("\r\n", "\n")


class _Controller(Controller):
    def factory(self) -> SMTP:
        # Hand the server its loop: left to itself, aiosmtpd looks one up inside
        # warnings.catch_warnings(), which is not thread-safe and races pytest's own.
        return SMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that accepts every message and keeps it, parsed."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._failures: list[str] = []
        self._controller = _Controller(
            self, hostname=self.host, port=self.port, server_hostname="smtp-sink.localhost", ident="SmtpSink"
        )

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        """For a server or worker subprocess: send mail here."""
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_TLS": "none"}

    def fail_next(self, count: int = 1, reply: str = "451 4.3.0 Try again later") -> None:
        """Refuse the next `count` messages with `reply` (after their DATA)."""
        with self._lock:
            self._failures.extend([reply] * count)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    async def wait_for(self, count: int = 1, timeout: float = 10) -> list[ReceivedMail]:
        """Every message received so far, once there are at least `count`."""
        return await _wait_for(self.messages, self._lock, count, timeout, "messages")

    # aiosmtpd handler hook, run on the server's thread.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
            raw = envelope.original_content or b""
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(
                ReceivedMail(
                    envelope_from=envelope.mail_from or "", envelope_to=list(envelope.rcpt_tos), message=message
                )
            )
        return "250 2.0.0 Message accepted"


# -- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


class _Server(ThreadingHTTPServer):
    sink: HttpSink


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect
    timeout = 5  # an idle keep-alive connection ends, so its thread does too

    def _handle(self) -> None:
        body = self._read_body()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        response = self.server.sink._record(RecordedRequest(self.command, self.path, headers, body))
        if response.delay_seconds:
            time.sleep(response.delay_seconds)
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except ConnectionError:  # the client gave up waiting (a timeout test)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpSink:
    """An HTTP/1.1 server on 127.0.0.1 that records every request and answers 200 with an
    empty body, unless told otherwise with `respond_with`."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._queued: list[_Response] = []
        self._default = _Response(200)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        server = _Server((self.host, self.port), _Handler)
        server.sink = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def respond_with(
        self,
        status_codes: Iterable[int] = (),
        *,
        default_status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        """The next requests get `status_codes` in order, the ones after them
        `default_status`; all with this body and these headers, after `delay_seconds`.

            sink.respond_with([500, 500])               # fail twice, then succeed
            sink.respond_with(default_status=503, headers={"Retry-After": "1"})
            sink.respond_with(delay_seconds=3)          # slower than the client's timeout
        """
        data = body.encode() if isinstance(body, str) else body
        hdrs = dict(headers or {})
        with self._lock:
            self._queued = [_Response(code, data, hdrs, delay_seconds) for code in status_codes]
            self._default = _Response(default_status, data, hdrs, delay_seconds)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    async def wait_for(self, count: int = 1, timeout: float = 10) -> list[RecordedRequest]:
        """Every request received so far, once there are at least `count`."""
        return await _wait_for(self.requests, self._lock, count, timeout, "requests")

    def _record(self, request: RecordedRequest) -> _Response:
        with self._lock:
            self.requests.append(request)
            return self._queued.pop(0) if self._queued else self._default
