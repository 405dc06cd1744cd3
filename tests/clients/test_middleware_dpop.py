"""Bound tokens through the example workload (SPEC §14): the middleware reads `Authorization:
DPoP` and the `DPoP` header, the caching verifier checks each proof itself, hits included, and
`clients.pop.session` sends them; the real authority behind it all."""

from __future__ import annotations

import pytest
from aiohttp import web

from clients import offline, pop
from clients.verifier import Verifier
from examples.workload.app import create_app
from tests.support import authority_url, free_port, service_token

PUBLIC = "http://orders.test"
CHALLENGE = 'DPoP error="invalid_dpop_proof", algs="EdDSA"'


@pytest.fixture
def keys(dpop_keys):
    return dpop_keys


@pytest.fixture
async def verifier(authority, monkeypatch):
    monkeypatch.setenv("SABLE_HOST", "worker-7")
    v = Verifier(authority_url(authority))
    await v.start()
    yield v
    await v.close()


@pytest.fixture
async def workload(aiohttp_client, verifier):
    return await aiohttp_client(create_app(verifier, public_url=PUBLIC))


@pytest.fixture
async def bound(authority, keys) -> str:
    return offline.attenuate(await service_token(authority), [f"cnf-jkt {keys[0].jkt}"])


def dpop(token: str, proof: str | None) -> dict:
    headers = {"Authorization": f"DPoP {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return headers


async def test_bound_token_with_fresh_proofs_passes_and_hits_the_cache(workload, verifier, keys, bound):
    host, _ = keys
    for _ in range(3):
        resp = await workload.get("/orders", headers=dpop(bound, host.proof("GET", PUBLIC + "/orders", bound)))
        assert resp.status == 200, await resp.text()
    assert verifier.stats.hits == 2 and verifier.stats.misses == 1


async def test_proof_problems_are_401_with_a_dpop_challenge_on_hits_too(workload, verifier, keys, bound):
    host, thief = keys
    good = host.proof("GET", PUBLIC + "/orders", bound)
    assert (await workload.get("/orders", headers=dpop(bound, good))).status == 200  # now cached
    cases = {
        "replayed": dpop(bound, good),
        "no proof": dpop(bound, None),
        "thief's key": dpop(bound, thief.proof("GET", PUBLIC + "/orders", bound)),
        "another path": dpop(bound, host.proof("GET", PUBLIC + "/admin", bound)),
        "another method": dpop(bound, host.proof("POST", PUBLIC + "/orders", bound)),
        "another host name": dpop(bound, host.proof("GET", "http://evil.test/orders", bound)),
        "under Bearer": {"Authorization": f"Bearer {bound}", "DPoP": host.proof("GET", PUBLIC + "/orders", bound)},
        "garbage": dpop(bound, "x.y.z"),
    }
    for name, headers in cases.items():
        resp = await workload.get("/orders", headers=headers)
        assert resp.status == 401, name
        assert resp.headers["WWW-Authenticate"] == CHALLENGE, name
        assert bound[9:40] not in await resp.text()
    assert verifier.stats.misses == 1  # all judged here, none sent on


async def test_a_bound_token_is_refused_before_the_authority_on_a_miss(workload, verifier, bound):
    resp = await workload.get("/orders", headers={"Authorization": f"Bearer {bound}"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    assert "DPoP proof" in (await resp.json())["message"]


async def test_two_dpop_headers_are_refused(workload, keys, bound):
    host, _ = keys
    headers = [("Authorization", f"DPoP {bound}"), ("DPoP", host.proof("GET", PUBLIC + "/orders", bound)),
               ("DPoP", host.proof("GET", PUBLIC + "/orders", bound))]
    resp = await workload.get("/orders", headers=headers)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_without_public_url_bound_tokens_are_refused(aiohttp_client, verifier, keys, bound, authority):
    workload = await aiohttp_client(create_app(verifier))
    host, _ = keys
    resp = await workload.get("/orders", headers=dpop(bound, host.proof("GET", PUBLIC + "/orders", bound)))
    assert resp.status == 401
    plain = await service_token(authority)
    assert (await workload.get("/orders", headers={"Authorization": f"Bearer {plain}"})).status == 200


async def test_unbound_tokens_still_work_under_bearer(workload, authority):
    plain = await service_token(authority)
    assert (await workload.get("/orders", headers={"Authorization": f"Bearer {plain}"})).status == 200


async def test_a_denial_for_another_reason_is_still_403(workload, keys, authority):
    host, _ = keys
    bound = offline.attenuate(await service_token(authority), [f"cnf-jkt {host.jkt}", "actions r"])
    resp = await workload.post("/orders", headers=dpop(bound, host.proof("POST", PUBLIC + "/orders", bound)))
    assert resp.status == 403 and "actions r" in (await resp.json())["message"]


async def test_pop_session_sends_a_fresh_proof_each_request(verifier, keys, bound):
    host, _ = keys
    port = free_port()
    runner = web.AppRunner(create_app(verifier, public_url=f"http://127.0.0.1:{port}"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with pop.session(bound, host) as http:
            for _ in range(3):
                async with http.get(f"http://127.0.0.1:{port}/orders?page=1") as resp:
                    assert resp.status == 200, await resp.text()
    finally:
        await runner.cleanup()


async def test_pop_session_never_sends_credentials_to_another_origin(keys, bound):
    """A redirect to another host (or another scheme or port) gets neither the token nor a
    proof, though aiohttp runs client middlewares on every hop."""
    host, _ = keys
    seen: list[dict] = []

    async def elsewhere(request):
        seen.append({k: request.headers.get(k) for k in ("Authorization", "DPoP")})
        return web.json_response({})

    other_port = free_port()
    other = web.Application()
    other.router.add_get("/b", elsewhere)
    port = free_port()

    async def redirect(request):
        seen.append({k: request.headers.get(k) for k in ("Authorization", "DPoP")})
        raise web.HTTPTemporaryRedirect(f"http://localhost:{other_port}/b")

    first = web.Application()
    first.router.add_get("/a", redirect)
    runners = [web.AppRunner(first), web.AppRunner(other)]
    for runner, p in zip(runners, (port, other_port)):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1" if p == port else "localhost", p).start()
    try:
        async with pop.session(bound, host) as http, http.get(f"http://127.0.0.1:{port}/a") as resp:
            assert resp.status == 200
        assert seen[0]["Authorization"] == f"DPoP {bound}" and seen[0]["DPoP"]
        assert seen[1] == {"Authorization": None, "DPoP": None}
        async with pop.session(bound, host, origin=f"http://localhost:{other_port}") as http:
            async with http.get(f"http://127.0.0.1:{port}/a", allow_redirects=False) as resp:
                assert resp.status == 307
        assert seen[2] == {"Authorization": None, "DPoP": None}  # not the pinned origin
    finally:
        for runner in runners:
            await runner.cleanup()
