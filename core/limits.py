"""What a request may hold, checked before any work is done on it: the body's size (HTTP,
before it is buffered), its encoding and JSON nesting, the document's length and the
variables' size; and a WebSocket message's size.

    >>> decode_json_body(b'{"query": "{ viewer { kind } }"}')
    {'query': '{ viewer { kind } }'}
    >>> decode_json_body(b'{"query": "\\xff"}')
    Traceback (most recent call last):
    ...
    core.limits.RequestRejected: The request body is not valid UTF-8.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import settings
from core.permissions import Principal

BAD_REQUEST = "BAD_REQUEST"
TOO_LARGE = "TOO_LONG"  # the code inputs over a length limit already answer (core/errors.py)


class RequestRejected(Exception):
    """A request refused for what it is, before it runs: answered `status` with a
    GraphQL-style body, `{"errors": [{"message": …, "extensions": {"code": …}}]}`."""

    def __init__(
        self, message: str, *, status: int = 400, code: str = BAD_REQUEST, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"errors": [{"message": self.message, "extensions": {"code": self.code}}]}


class BodyTooLarge(RequestRejected):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes.", status=413, code=TOO_LARGE)


def decode_json_body(data: bytes | str) -> Any:
    """A request body's JSON, or RequestRejected saying what is wrong with it: invalid
    UTF-8, nesting deeper than MAX_JSON_DEPTH, too many values, or no JSON at all."""
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "UTF-8" in reason:
            raise RequestRejected("The request body is not valid UTF-8.") from None
        if "depth limit" in reason:
            raise _too_deep() from None
        raise RequestRejected(f"Unable to parse request body as JSON: {reason}.") from None
    _check_shape(data, decoded)
    return decoded


def check_document(query: object) -> None:
    """A GraphQL document longer than MAX_DOCUMENT_CHARS is refused before it is parsed
    (a string literal is one token: the token limit alone does not bound a text)."""
    if isinstance(query, str) and len(query) > settings.max_document_chars:
        raise RequestRejected(
            f"The GraphQL document has {len(query)} characters; at most {settings.max_document_chars} are allowed.",
            code=TOO_LARGE,
        )


def _too_deep() -> RequestRejected:
    return RequestRejected(f"The request's JSON nests deeper than {settings.max_json_depth} levels.")


def _check_shape(text: bytes | str, decoded: Any) -> None:
    """Depth and number of values, walked only when the text could break either limit:
    JSON needs one bracket a level and about two characters a value."""
    raw = text if isinstance(text, bytes) else text.encode()
    brackets = raw.count(b"{") + raw.count(b"[")
    max_values = settings.max_json_values
    if brackets <= settings.max_json_depth and len(text) <= 2 * max_values:
        return
    values, stack = 0, [(decoded, 1)]
    while stack:
        value, depth = stack.pop()
        values += 1
        if depth > settings.max_json_depth:
            raise _too_deep()
        if type(value) is dict:
            stack.extend((v, depth + 1) for v in value.values())
        elif type(value) is list:
            stack.extend((v, depth + 1) for v in value)
        if values > max_values:
            raise RequestRejected(f"The request's JSON holds more than {max_values} values.", code=TOO_LARGE)


def body_limit(scope: Scope) -> int:
    """MAX_BODY_BYTES; for files (a multipart POST to /graphql, a PUT to a direct-upload
    URL) ATTACHMENT_MAX_BYTES_CEILING, the most any workspace may allow: their own checks
    hold each file to its workspace's limit as it streams in."""
    if scope.get("method") == "PUT" and scope.get("path", "").startswith("/uploads/"):
        return settings.attachment_max_bytes_ceiling
    if scope.get("method") == "POST" and scope.get("path") == "/graphql":
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        if content_type.partition(b";")[0].strip().lower() == b"multipart/form-data":
            return settings.attachment_max_bytes_ceiling
    return settings.max_body_bytes


class BodyLimitMiddleware:
    """HTTP bodies over their limit (`body_limit`) answer 413 before they are buffered: at
    once when Content-Length says so, else as soon as the bytes streamed in (chunked) pass it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, BodyTooLarge(limit))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _refuse(scope, send, exc)


async def _refuse(scope: Scope, send: Send, exc: RequestRejected) -> None:
    # The inbound hooks answer in their own shape (docs/webhooks.md); the rest in GraphQL's.
    if scope.get("path", "").startswith("/hooks/"):
        body: Mapping[str, Any] = {"error": {"code": exc.code, "message": exc.message}}
    else:
        body = exc.body()
    # Connection: close: the rest of the body is never read, so the connection cannot serve
    # another request.
    response = JSONResponse(body, status_code=exc.status, headers={"connection": "close"})
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class WebSocketMessageLimitMiddleware:
    """A WebSocket message over WS_MAX_MESSAGE_BYTES closes the socket with 1009 (message
    too big) before the app reads it. uvicorn refuses frames over its own `--ws-max-size`
    (16 MiB unless set; `parley run` and `parley api` set it to this limit) before assembling them;
    this holds whatever the server was started with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        limit = settings.ws_max_message_bytes

        async def bounded_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                text = message.get("text") or ""
                size = len(message.get("bytes") or b"") + (len(text) if len(text) * 4 <= limit else len(text.encode()))
                if size > limit:
                    await send(
                        {"type": "websocket.close", "code": 1009, "reason": f"Message larger than {limit} bytes"}
                    )
                    return {"type": "websocket.disconnect", "code": 1009}
            return message

        await self.app(scope, bounded_receive, send)


class TooManySockets(Exception):
    """A principal's connection_init past MAX_SOCKETS_PER_PRINCIPAL: the socket is closed
    with 4429 (runtime/websocket.py)."""


class SocketQuota:
    """The WebSockets each principal holds open on this process.

    >>> quota = SocketQuota()
    >>> quota.acquire("agent-7", limit=1), quota.acquire("agent-7", limit=1)
    (True, False)
    """

    def __init__(self) -> None:
        self._open: Counter[Hashable] = Counter()

    def acquire(self, key: Hashable, *, limit: int) -> bool:
        if self._open[key] >= limit:
            return False
        self._open[key] += 1
        return True

    def release(self, key: Hashable) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]


sockets = SocketQuota()


def principal_key(principal: Principal) -> Hashable:
    """Who holds a socket: an agent, an API key or a contact (whatever the session)."""
    return (principal.kind, principal.workspace_id, principal.agent_id, principal.api_key_id, principal.contact_id)
