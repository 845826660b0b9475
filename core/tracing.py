"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then spans for each
HTTP request (continuing the caller's `traceparent`), each GraphQL operation over HTTP and
each job go to that OTLP/HTTP collector (`<endpoint>/v1/traces`, protobuf).

    from core.tracing import setup_tracing, span
    setup_tracing()                                  # asgi.py's lifespan, the worker's startup
    with span("job send_campaign", kind=SpanKind.CONSUMER, **{"parley.job.id": job_id}) as s:
        ...                                          # s is None when tracing is off

Off, `span` is a null context: nothing is created on the request path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind

from core.config import settings

__all__ = ["SpanKind", "enabled", "setup_tracing", "shutdown_tracing", "span"]

_provider: Any = None


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


def shutdown_tracing() -> None:
    """Sends the spans still buffered (at the process's end)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


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
