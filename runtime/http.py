"""The GraphQL HTTP view (and the endpoint of /graphql's WebSocket): Strawberry's ASGI
view, with Parley's context, limits, errors and responses, and a plain path for the
common request.

    graphql = ParleyGraphQL(schema)    # asgi.py: Route and WebSocketRoute "/graphql"

It builds each request's `Context` (authentication, the per-principal rate limit), checks
bodies and documents against the request limits (core/limits.py), answers refusals (429
with Retry-After; a rejected body or document with the status its rejection names),
authenticates graphql-transport-ws's `connection_init`, hands WebSockets to
runtime/websocket.py's handler, and shapes every response: GraphQL-over-HTTP's media type
and 4xx for request errors, the operation's cost in `extensions` on request
(`X-Parley-Cost: 1`), 503/429 with Retry-After for a busy database or a rate limit.

A request may name its document by hash, as Apollo's automatic persisted queries do
(runtime/persisted.py, on both paths below). A subscription over HTTP is refused
(`execute_single`): subscriptions are served over WebSocket only, where the socket guard
watches them.

A JSON POST of one query or mutation whose document is valid takes the plain path
(`_run_plain`): prepared once (runtime/prepared.py), executed by graphql-core's `execute`
with runtime/execution.py's executor, without Strawberry's per-request machinery; the same
data, errors and response as Strawberry's path, which takes every other request
(tests/api/test_http.py compares the two).

Library internals it relies on (strawberry-graphql 0.341.2): `strawberry.asgi.GraphQL`
and the methods overridden here (`run`, `parse_http_body`, `parse_json`, `decode_json`,
`encode_json`, `get_context`, `get_sub_response`, `execute_single`, the request adapter's
`_request` (the Starlette request behind `parse_http_body`'s argument), `on_ws_connect`, `process_result`,
`create_response`, `render_graphql_ide` and the `graphql_ide_html` text it patches,
`graphql_transport_ws_handler_class`), `strawberry.http.process_result`,
`strawberry.execution.is_awaitable.optimized_is_awaitable`, the schema's
`process_errors` and `execution_context_class`; graphql-core 3.3.2's `execute` (with
`executor_class` and `is_awaitable`) and `ExecutionResult`.
"""

from __future__ import annotations

import json
from time import perf_counter
from typing import Any

import orjson
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError, OperationType, execute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from core.client_ip import client_ip
from core.config import settings
from core.context import Context
from core.errors import Code, DatabaseBusy, MaskUnexpectedErrors, PublicError, RateLimited, request_id_var
from core.hub import Hub
from core.limits import (
    BodyTooLarge,
    RequestRejected,
    TooManySockets,
    check_document,
    decode_json_body,
    principal_key,
    sockets,
)
from core.logs import log_fields
from core.metrics import count_errors, observe_request
from core.ratelimit import rate_limits
from core.tracing import describe_operation, span
from resolvers.auth import authenticate
from runtime.persisted import cache_headers, hash_only_get, persisted_hash, persisted_query, register
from runtime.prepared import ParleySchema
from runtime.websocket import SharedFrames

GRAPHQL_RESPONSE = "application/graphql-response+json"
# A request with `X-Parley-Cost: 1` gets its operation's cost in the response's
# extensions: {"cost": {"requested": 123, "budget": 10000}} (core/cost.py).
COST_HEADER = "x-parley-cost"
SUBSCRIPTIONS_OVER_WEBSOCKET = (
    "Subscriptions are served over WebSocket only (graphql-transport-ws at /graphql), not over HTTP: "
    "multipart/mixed and text/event-stream streams are not offered."
)


def _accepts_graphql_response(request: Request | WebSocket) -> bool:
    return GRAPHQL_RESPONSE in request.headers.get("accept", "")


def _is_request_error(result: ExecutionResult) -> bool:
    """Parse and validation failures: execution never started, so no error has a path."""
    return result.data is None and bool(result.errors) and all(e.path is None for e in result.errors)


_MASK = MaskUnexpectedErrors()


class ParleyGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = SharedFrames
    plain_path = True  # `_run_plain` for the requests it takes (tests compare it with Strawberry's path)

    def __init__(self, schema: ParleySchema, **kwargs: Any) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.is_dev else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=settings.allowed_origins,
            max_subscriptions_per_connection=settings.max_subscriptions_per_socket,
            # Files (the GraphQL multipart request spec). Not a CSRF opening: a page elsewhere
            # can post a form, but not with our bearer token, and nothing here reads cookies.
            multipart_uploads_enabled=True,
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
        if request.content_type and request.content_type.partition(";")[0].strip().lower() == "multipart/form-data":
            await _parse_form(request._request)
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):  # a batch: Strawberry refused it (batching is off)
            data.query = await self._document(request._request, data.extensions, data.query)
        check_document(getattr(data, "query", None))
        if isinstance(getattr(data, "operation_name", None), str):
            log_fields()["operation"] = data.operation_name
        return data

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if type(request) is not Request:  # a WebSocket, for as long as it is open
            return await self._answer(request, context, root_value)
        started, outcome = perf_counter(), "refused"
        with span("GraphQL") as traced:
            try:
                response = await self._answer(request, context, root_value)
                outcome = _outcome(response)
                return response
            finally:
                fields = log_fields()
                observe_request(
                    fields.get("operation_type"),
                    fields.get("operation"),
                    fields.get("principal"),
                    outcome,
                    perf_counter() - started,
                )
                if traced is not None:
                    describe_operation(traced, fields.get("operation_type"), fields.get("operation"), outcome)

    async def _answer(self, request: Any, context: Any, root_value: Any) -> Any:
        try:
            if (
                self.plain_path
                and context is UNSET
                and root_value is UNSET
                and type(request) is Request
                and request.method == "POST"
            ):
                response = await self._run_plain(request)
                if response is not None:
                    return response
            return await super().run(request, context, root_value)
        except RateLimited as refused:  # by get_context: the whole request, before anything ran
            count_errors([refused.formatted])
            return self._refused(request, refused)
        except BodyTooLarge:
            raise  # answered by BodyLimitMiddleware, which closes the connection: the rest is never read
        except RequestRejected as exc:
            count_errors(exc.body()["errors"])
            media_type = GRAPHQL_RESPONSE if _accepts_graphql_response(request) else "application/json"
            return JSONResponse(exc.body(), status_code=exc.status, media_type=media_type, headers=exc.headers)

    def _refused(self, request: Request, refused: RateLimited) -> Response:
        media_type = GRAPHQL_RESPONSE if _accepts_graphql_response(request) else "application/json"
        return Response(
            self.encode_json({"errors": [refused.formatted]}),
            status_code=429,
            media_type=f"{media_type}; charset=utf-8" if media_type == GRAPHQL_RESPONSE else media_type,
            headers={"retry-after": str(refused.retry_after)},
        )

    async def _run_plain(self, request: Request) -> Response | None:
        """A JSON POST of one query or mutation whose document is valid, executed without
        Strawberry's per-request machinery (its view's request adapters, the execution
        context and four lifecycle hooks of each extension: a quarter of a list page's
        time); the same execution, errors and response as its path, which takes every
        other request (None), errors of the request itself included."""
        headers = request.headers
        if headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            return None
        data = decode_json_body(await request.body())  # RequestRejected: answered as Strawberry's path does
        if type(data) is not dict:
            return None
        extensions = data.get("extensions")
        if extensions is not None and (type(extensions) is not dict or extensions.keys() != {"persistedQuery"}):
            return None
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if extensions is not None:
            query = await self._document(request, extensions, query)
        if (
            type(query) is not str
            or (variables is not None and type(variables) is not dict)
            or (name is not None and type(name) is not str)
        ):
            return None
        check_document(query)
        if name is not None:
            log_fields()["operation"] = name
        schema: ParleySchema = self.schema  # type: ignore[assignment]
        prepared = schema.prepare(query)
        operation = None if prepared is None else prepared.operation(name)
        if operation is None or operation is OperationType.SUBSCRIPTION:
            return None
        log_fields()["operation_type"] = operation.value
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        try:
            result = execute(
                schema._schema,
                prepared.document,
                context_value=context,
                variable_values=variables,
                operation_name=name,
                executor_class=schema.execution_context_class,
                is_awaitable=optimized_is_awaitable,
            )
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

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Any,
        context: Context,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, but a subscription over HTTP is refused (a request error, code
        NOT_ALLOWED): subscriptions are served over WebSocket only, where the socket guard
        (runtime/socket_guard.py) closes them when their credentials change. (Strawberry
        would run it as a query; HTTP streams, multipart/mixed or text/event-stream, are
        not offered: no subscription protocol but graphql-transport-ws is enabled.)"""
        query = request_data.query
        schema: ParleySchema = self.schema  # type: ignore[assignment]
        prepared = schema.prepare(query) if isinstance(query, str) else None
        operation = None if prepared is None else prepared.operation(request_data.operation_name)
        if operation is not None:
            log_fields()["operation_type"] = operation.value
        if operation is OperationType.SUBSCRIPTION:
            return ExecutionResult(data=None, errors=[PublicError(SUBSCRIPTIONS_OVER_WEBSOCKET, Code.NOT_ALLOWED)])
        return await super().execute_single(request, request_adapter, sub_response, context, root_value, request_data)  # type: ignore[no-any-return]

    async def _document(self, request: Request, extensions: object, query: object) -> Any:
        """The document a request runs: its `query`, or the automatic persisted query its
        extensions name (runtime/persisted.py); a valid document sent with its hash is kept."""
        if persisted_hash(extensions) is None:
            return query
        redis = request.app.state.hub.redis
        document = await persisted_query(redis, extensions, query)
        if isinstance(query, str):
            check_document(query)
            schema: ParleySchema = self.schema  # type: ignore[assignment]
            if schema.prepare(query) is not None:
                await register(redis, extensions, query)
        return document

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
        if principal is not None:
            fields = log_fields()
            fields["principal"], fields["workspace"] = principal.kind.value, principal.workspace_id
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
            if hash_only_get(request.method, request.query_params):
                # create_response says how long its answer may be cached, and by whom.
                response.parley_cache_private = authorization is not None
            if request.headers.get(COST_HEADER) == "1":
                # The executor fills it (runtime/execution.py), create_response reports it.
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
        context.socket_holder = holder  # released when the socket closes (runtime/fanout.py)
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
        errors = response_data.get("errors") if isinstance(response_data, dict) else None
        if errors:
            count_errors(errors)
            response.parley_errors = True  # type: ignore[attr-defined]
        private = getattr(sub_response, "parley_cache_private", None)
        if private is not None:
            response.headers.update(cache_headers(private=private, failed=bool(errors)))
        media_type = getattr(sub_response, "parley_media_type", "application/json")
        response.headers["content-type"] = (
            f"{media_type}; charset=utf-8" if media_type == GRAPHQL_RESPONSE else media_type
        )
        if isinstance(response_data, dict) and "data" not in response_data and media_type == GRAPHQL_RESPONSE:
            response.status_code = 400
        retry = _retry_later(response_data) if isinstance(response_data, dict) else None
        if retry is not None:
            response.status_code, seconds = retry
            response.headers["retry-after"] = str(seconds)
        return response


async def _parse_form(request: Request) -> None:
    """A multipart request's parts, parsed before Strawberry reads them (Starlette keeps the
    result): at most ATTACHMENTS_PER_MESSAGE files, spooled to disk as they stream in, and
    the `operations` and `map` fields no larger than a JSON body may be. The whole body is
    capped by BodyLimitMiddleware (ATTACHMENT_MAX_BYTES_CEILING)."""
    try:
        await request.form(
            max_files=settings.attachments_per_message, max_fields=2, max_part_size=settings.max_body_bytes
        )
    except HTTPException as exc:
        raise RequestRejected(f"The multipart body was refused: {exc.detail}") from None


def _outcome(response: Response) -> str:
    """ok; error: GraphQL errors in a 2xx response; refused: a 4xx or 5xx response."""
    if response.status_code >= 400:
        return "refused"
    return "error" if getattr(response, "parley_errors", False) else "ok"


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
