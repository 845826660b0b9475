"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then spans for each
HTTP request (continuing the caller's `traceparent`), each GraphQL operation over HTTP, each
operation over a WebSocket (a subscription's span lasts as long as it does) and each job go
to that OTLP/HTTP collector (`<endpoint>/v1/traces`, protobuf), and within any of those
spans, one for each SQL statement (Tortoise's clients, PostgreSQL and
SQLite alike) and each Redis command or pipeline (redis-py), and one for each outbound HTTP
request (core/outbound.py makes it with `span`).

SQL and Redis spans carry the statement, never a value: SQL values are bound parameters
(not in the text) and any literal in the text becomes `?`; a Redis command's arguments
(keys included) all become `?`. Outside a traced request or job (the worker polling its
queue, the hub listening) no span is made.

    from core.tracing import setup_tracing, span
    setup_tracing()                                  # asgi.py's lifespan, the worker's startup
    with span("job send_campaign", kind=SpanKind.CONSUMER, **{"parley.job.id": job_id}) as s:
        ...                                          # s is None when tracing is off

Off, `span` is a null context: nothing is created on the request path.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

from core.config import settings

__all__ = ["SpanKind", "describe_operation", "enabled", "sanitized", "setup_tracing", "shutdown_tracing", "span"]

_provider: Any = None
# (class, attribute, original) of every method wrapped by `_instrument`, for `shutdown_tracing`.
_patched: list[tuple[type, str, Any]] = []
# Inside a SQL span: a client method calling another makes no second one.
_in_statement: ContextVar[bool] = ContextVar("parley_in_statement", default=False)

# Tortoise's client methods that send statements (each backend's own, and its transaction's).
SQL_METHODS = ("execute_insert", "execute_query", "execute_query_dict", "execute_many", "execute_script")
# Longest statement text kept on a span.
MAX_STATEMENT = 2000
# A quoted string, or a number standing alone (not `$1`, not part of a name like `t1`).
_LITERAL = re.compile(r"'(?:[^']|'')*'|(?<![\w$.])\d+(?:\.\d+)?(?![\w.])")


def enabled() -> bool:
    return _provider is not None


def setup_tracing() -> None:
    """Starts exporting spans when OTEL_EXPORTER_OTLP_ENDPOINT is set (once a process)."""
    global _provider
    if _provider is not None or not settings.otel_exporter_otlp_endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": settings.otel_service_name, "service.instance.id": settings.instance_id}
    )
    provider = TracerProvider(resource=resource)
    endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _provider = provider
    _instrument()


def shutdown_tracing() -> None:
    """Sends the spans still buffered (at the process's end)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
    while _patched:
        owner, name, original = _patched.pop()
        setattr(owner, name, original)


@contextlib.contextmanager
def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, carrier: Mapping[str, str] | None = None, **attributes: Any
) -> Iterator[Span | None]:
    """A span around the block (a child of the current one, or of the `traceparent` in
    `carrier`: an incoming request's headers), or nothing when tracing is off."""
    if _provider is None:
        yield None
        return
    parent = propagate.extract(carrier) if carrier is not None else None
    tracer = _provider.get_tracer("parley")
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with tracer.start_as_current_span(name, kind=kind, attributes=attributes) as current:
            yield current
    finally:
        if token is not None:
            otel_context.detach(token)


def describe_operation(current: Span, kind: str | None, name: str | None, outcome: str) -> None:
    """A GraphQL operation's span (over HTTP or a WebSocket), named and described once the
    operation is known: "query Inbox", "subscription" (no name), "GraphQL" (not even a type)."""
    current.update_name(" ".join(part for part in (kind or "GraphQL", name) if part))
    current.set_attribute("parley.outcome", outcome)
    if kind:
        current.set_attribute("graphql.operation.type", kind)
    if name:
        current.set_attribute("graphql.operation.name", name)


def sanitized(statement: str) -> str:
    """A SQL statement as a span shows it: literals replaced by `?`, at most MAX_STATEMENT
    characters. Values bound as parameters are not in the text at all.

        sanitized("SELECT * FROM t1 WHERE name = 'Ann' LIMIT 20 OFFSET $1")
        # "SELECT * FROM t1 WHERE name = ? LIMIT ? OFFSET $1"
    """
    return _LITERAL.sub("?", statement)[:MAX_STATEMENT]


def _traced() -> bool:
    """Whether a SQL or Redis call gets a span: tracing is on and a request's or job's span
    is current (not the worker's polling, not the hub's listening)."""
    return _provider is not None and trace.get_current_span().is_recording()


def _wrap(owner: type, name: str, make: Callable[[Any], Any]) -> None:
    original = owner.__dict__[name]
    _patched.append((owner, name, original))
    setattr(owner, name, make(original))


def _sql(system: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    def make(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def traced(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if not _traced() or _in_statement.get():
                return await method(self, query, *args, **kwargs)
            words = query.split(None, 1)
            operation = words[0].upper() if words else "SQL"
            attributes = {
                "db.system": system,
                "db.system.name": system,
                "db.operation.name": operation,
                "db.query.text": sanitized(query),
            }
            token = _in_statement.set(True)
            try:
                tracer = _provider.get_tracer("parley")
                with tracer.start_as_current_span(operation, kind=SpanKind.CLIENT, attributes=attributes):
                    return await method(self, query, *args, **kwargs)
            finally:
                _in_statement.reset(token)

        return traced

    return make


def _redis_command(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def traced(self: Any, *args: Any, **options: Any) -> Any:
        if not _traced() or not args:
            return await method(self, *args, **options)
        command = str(args[0]).upper()
        attributes = {
            "db.system": "redis",
            "db.system.name": "redis",
            "db.operation.name": command,
            "db.query.text": " ".join([command, *["?"] * (len(args) - 1)]),
        }
        with _provider.get_tracer("parley").start_as_current_span(command, kind=SpanKind.CLIENT, attributes=attributes):
            return await method(self, *args, **options)

    return traced


def _redis_pipeline(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _traced():
            return await method(self, *args, **kwargs)
        commands = [str(c[0][0]).upper() for c in getattr(self, "command_stack", []) if c and c[0]]
        attributes = {
            "db.system": "redis",
            "db.system.name": "redis",
            "db.operation.name": "PIPELINE",
            "db.operation.batch.size": len(commands),
            "db.query.text": " ".join(commands)[:MAX_STATEMENT],
        }
        with _provider.get_tracer("parley").start_as_current_span(
            "PIPELINE", kind=SpanKind.CLIENT, attributes=attributes
        ):
            return await method(self, *args, **kwargs)

    return traced


def _instrument() -> None:
    """Wraps the methods that send SQL statements and Redis commands (once tracing is on;
    `shutdown_tracing` puts them back)."""
    if _patched:
        return
    from redis.asyncio.client import Pipeline, Redis
    from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
    from tortoise.backends.base_postgres.client import BasePostgresClient
    from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionWrapper

    clients: list[tuple[type, str]] = [
        (BasePostgresClient, "postgresql"),
        (AsyncpgDBClient, "postgresql"),
        (TransactionWrapper, "postgresql"),
        (SqliteClient, "sqlite"),
        (SqliteTransactionWrapper, "sqlite"),
    ]
    for owner, system in clients:
        for name in SQL_METHODS:
            if name in owner.__dict__:
                _wrap(owner, name, _sql(system))
    _wrap(Redis, "execute_command", _redis_command)
    _wrap(Pipeline, "execute", _redis_pipeline)
