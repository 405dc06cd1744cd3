"""Just-in-time wire tokens (SPEC §14): `clients.sdk.WireToken` sends short-lived attenuations
of a long-lived token, remade every `refresh` seconds; checked against the real authority."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from clients import offline, pop, tokens
from clients.errors import BadRequest, MalformedToken
from clients.sdk import WireToken
from clients.verifier import Verifier
from tests.support import authority_url, service_token


def expiry(token: str) -> str:
    return [c for c in offline.inspect(token)["caveats"] if c.startswith("expires ")][-1]


async def test_current_is_an_expiring_attenuation_remade_each_refresh(authority):
    st = await service_token(authority)
    wire = WireToken(st, lifetime=5.0, refresh=0.3)
    first = wire.current()
    assert first != st and tokens.parse(first).token_id == tokens.parse(st).token_id
    assert offline.inspect(first)["caveats"][:-1] == offline.inspect(st)["caveats"]
    assert expiry(first) <= f"expires {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(math.ceil(time.time() + 5)))}"
    assert wire.current() is first  # the same string until the refresh interval has passed
    await asyncio.sleep(1.05)  # remade, and its expiry (whole seconds) has moved on
    assert wire.current() != first and expiry(wire.current()) > expiry(first)


@pytest.mark.parametrize("kwargs, error", [
    ({"lifetime": 4.9}, "from 5 s"),
    ({"lifetime": 5, "refresh": 5}, "refresh"),
    ({"lifetime": 5, "refresh": 2.5}, "refresh"),  # could be sent expired to a clock 2 s ahead
    ({"refresh": 0}, "refresh"),
    ({"lifetime": float("inf")}, "lifetime"),
    ({"lifetime": float("nan")}, "lifetime"),
    ({"lifetime": 3601}, "lifetime"),
])
async def test_bad_settings_are_refused(authority, kwargs, error):
    st = await service_token(authority)
    with pytest.raises(BadRequest, match=error):
        WireToken(st, **kwargs)


async def test_what_it_is_made_from(authority):
    pt = await authority.mint(["apps orders"])
    st = await service_token(authority)
    with pytest.raises(BadRequest, match="discharge"):
        WireToken(pt)
    with pytest.raises(BadRequest):
        WireToken(st, authority.discharger.discharge(pt))
    with pytest.raises(MalformedToken):
        WireToken("not a token")


async def test_a_permission_token_is_sent_with_its_discharge_bound_to_each_attenuation(authority):
    pt = await authority.mint(["apps orders"])
    unbound = authority.discharger.discharge(pt, bind=False)
    wire = WireToken(pt, unbound, lifetime=5.0, refresh=0.2)
    for _ in range(2):
        status, body = await authority.post("/v1/verify", {"tokens": wire.presentation(),
                                                            "access": {"org": "acme", "action": "r", "app": "orders"}})
        assert status == 200, body
        await asyncio.sleep(0.25)


async def test_a_wire_token_dies_after_its_lifetime_and_with_its_token(authority):
    st = await service_token(authority)
    access = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7"}
    wire = WireToken(st, lifetime=5.0, refresh=1.0)
    copied = wire.current()  # what a proxy's log would hold
    assert (await authority.post("/v1/verify", {"tokens": [copied], "access": access}))[0] == 200
    await asyncio.sleep(math.ceil(time.time() + 5) - time.time() + 0.1)
    status, body = await authority.post("/v1/verify", {"tokens": [copied], "access": access})
    assert status == 403 and "expired" in body["message"]
    assert (await authority.post("/v1/verify", {"tokens": [wire.current()], "access": access}))[0] == 200

    await authority.post("/v1/revoke", {"tokens": [st]})
    fresh = WireToken(st).current()  # a new attenuation of a revoked token
    status, body = await authority.post("/v1/verify", {"tokens": [fresh], "access": access})
    assert status == 403 and "revoked" in body["message"]


async def test_a_caching_verifier_sees_one_new_string_per_refresh(authority):
    st = await service_token(authority)
    wire = WireToken(st, lifetime=5.0, refresh=1.0)
    access = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7"}
    async with Verifier(authority_url(authority)) as v:
        while v.cursor is None:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            assert (await v.check([wire.current()], access)).allowed
            await asyncio.sleep(0.01)
        assert v.stats.misses <= 3 and v.stats.hits >= 100  # one miss per refresh, at most


async def test_pop_session_sends_wire_tokens_with_proofs(authority, tmp_path, monkeypatch):
    monkeypatch.setenv("SABLE_HOST", "worker-7")
    from aiohttp import web

    from examples.workload.app import create_app
    from tests.support import free_port

    pop.keygen(tmp_path / "host.key")
    signer = pop.DPoPSigner(tmp_path / "host.key")
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {signer.jkt}"])
    port = free_port()
    async with Verifier(authority_url(authority)) as v:
        runner = web.AppRunner(create_app(v, public_url=f"http://127.0.0.1:{port}"))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with pop.session(WireToken(bound), signer) as http:
                for _ in range(3):
                    async with http.get(f"http://127.0.0.1:{port}/orders") as resp:
                        assert resp.status == 200, await resp.text()
        finally:
            await runner.cleanup()
