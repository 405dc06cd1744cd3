"""Attacker goal: keep using a token after it, or an ancestor, was revoked."""

from clients import offline, tokens
from tests.support import strip
from tests.support.attacks import expect


async def test_revoked_service_token_attenuated_further(authority):
    st = (await strip(authority, await authority.mint()))["token"]
    await authority.post("/v1/revoke", {"tokens": [st]})
    expect(await authority.verify([offline.attenuate(st, ["hosts h"])], host="h"), 403, "denied")


async def test_revoked_attenuation_with_its_caveats_reordered(authority):
    st = (await strip(authority, await authority.mint()))["token"]
    a = offline.attenuate(st, ["hosts h", "actions r"])
    await authority.post("/v1/revoke", {"tokens": [a]})
    b = offline.attenuate(st, ["actions r", "hosts h"])  # a different chain: a sibling, not a descendant
    status, body = await authority.verify([b], host="h")
    assert status == 200  # siblings keep working (SPEC §4)...
    expect(await authority.verify([offline.attenuate(a, ["apps x"])], host="h", app="x"), 403, "denied")  # ...descendants do not


async def test_strip_after_parent_revoked(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    await authority.post(f"/v1/tokens/{tokens.parse(pt).token_id}/revoke", {}, authority.admin)
    expect(await authority.post("/v1/service-tokens", {"tokens": [pt, dt]}), 403, "denied")


async def test_grandchild_attenuation_after_parent_revocation(authority):
    pt = await authority.mint()
    out = await strip(authority, pt)
    deep = offline.attenuate(offline.attenuate(out["token"], ["hosts h"]), ["actions r"])
    assert await authority.allowed([deep], host="h")
    await authority.post(f"/v1/tokens/{out['parent']}/revoke", {}, authority.admin)
    expect(await authority.verify([deep], host="h"), 403, "denied")


async def test_revoked_token_relabelled_as_another_kind(authority):
    pt = await authority.mint()
    await authority.post("/v1/revoke", {"tokens": [pt]})
    from tests.support.attacks import resign
    expect(await authority.verify([resign(pt, prefix=tokens.SERVICE)]), 403, "denied")
