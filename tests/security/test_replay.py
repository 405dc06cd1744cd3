"""Attacker goal: replay or repurpose discharges."""

import time

from clients import offline, tokens
from tests.support.attacks import expect
from tests.support.fakes import pm_to_string, string_to_pm


async def test_discharge_reused_across_tokens(authority):
    pt1, pt2 = await authority.mint(), await authority.mint()
    expect(await authority.verify([pt2, authority.discharger.discharge(pt1)]), 403, "denied")


async def test_discharge_rebound_to_an_attenuation_of_another_token(authority):
    pt1, pt2 = await authority.mint(), await authority.mint()
    unbound = authority.discharger.discharge(pt1, bind=False)
    expect(await authority.verify([pt2, offline.bind(pt2, unbound)]), 403, "denied")


async def test_discharge_kept_after_its_token_is_revoked(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    await authority.post(f"/v1/tokens/{tokens.parse(pt).token_id}/revoke", {}, authority.admin)
    body = expect(await authority.verify([pt, dt]), 403, "denied")
    assert "revoked" in body["message"]
    expect(await authority.post("/v1/service-tokens", {"tokens": [pt, dt]}), 403, "denied")


async def test_expired_discharge(authority):
    pt = await authority.mint()
    expect(await authority.verify([pt, authority.discharger.discharge(pt, now=time.time() - 301)]), 403, "denied")


async def test_discharge_with_its_expiry_stripped(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt, bind=False)
    tok = tokens.parse(dt)
    from dataclasses import replace
    stripped = replace(tok, caveats=tok.caveats[:1]).encode()  # drop `expires`, keep the signature
    expect(await authority.verify([pt, offline.bind(pt, stripped)]), 403, "denied")


async def test_same_discharge_twice(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    expect(await authority.verify([pt, dt, dt]), 403, "denied")


async def test_cyclic_discharges(authority):
    """Two discharges that each carry a third-party caveat for the other."""
    pt = await authority.mint()
    d = authority.discharger
    a = string_to_pm(d.discharge(pt, bind=False))
    b = string_to_pm(d.discharge(pt, bind=False))
    a.add_third_party_caveat(d.location, b"k" * 32, b.identifier_bytes)
    b.add_third_party_caveat(d.location, b"k" * 32, a.identifier_bytes)
    da = offline.bind(pt, pm_to_string(tokens.DISCHARGE, a))
    db = offline.bind(pt, pm_to_string(tokens.DISCHARGE, b))
    expect(await authority.verify([pt, da, db]), 403, "denied")


async def test_self_referencing_discharge(authority):
    pt = await authority.mint()
    d = authority.discharger
    m = string_to_pm(d.discharge(pt, bind=False))
    m.add_third_party_caveat(d.location, b"k" * 32, m.identifier_bytes)
    dt = offline.bind(pt, pm_to_string(tokens.DISCHARGE, m))
    body = expect(await authority.verify([pt, dt]), 403, "denied")
    assert "nested" in body["message"]


async def test_a_thousand_discharges_in_one_request(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    resp = await authority.client.post("/v1/verify", json={"tokens": [pt] + [dt] * 1000,
                                                           "access": {"org": "acme", "action": "r"}})
    body = await resp.json()
    assert resp.status == 413 and body["error"] == "bad_request"  # over 64 KiB: refused before parsing
    # Within the body limit, the 32-token cap answers.
    expect(await authority.verify([pt] + [dt] * 32), 400, "bad_request")
