"""The SDK's error type, timeouts and retries, against real servers on loopback."""

import asyncio
import time

import pytest
from aiohttp import web

from clients.sdk import AuthorityClient, DischargerClient, SableAPIError
from tests.support import free_port


async def test_errors_carry_the_server_code(authority):
    async with AuthorityClient(str(authority.client.make_url("")), admin_token="sable_adm_nope") as a:
        with pytest.raises(SableAPIError) as e:
            await a.create_org("acme")
        assert (e.value.status, e.value.code) == (401, "unauthorized")
        with pytest.raises(SableAPIError) as e:
            await a.revocations(after=-1)
        assert (e.value.status, e.value.code) == (400, "bad_request")


async def test_a_url_that_is_not_the_service_says_so(aiohttp_server, real_discharger):
    # Another Sable service: its 404 for a route it does not have, named as a wrong URL.
    async with AuthorityClient(str(real_discharger.client.make_url(""))) as a:
        with pytest.raises(SableAPIError) as e:
            await a.revocations()
        assert e.value.code == "wrong_url" and "has no such endpoint: is it the authority's URL?" in e.value.message
        assert "/v1/" not in e.value.message  # paths can carry one-time secrets

    async def empty_404(request):
        return web.Response(status=404)

    async def json_404(request):
        return web.json_response({"detail": "nope"}, status=404)

    async def bad_gateway(request):
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/v1/info", empty_404)
    app.router.add_get("/v1/orgs", json_404)
    app.router.add_get("/v1/revocations", bad_gateway)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    async with AuthorityClient(url, retries=0, admin_token="sable_adm_x") as a:
        for call in (a.info, a.list_orgs):
            with pytest.raises(SableAPIError) as e:
                await call()
            assert e.value.code == "wrong_url" and e.value.message == f"{url} answered 404 Not Found: is it the authority's URL?"
        with pytest.raises(SableAPIError) as e:
            await a.revocations()
        assert e.value.code == "unavailable" and e.value.status == 502  # a proxy whose backend is down
    async with DischargerClient(url, retries=0) as d:
        with pytest.raises(SableAPIError) as e:
            await d.info()
        assert e.value.message.endswith("is it the discharger's URL?")


async def test_unreachable_is_unavailable_after_retries():
    async with AuthorityClient(f"http://127.0.0.1:{free_port()}", retries=2) as a:
        started = time.monotonic()
        with pytest.raises(SableAPIError) as e:
            await a.info()
        assert e.value.code == "unavailable" and e.value.sent is False
        assert time.monotonic() - started < 2


async def test_transient_503_is_retried_for_idempotent_calls(aiohttp_server):
    calls = {"n": 0}

    async def flaky(request):
        calls["n"] += 1
        if calls["n"] < 3:
            return web.json_response({"error": "unavailable", "message": "busy"}, status=503)
        return web.json_response({"cursor": 7, "revoked": []})

    app = web.Application()
    app.router.add_get("/v1/revocations", flaky)
    app.router.add_post("/v1/service-tokens", flaky)
    server = await aiohttp_server(app)
    async with AuthorityClient(str(server.make_url("")), retries=2) as a:
        assert (await a.revocations())["cursor"] == 7
        assert calls["n"] == 3
        calls["n"] = 0
        with pytest.raises(SableAPIError) as e:  # strip is not idempotent: no retry after sending
            await a.strip("pt", "dt")
        assert e.value.status == 503 and calls["n"] == 1


async def test_every_request_has_a_timeout(aiohttp_server):
    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/info", slow)
    server = await aiohttp_server(app)
    async with AuthorityClient(str(server.make_url("")), timeout=0.2, retries=0) as a:
        started = time.monotonic()
        with pytest.raises(SableAPIError) as e:
            await a.info()
        assert e.value.code == "unavailable" and time.monotonic() - started < 1.5
