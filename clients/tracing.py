"""OpenTelemetry traces (SPEC §13): on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, otherwise
off and free (nothing of OpenTelemetry is imported; the hooks below cost one check).

The services open a span per request named by route pattern; the SDK (and so the CLI, the
verifier and the authority's calls to the discharger) opens a client span per call and sends
W3C `traceparent`. Spans carry the method, the route pattern or the service called, and the
status: never a raw path, a query, a token, a code or a URL that may hold a secret.

The spans are made with the OpenTelemetry API directly rather than its aiohttp
instrumentations, which record raw paths and full URLs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Iterator, MutableMapping
from typing import Any

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
_tracer: Any = None  # an opentelemetry Tracer once enabled


def enabled() -> bool:
    return _tracer is not None


def configure_from_env(service: str) -> bool:
    """Export spans over OTLP/HTTP when the endpoint is set (the exporter reads the other
    OTEL_* settings itself). Returns whether tracing is on."""
    if not os.environ.get(ENDPOINT_ENV) or _tracer is not None:
        return _tracer is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    # An unreachable collector must not hold a CLI command or a stopping service for long.
    timeout = None if os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") else 2.0
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=timeout), export_timeout_millis=2000))
    atexit.register(provider.shutdown)  # export what is left (a CLI command ends quickly)
    enable(provider)
    return True


def enable(provider: Any) -> None:
    """Trace with this TracerProvider (tests give one with an in-memory exporter)."""
    global _tracer
    _tracer = provider.get_tracer("sable")


def disable() -> None:
    global _tracer
    _tracer = None


@contextlib.contextmanager
def server_span(method: str, route: str, headers: Any) -> Iterator[Any]:
    """A span for one request, continuing the caller's trace from its `traceparent`."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(f"{method} {route}", context=propagate.extract(headers), kind=SpanKind.SERVER,
                                       attributes={"http.request.method": method, "http.route": route}) as span:
        yield span


@contextlib.contextmanager
def client_span(method: str, service: str, host: str, headers: MutableMapping[str, str]) -> Iterator[Any]:
    """A span for one call to a Sable service; puts `traceparent` into `headers`."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(f"{method} sable-{service}", kind=SpanKind.CLIENT,
                                       attributes={"http.request.method": method, "server.address": host}) as span:
        propagate.inject(headers)
        yield span
