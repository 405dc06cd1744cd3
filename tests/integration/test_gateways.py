"""Real nginx and Caddy in front of a small upstream, asking the verifier process (SPEC §17)
about every request, with `examples/gateways/`' configurations as written. The verifier,
the authority and the upstream are real servers on loopback ports."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from clients import offline
from tests.support import service_token
from tests.support.gateways import Caddy, Nginx, ServedApp
from verifier.app import create_app
from verifier.config import VerifierConfig
from verifier.routes import parse_route

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
HOST = "api.example.com"


class Upstream:
    """The protected service: answers 200 and remembers the headers of what reached it."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def app(self) -> web.Application:
        async def any_request(request: web.Request) -> web.Response:
            self.seen.append(dict(request.headers))
            return web.json_response({"path": request.path})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_request)
        return app


@pytest.fixture(params=["nginx", "caddy"])
async def stack(request, authority, aiohttp_server, tmp_path):
    kind = request.param
    upstream = Upstream()
    up = await aiohttp_server(upstream.app())
    routes = ({"host": HOST, "path": "/orders*", "org": "acme", "app": "orders", "public_url": f"https://{HOST}"},
              {"host": HOST, "path": "/admin*", "org": "acme", "app": "admin"})
    config = VerifierConfig(authority=str(authority.client.make_url("")).rstrip("/"), gateway=kind, host="worker-7",
                            routes=tuple(parse_route(r, n) for n, r in enumerate(routes, 1)), stale_after=2.0)
    verifier = ServedApp(create_app(config))
    await verifier.start_server()
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 5
        while True:
            async with http.get(f"http://127.0.0.1:{verifier.port}/readyz") as r:
                if r.status == 200:
                    break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    cls = Nginx if kind == "nginx" else Caddy
    gateway = cls(tmp_path, f"127.0.0.1:{up.port}", f"127.0.0.1:{verifier.port}").start()
    try:
        yield {"gateway": gateway, "upstream": upstream, "verifier": verifier, "kind": kind}
    finally:
        gateway.stop()
        await verifier.close()


async def call(stack, path="/orders/7", token=None, scheme="Bearer", method="GET", headers=None):
    sent = {"Host": HOST, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"{scheme} {token}"
    async with aiohttp.ClientSession() as http, http.request(method, stack["gateway"].url + path, headers=sent,
                                                               allow_redirects=False) as r:
        await r.read()
        return r.status, dict(r.headers)


async def test_an_allowed_request_reaches_the_upstream_with_who_it_is(authority, stack):
    token = await service_token(authority)
    status, _ = await call(stack, token=token, headers={"Sable-User": "mallory", "Sable-Org": "evil",
                                                        "Sable-Token-Id": "forged"})
    assert status == 200, stack["gateway"].log.read_text()[-2000:]
    (seen,) = stack["upstream"].seen
    assert seen["Sable-User"] == "alice" and seen["Sable-Org"] == "acme" and len(seen["Sable-Token-Id"]) == 32
    assert "Authorization" not in seen and "DPoP" not in seen  # the credentials stay at the gateway
    # POST is a write: the same token (actions=*) is allowed, and the method is the client's
    assert (await call(stack, token=token, method="POST"))[0] == 200


async def test_a_denied_request_never_reaches_the_upstream(authority, stack):
    token = await service_token(authority)  # apps orders
    for path in ("/admin", "/orders/../admin", "/orders/%2e%2e/admin", "//admin"):
        status, headers = await call(stack, path, token)
        assert status == 403 and "apps" in headers.get("Sable-Denied", ""), (path, status, headers)
    status, headers = await call(stack, "/orders/..%2Fadmin", token)
    assert status == 403 and headers.get("Sable-Denied") == "ambiguous path"
    status, headers = await call(stack, "/nowhere", token)
    assert status == 403 and headers.get("Sable-Denied") == "no route matches"
    status, headers = await call(stack)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert stack["upstream"].seen == []


async def test_a_revoked_token_is_refused_within_a_second(authority, stack):
    token = await service_token(authority)
    assert (await call(stack, token=token))[0] == 200
    assert (await authority.post("/v1/revoke", {"tokens": [token]}))[0] == 200
    deadline = time.monotonic() + 1.0
    while (await call(stack, token=token))[0] == 200:
        assert time.monotonic() < deadline, "still allowed a second after the revocation"
        await asyncio.sleep(0.05)


async def test_dpop_proofs_for_the_gateways_public_url(authority, stack, dpop_keys):
    host, _ = dpop_keys
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}"])
    good = host.proof("GET", f"https://{HOST}/orders/7", bound)
    assert (await call(stack, token=bound, scheme="DPoP", headers={"DPoP": good}))[0] == 200
    other = host.proof("GET", "https://elsewhere.example/orders/7", bound)
    status, headers = await call(stack, token=bound, scheme="DPoP", headers={"DPoP": other})
    assert status == 401 and headers["WWW-Authenticate"].startswith("DPoP")


async def test_a_failing_closed_or_missing_verifier_is_a_503(authority, stack):
    token = await service_token(authority)
    await authority.client.server.close()  # the authority goes away: a miss fails closed
    status, headers = await call(stack, token=token)
    assert status == 503 and headers.get("Retry-After"), (status, headers)
    await stack["verifier"].close()  # the verifier goes away
    status, headers = await call(stack, token=token)
    assert status == 503 and headers.get("Retry-After"), (status, headers)
    assert stack["upstream"].seen == []
