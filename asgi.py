"""The Starlette app: /graphql (HTTP and WebSocket), /healthz, /readyz, /metrics.

    uvicorn asgi:app
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, OperationType, execute
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET
from tortoise import connections
from tortoise.contrib.starlette import RegisterTortoise

from core.config import settings
from core.context import Context
from core.db import tortoise_config
from core.client_ip import client_ip
from core.errors import (
    Code,
    DatabaseBusy,
    MaskUnexpectedErrors,
    RateLimited,
    is_statement_timeout,
    new_request_id,
    request_id_var,
    statement_timeout_message,
)
from core.fanout import SERVER_SEND, SharedFrames
from core.hub import Hub
from core.limits import (
    BodyLimitMiddleware,
    BodyTooLarge,
    RequestRejected,
    TooManySockets,
    WebSocketMessageLimitMiddleware,
    check_document,
    decode_json_body,
    principal_key,
    sockets,
)
from core.principal_cache import principal_cache
from core.socket_guard import socket_guard
from core.ratelimit import rate_limits
from core.queue import create_queue
from core.signing import same_secret
from resolvers.auth import authenticate
from resolvers.exports import download_endpoint
from resolvers.inbound import webhook_endpoint
from schema import schema

log = logging.getLogger("parley")

GRAPHQL_RESPONSE = "application/graphql-response+json"
# A request with `X-Parley-Cost: 1` gets its operation's cost in the response's
# extensions: {"cost": {"requested": 123, "budget": 10000}} (core/cost.py).
COST_HEADER = "x-parley-cost"
GC_YOUNG_THRESHOLD = 20_000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Takes a sane inbound X-Request-Id or makes one; logs and masked errors carry it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # The server's own send, for frames core/fanout.py writes to an accepted socket:
            # the wrappers between here and the endpoint only act on HTTP responses.
            scope[SERVER_SEND] = send
        inbound = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = inbound if _REQUEST_ID.match(inbound) else new_request_id()
        token = request_id_var.set(request_id)

        async def send_with_id(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client went away before its request body arrived: nobody to answer.
            log.info("client disconnected before sending its request (request %s)", request_id)
        finally:
            request_id_var.reset(token)


def _accepts_graphql_response(request: Request | WebSocket) -> bool:
    return GRAPHQL_RESPONSE in request.headers.get("accept", "")


def _is_request_error(result: ExecutionResult) -> bool:
    """Parse and validation failures: execution never started, so no error has a path."""
    return result.data is None and bool(result.errors) and all(e.path is None for e in result.errors)


_MASK = MaskUnexpectedErrors()


class ParleyGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = SharedFrames
    plain_path = True  # `_run_plain` for the requests it takes (tests compare it with Strawberry's path)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.is_dev else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=settings.allowed_origins,
            max_subscriptions_per_connection=settings.max_subscriptions_per_socket,
            **kwargs,
        )

    def encode_json(self, data: object) -> str:
        """Responses and WebSocket frames (text: graphql-transport-ws clients expect text
        frames) by orjson; what it refuses (an integer beyond 64 bits) by json."""
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            return super().encode_json(data)  # type: ignore[return-value]

    def parse_json(self, data: str | bytes) -> Any:
        """A request's JSON (an HTTP body, or the `variables` of a GET), checked
        (core/limits.py): RequestRejected names what is wrong with it."""
        return decode_json_body(data)

    def decode_json(self, data: str | bytes) -> object:
        """A WebSocket message, checked the same way; graphql-transport-ws closes the
        socket (4400) on a message that is not JSON, and so on one refused here."""
        try:
            return decode_json_body(data)
        except RequestRejected as exc:
            raise json.JSONDecodeError(exc.message, "", 0) from None

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)
        check_document(getattr(data, "query", None))
        return data

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            if self.plain_path and context is UNSET and root_value is UNSET and type(request) is Request and request.method == "POST":
                response = await self._run_plain(request)
                if response is not None:
                    return response
            return await super().run(request, context, root_value)
        except RateLimited as refused:  # by get_context: the whole request, before anything ran
            return self._refused(request, refused)
        except BodyTooLarge:
            raise  # answered by BodyLimitMiddleware, which closes the connection: the rest is never read
        except RequestRejected as exc:
            media_type = GRAPHQL_RESPONSE if _accepts_graphql_response(request) else "application/json"
            return JSONResponse(exc.body(), status_code=exc.status, media_type=media_type)

    def _refused(self, request: Request, refused: RateLimited) -> Response:
        media_type = GRAPHQL_RESPONSE if _accepts_graphql_response(request) else "application/json"
        return Response(
            self.encode_json({"errors": [refused.formatted]}), status_code=429,
            media_type=f"{media_type}; charset=utf-8" if media_type == GRAPHQL_RESPONSE else media_type,
            headers={"retry-after": str(refused.retry_after)},
        )  # fmt: skip

    async def _run_plain(self, request: Request) -> Response | None:
        """A JSON POST of one query or mutation whose document is valid, executed without
        Strawberry's per-request machinery (its view's request adapters, the execution
        context and four lifecycle hooks of each extension: a quarter of a list page's
        time); the same execution, errors and response as its path, which takes every
        other request (None), errors of the request itself included."""
        headers = request.headers
        if headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            return None
        accept = headers.get("accept", "")
        if "multipart/mixed" in accept or "text/event-stream" in accept:
            return None
        data = decode_json_body(await request.body())  # RequestRejected: answered as Strawberry's path does
        if type(data) is not dict:
            return None
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if type(query) is not str or (variables is not None and type(variables) is not dict) or (name is not None and type(name) is not str):
            return None
        if data.get("extensions") is not None:
            return None
        check_document(query)
        prepared = schema.prepare(query)
        operation = None if prepared is None else prepared.operation(name)
        if operation is None or operation is OperationType.SUBSCRIPTION:
            return None
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        try:
            result = execute(
                schema._schema, prepared.document, context_value=context, variable_values=variables, operation_name=name,
                executor_class=schema.execution_context_class, is_awaitable=optimized_is_awaitable,
            )  # fmt: skip
            if optimized_is_awaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - as Strawberry's path answers it: an error, masked
            result = GraphQLExecutionResult(None, [GraphQLError(str(exc), original_error=exc)])
        finally:
            # Loaders' batch functions keep the context: a reference cycle, which would
            # leave every request's context and loads to the garbage collector.
            context.reset_loaders()
        if result.errors:
            schema.process_errors(result.errors)
            result.errors = _MASK.mask(result.errors)
        return self.create_response(await self.process_result(request, result), sub_response)

    async def render_graphql_ide(self, request: Request) -> Response:
        # GraphiQL sends its headers over HTTP only; hand the Authorization header it keeps
        # in localStorage to graphql-transport-ws's connection_init too, so subscriptions
        # authenticate the same way queries do.
        html = self.graphql_ide_html.replace(
            "subscriptionUrl,\n",
            "subscriptionUrl,\n        wsConnectionParams: () => {\n"
            "          try { const h = JSON.parse(localStorage.getItem('graphiql:headers') || '{}');\n"
            "                return { authorization: h.authorization || h.Authorization }; }\n"
            "          catch (e) { return {}; }\n        },\n",
            1,
        )
        return HTMLResponse(html)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        hub: Hub | None = getattr(request.app.state, "hub", None)
        is_ws = request.scope["type"] == "websocket"
        authorization = None if is_ws else request.headers.get("authorization")
        principal = None if is_ws else await authenticate(authorization)
        address = client_ip(request)
        if not is_ws:
            await rate_limits.hit_request(principal, address)
        context = Context(
            request=request,
            response=response,
            hub=hub,
            principal=principal,
            request_id=request_id_var.get(),
            authorization=authorization,
            authenticate=authenticate,
            client_ip=address,
            jobs=getattr(request.app.state, "jobs", None),
        )
        if not is_ws and response is not None:
            response.parley_media_type = GRAPHQL_RESPONSE if _accepts_graphql_response(request) else "application/json"
            if request.headers.get(COST_HEADER) == "1":
                # The executor fills it (core/execution.py), create_response reports it.
                context.cost_report = response.parley_cost_report = {}
        return context

    async def on_ws_connect(self, context: Context) -> dict[str, object] | None:
        """graphql-transport-ws `connection_init`: {"authorization": "Bearer …"}."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        authorization = params.get("authorization") or params.get("Authorization")
        if authorization is not None and not isinstance(authorization, str):
            raise ConnectionRejectionError({"message": "authorization must be a string"})
        principal = await context.set_credentials(authorization)
        if principal is None:
            raise ConnectionRejectionError({"message": "Invalid or missing credentials"})
        holder = principal_key(principal)
        if not sockets.acquire(holder, limit=settings.max_sockets_per_principal):
            raise TooManySockets(f"At most {settings.max_sockets_per_principal} sockets per user")
        context.socket_holder = holder  # released when the socket closes (core/fanout.py)
        return None

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        data = process_result(result)
        if _is_request_error(result) and _accepts_graphql_response(request):
            # GraphQL-over-HTTP: a request error has no `data` entry and a 4xx status.
            data.pop("data", None)
        return data

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        report = getattr(sub_response, "parley_cost_report", None)
        if report and isinstance(response_data, dict):
            response_data.setdefault("extensions", {})["cost"] = report
        response = super().create_response(response_data, sub_response)
        media_type = getattr(sub_response, "parley_media_type", "application/json")
        response.headers["content-type"] = f"{media_type}; charset=utf-8" if media_type == GRAPHQL_RESPONSE else media_type
        if isinstance(response_data, dict) and "data" not in response_data and media_type == GRAPHQL_RESPONSE:
            response.status_code = 400
        retry = _retry_later(response_data) if isinstance(response_data, dict) else None
        if retry is not None:
            response.status_code, seconds = retry
            response.headers["retry-after"] = str(seconds)
        return response


def _retry_later(response_data: dict[str, Any]) -> tuple[int, int] | None:
    """(HTTP status, Retry-After seconds) of a response that asks the client to come back:
    503 when the database was busy (one such error is enough: nothing was written, and a
    client or a proxy may simply retry), 429 when every error is RATE_LIMITED (a response
    with other errors too says more than "later"). The wait is the longest of theirs."""
    errors = response_data.get("errors")
    if not errors:
        return None
    extensions = [e.get("extensions") or {} for e in errors]
    if any(x.get("code") == Code.BUSY for x in extensions):
        status, codes = 503, {Code.BUSY}
    elif all(x.get("code") == Code.RATE_LIMITED for x in extensions):
        status, codes = 429, {Code.RATE_LIMITED}
    else:
        return None
    waits = [x.get("retryAfter") for x in extensions if x.get("code") in codes]
    return status, max((w for w in waits if isinstance(w, int)), default=DatabaseBusy.retry_after_seconds)


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
    lines = [
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
        "# TYPE parley_sockets_revoked_total counter",
        f"parley_sockets_revoked_total {socket_guard.closed_sockets}",
    ]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


def create_app() -> Starlette:
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

    graphql = ParleyGraphQL()
    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/hooks/channels/{public_key}/inbound", webhook_endpoint, methods=["POST"]),
            Route("/exports/{workspace_id:int}/{job_id:int}", download_endpoint, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(CORSMiddleware, allow_origins=settings.allowed_origins, allow_methods=["GET", "POST"],
                       allow_headers=["authorization", "content-type", "x-request-id"]),
            Middleware(BodyLimitMiddleware),
            Middleware(WebSocketMessageLimitMiddleware),
        ],
        exception_handlers={DatabaseBusy: database_busy, Exception: server_error},
        lifespan=lifespan,
    )


app = create_app()
