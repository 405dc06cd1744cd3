"""Orgs and their lifetime policy (SPEC §18) on the real authority: a mint without
`expires_in` gets min(30 d, L), asking for more is 400 naming both; a strip or exchange gets
`expires` now + L when it asks for none."""

from __future__ import annotations

import time

from clients import caveats, tokens
from tests.support import strip


def expires_of(token: str) -> int:
    texts = [c.cid.decode() for c in tokens.parse(token).caveats if not c.third_party]
    [when] = [caveats.parse_time(t.split(" ", 1)[1]) for t in texts if t.startswith("expires ")]
    return when


async def test_the_org_lifetime_policy_bounds_mints_and_strips(authority):
    env = authority
    await env.create_org("acme")
    status, body = await env.post("/v1/orgs/acme/policy", {}, env.admin)  # POST: not the method
    assert status == 405
    resp = await env.client.put("/v1/orgs/acme/policy", json={"max_token_lifetime": 3600}, headers=env.admin)
    assert resp.status == 200 and (await resp.json())["max_token_lifetime"] == 3600
    pt = await env.mint(["apps orders"])
    assert abs(expires_of(pt) - (time.time() + 3600)) < 5  # min(30 d, 1 h)
    status, body = await env.post("/v1/tokens", {"org": "acme", "caveats": [], "expires_in": 7200}, env.admin)
    assert status == 400 and "--expires-in" in body["message"] and "3600" in body["message"]
    st = (await strip(env, pt))["token"]
    assert abs(expires_of(st) - (time.time() + 3600)) < 5  # a service token gets one too
    dt = env.discharger.discharge(pt)
    status, body = await env.post("/v1/service-tokens", {"tokens": [pt, dt], "expires_in": 7200})
    assert status == 400
    # lifted: mints get the authority's default again, service tokens no expiry
    resp = await env.client.put("/v1/orgs/acme/policy", json={"max_token_lifetime": None}, headers=env.admin)
    assert (await resp.json())["max_token_lifetime"] is None
    assert expires_of(await env.mint(["apps orders"])) > time.time() + 29 * 86400
    resp = await env.client.get("/v1/orgs/acme/policy", headers=env.admin)
    assert (await resp.json()) == {"org": "acme", "max_token_lifetime": None}
    rows = await env.service.store.audit_rows("org_policy")
    assert [r.detail["max_token_lifetime"] for r in rows] == [3600, None]


async def test_policy_requests_that_are_refused(authority):
    env = authority
    await env.create_org("acme")
    for value in (59, 10**9, "1h", True, 1.5):
        resp = await env.client.put("/v1/orgs/acme/policy", json={"max_token_lifetime": value}, headers=env.admin)
        assert resp.status == 400, value
    resp = await env.client.put("/v1/orgs/nope/policy", json={"max_token_lifetime": 3600}, headers=env.admin)
    assert resp.status == 404
    resp = await env.client.put("/v1/orgs/acme/policy", json={"max_token_lifetime": 3600})
    assert resp.status == 401
