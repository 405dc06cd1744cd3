"""`server.http.client_address` with `--trusted-proxy` (SPEC §12): X-Forwarded-For counts
only from a trusted peer, and then its rightmost untrusted entry is the client."""

from __future__ import annotations

import pytest
from aiohttp import web

from server.http import TRUSTED_PROXIES, client_address, parse_networks


@pytest.mark.parametrize("trusted, xff, expected", [
    ((), "9.9.9.9", "127.0.0.1"),  # no trusted proxies: the header is ignored
    (("10.0.0.0/8",), "9.9.9.9", "127.0.0.1"),  # the peer is not trusted: ignored
    (("127.0.0.1/32",), "9.9.9.9", "9.9.9.9"),
    (("127.0.0.1/32",), "6.6.6.6, 9.9.9.9", "9.9.9.9"),  # a client can prepend anything; the proxy appends
    (("127.0.0.1/32", "10.0.0.0/8"), "6.6.6.6, 9.9.9.9, 10.1.2.3", "9.9.9.9"),
    (("127.0.0.1/32",), "", "127.0.0.1"),
])
async def test_client_address(aiohttp_client, trusted, xff, expected):
    app = web.Application()
    app[TRUSTED_PROXIES] = parse_networks(trusted)

    async def who(request):
        return web.Response(text=client_address(request))
    app.router.add_get("/", who)
    client = await aiohttp_client(app)
    resp = await client.get("/", headers={"X-Forwarded-For": xff} if xff else {})
    assert await resp.text() == expected


def test_bad_cidrs_are_named():
    with pytest.raises(ValueError, match="not-an-ip"):
        parse_networks(["not-an-ip"])
