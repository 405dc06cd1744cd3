"""Traces (SPEC §13), with an in-memory exporter: a call from the SDK (what the CLI uses) is
the parent of the authority's request span, and the authority's call to the discharger
continues the same trace. Span names are route patterns or the service called; no span holds
a raw path, a query, a token or a secret."""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import nacl.utils
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from authority.app import create_app as create_authority_app
from authority.config import AuthorityConfig, discharger_from_info
from clients import tracing
from clients.sdk import AuthorityClient
from discharger.app import create_app as create_discharger_app
from tests.support import free_port


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()


def by_name(exporter) -> dict:
    return {s.name: s for s in exporter.get_finished_spans()}


def assert_clean(exporter, *secrets: str) -> None:
    for s in exporter.get_finished_spans():
        for value in [s.name, *map(str, (s.attributes or {}).values())]:
            assert "?" not in value and "sable_" not in value, (s.name, value)
            for secret in secrets:
                assert secret not in value


@pytest.fixture
async def stack(aiohttp_server, discharger_config, db_location, admin_token):
    """The real discharger and an authority trusting it, both on loopback ports."""
    a_port, d_port = free_port(), free_port()
    a_url, d_url = f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{d_port}"
    discharger_config = replace(discharger_config, public_url=d_url, authority_urls=(a_url,))
    await aiohttp_server(create_discharger_app(discharger_config), port=d_port)
    async with aiohttp.ClientSession() as http:
        async with http.get(d_url + "/v1/info") as r:
            trust = discharger_from_info(await r.json())
    config = AuthorityConfig(db_path=db_location("authority"), master_key=nacl.utils.random(32), public_url=a_url,
                             dischargers=(trust,), admin_token=admin_token)
    await aiohttp_server(create_authority_app(config), port=a_port)
    return a_url, d_url


async def test_sdk_call_is_the_parent_of_the_request_span(stack, spans, admin_token):
    a_url, _ = stack
    async with AuthorityClient(a_url, admin_token=admin_token) as a:
        await a.create_org("acme")
        minted = await a.mint("acme", ["apps orders"])
    named = by_name(spans)
    client, server = named["POST sable-authority"], named["POST /v1/tokens"]
    assert client.kind == SpanKind.CLIENT and server.kind == SpanKind.SERVER
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.context.trace_id == client.context.trace_id
    assert server.attributes["http.route"] == "/v1/tokens" and server.attributes["http.response.status_code"] == 201
    assert client.attributes["server.address"] == "127.0.0.1"
    assert_clean(spans, minted["token"], admin_token)


async def test_one_trace_from_the_caller_through_the_authority_to_the_discharger(stack, spans, admin_token):
    a_url, _ = stack
    async with AuthorityClient(a_url, admin_token=admin_token) as a:
        await a.create_org("acme")
    spans.clear()
    # What the CLI does for any call: a client span, and its traceparent on the request. The
    # console page starts a sign-in, which the authority asks of the discharger.
    headers: dict[str, str] = {}
    with tracing.client_span("GET", "authority", "127.0.0.1", headers):
        async with aiohttp.ClientSession() as http:
            async with http.get(a_url + "/console/orgs/acme?role=member", headers=headers,
                                allow_redirects=False) as r:
                assert r.status == 303
                user_url = r.headers["Location"]
    named = by_name(spans)
    cli = named["GET sable-authority"]
    page = named["GET /console/orgs/{org}"]
    call = named["POST sable-discharger"]
    flow = named["POST /v1/discharges"]
    assert {s.context.trace_id for s in (cli, page, call, flow)} == {cli.context.trace_id}
    assert page.parent.span_id == cli.context.span_id
    assert call.parent.span_id == page.context.span_id
    assert flow.parent.span_id == call.context.span_id
    assert flow.attributes["http.response.status_code"] == 202
    assert_clean(spans, user_url.split("/")[-1], "acme?")


async def test_off_unless_configured(monkeypatch):
    monkeypatch.delenv(tracing.ENDPOINT_ENV, raising=False)
    assert tracing.configure_from_env("sable-test") is False and not tracing.enabled()
