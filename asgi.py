"""The Starlette app: its routes (/graphql over HTTP and WebSocket, /healthz, /readyz,
/metrics, the inbound channel hooks, export downloads, attachment uploads and downloads, the
/demo/ pages), middleware and lifespan.

    uvicorn asgi:app

What /graphql does is the GraphQL runtime's (runtime/http.py and the rest of runtime/).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from tortoise import connections
from tortoise.contrib.starlette import RegisterTortoise

from core import keys
from core.config import settings
from core.db import pool_usage, tortoise_config
from core.errors import (
    Code,
    DatabaseBusy,
    is_statement_timeout,
    new_request_id,
    request_id_var,
    statement_timeout_message,
)
from core.hub import Hub
from core.limits import BodyLimitMiddleware, WebSocketMessageLimitMiddleware
from core.logs import setup_logging, start_log_fields
from core.metrics import exposition, forget_process
from core.principal_cache import principal_cache
from core.queue import create_queue
from core.ratelimit import rate_limits
from core.signing import same_secret
from core.tracing import SpanKind, setup_tracing, shutdown_tracing, span
from core.tracing import enabled as tracing_enabled
from resolvers.attachments import download_endpoint as attachment_endpoint
from resolvers.attachments import upload_endpoint
from resolvers.exports import download_endpoint
from resolvers.inbound import webhook_endpoint
from resolvers.short_links import redirect_endpoint
from runtime.demo_pages import demo_routes
from runtime.http import ParleyGraphQL
from runtime.socket_guard import socket_guard
from runtime.websocket import SERVER_SEND
from schema import schema

log = logging.getLogger("parley")

GC_YOUNG_THRESHOLD = 20_000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Takes a sane inbound X-Request-Id or makes one: every log line of the request
    (core/logs.py) and its masked errors carry it, and the response echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # The server's own send, for frames runtime/websocket.py writes to an accepted socket:
            # the wrappers between here and the endpoint only act on HTTP responses.
            scope[SERVER_SEND] = send
        headers = dict(scope.get("headers") or [])
        inbound = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = inbound if _REQUEST_ID.match(inbound) else new_request_id()
        token = request_id_var.set(request_id)
        start_log_fields()
        # An HTTP request's span (when tracing is on), continuing the caller's traceparent.
        traced = (
            span(
                f"HTTP {scope['method']}",
                kind=SpanKind.SERVER,
                carrier={k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()},
                **{"http.request.method": scope["method"], "url.path": scope["path"], "parley.request_id": request_id},
            )
            if scope["type"] == "http" and tracing_enabled()
            else contextlib.nullcontext()
        )

        with traced as current:

            async def send_with_id(message: Mapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                    }
                    if current is not None:
                        current.set_attribute("http.response.status_code", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            except ClientDisconnect:
                # The client went away before its request body arrived: nobody to answer.
                log.info("client disconnected before sending its request (request %s)", request_id)
            finally:
                request_id_var.reset(token)


async def database_busy(request: Request, exc: Exception) -> Response:
    """Routes other than /graphql (inbound hooks, downloads): 503 rather than 500."""
    log.warning("%s (%s %s, request %s)", exc, request.method, request.url.path, request_id_var.get())
    return JSONResponse(
        {"error": "The database is busy and nothing was written; try again in a moment.", "code": Code.BUSY.value},
        status_code=503,
        headers={"retry-after": str(DatabaseBusy.retry_after_seconds)},
    )


async def server_error(request: Request, exc: Exception) -> Response:
    """What escaped everything else (outside a resolver: authentication, the inbound hooks,
    downloads): a statement stopped by the statement timeout says so (503, code TIMEOUT);
    anything else is the plain 500 (logged by uvicorn)."""
    if is_statement_timeout(exc):
        log.warning("statement timeout (%s %s, request %s)", request.method, request.url.path, request_id_var.get())
        return JSONResponse({"error": statement_timeout_message(), "code": Code.TIMEOUT.value}, status_code=503)
    return PlainTextResponse("Internal Server Error", status_code=500)


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    checks: dict[str, str] = {}
    try:
        await connections.get("default").execute_query("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await request.app.state.hub.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    checks["pubsub"] = "ok" if request.app.state.hub.connected.is_set() else "connecting"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


def metrics_refusal(authorization: str | None) -> Response | None:
    """Why a scrape of /metrics is refused, or None: with METRICS_TOKEN set, its bearer
    token is required (401 otherwise); unset, /metrics is open in dev and absent in prod."""
    token = settings.metrics_token
    if not token:
        return None if settings.is_dev else PlainTextResponse("Not Found", status_code=404)
    scheme, _, credential = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and same_secret(token, credential.strip()):
        return None
    return PlainTextResponse("Unauthorized", status_code=401, headers={"www-authenticate": "Bearer"})


async def metrics(request: Request) -> Response:
    refused = metrics_refusal(request.headers.get("authorization"))
    if refused is not None:
        return refused
    hub: Hub = request.app.state.hub
    # prometheus_client's: request latency, errors, jobs (every process's with a shared
    # PROMETHEUS_MULTIPROC_DIR). Then this process's hub, database pool and socket guard,
    # and the queue.
    text, content_type = exposition()
    in_use, open_connections, most = pool_usage()
    lines = [
        "# HELP parley_job_queue_depth Jobs waiting in the queue (queued and deferred).",
        "# TYPE parley_job_queue_depth gauge",
        f"parley_job_queue_depth {await hub.redis.zcard(keys.arq_queue())}",
        "# TYPE parley_hub_subscribers gauge",
        f"parley_hub_subscribers {hub.subscriber_count()}",
        "# TYPE parley_hub_channels gauge",
        f"parley_hub_channels {len(hub.channels)}",
        "# TYPE parley_hub_reconnects_total counter",
        f"parley_hub_reconnects_total {hub.reconnects}",
        "# TYPE parley_hub_dropped_subscribers_total counter",
        f"parley_hub_dropped_subscribers_total {hub.dropped_subscribers}",
        "# TYPE parley_hub_direct_deliveries_total counter",
        f"parley_hub_direct_deliveries_total {hub.direct_deliveries}",
        "# HELP parley_db_connections_in_use Database connections running a statement or transaction.",
        "# TYPE parley_db_connections_in_use gauge",
        f"parley_db_connections_in_use {in_use}",
        "# TYPE parley_db_connections_open gauge",
        f"parley_db_connections_open {open_connections}",
        "# TYPE parley_db_connections_max gauge",
        f"parley_db_connections_max {most}",
        "# TYPE parley_sockets_revoked_total counter",
        f"parley_sockets_revoked_total {socket_guard.closed_sockets}",
        "# TYPE parley_socket_credential_checks_total counter",
        f"parley_socket_credential_checks_total {socket_guard.checks}",
    ]
    return PlainTextResponse(text + "\n".join(lines) + "\n", media_type=content_type)


def create_app() -> Starlette:
    setup_logging()
    setup_tracing()
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: run `make run`, which starts a private Redis, or point it at yours.")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub = Hub(settings.redis_url or "", queue_size=settings.subscriber_queue_size)
        app.state.hub = hub
        async with RegisterTortoise(app, config=tortoise_config()):
            app.state.jobs = await create_queue(settings.redis_url or "")
            await hub.start()
            rate_limits.use(hub.redis)
            await principal_cache.listen(hub)
            principal_cache.watchers.append(socket_guard.changed)
            guard = asyncio.get_running_loop().create_task(socket_guard.run())
            # What startup built lives as long as the process: the collector need not walk
            # it again and again; and a young generation of 700 objects (the default) made
            # the collector run every few deliveries: 9-15 % of a fan-out's CPU.
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            try:
                yield
            finally:
                guard.cancel()
                principal_cache.watchers.remove(socket_guard.changed)
                principal_cache.stop()
                await hub.stop()
                await app.state.jobs.aclose()
                shutdown_tracing()
                forget_process()

    graphql = ParleyGraphQL(schema)
    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/hooks/channels/{public_key}/inbound", webhook_endpoint, methods=["POST"]),
            Route("/exports/{workspace_id:int}/{job_id:int}", download_endpoint, methods=["GET"]),
            Route("/uploads/{workspace_id:int}/{attachment_id:int}", upload_endpoint, methods=["PUT"]),
            Route("/attachments/{workspace_id:int}/{attachment_id:int}", attachment_endpoint, methods=["GET"]),
            Route("/l/{code}", redirect_endpoint, methods=["GET", "HEAD"]),
            *demo_routes(),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins,
                allow_methods=["GET", "POST", "PUT"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id"],
            ),
            Middleware(BodyLimitMiddleware),
            Middleware(WebSocketMessageLimitMiddleware),
        ],
        exception_handlers={DatabaseBusy: database_busy, Exception: server_error},
        lifespan=lifespan,
    )


app = create_app()
