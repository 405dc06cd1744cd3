"""Attacker goal: exhaust resources with small requests."""

import asyncio

from clients import tokens
from tests.support.attacks import expect


async def test_revoke_flood_is_rate_limited(authority):
    for _ in range(100):
        await authority.post("/v1/revoke", {"tokens": ["x"]})
    resp = await authority.client.post("/v1/revoke", json={"tokens": ["x"]})
    assert resp.status == 429 and (await resp.json())["error"] == "rate_limited" and resp.headers["Retry-After"]


async def test_long_poll_wait_is_capped(authority):
    resp = await authority.client.get("/v1/revocations?after=0&wait=3600")
    assert resp.status == 400 and (await resp.json())["error"] == "bad_request"


async def test_denial_flood_keeps_the_count(authority):
    """Denials beyond the per-second log cap are still written to the audit table."""
    pt = await authority.mint()
    await asyncio.gather(*[authority.verify([pt]) for _ in range(120)])
    await authority.service.usage.flush()
    assert len(await authority.service.store.audit_rows("verify_denied")) == 120


async def test_many_unknown_ids_do_not_grow_the_cache(authority, aiohttp_client):
    import os

    from pymacaroons import MACAROON_V2, Macaroon

    from tests.support.fakes import pm_to_string
    for _ in range(50):
        m = Macaroon(location=authority.config.public_url, identifier=b"\x01" + os.urandom(16), key=b"k", version=MACAROON_V2)
        expect(await authority.verify([pm_to_string(tokens.SERVICE, m)]), 403, "denied")
    assert len(authority.service.records) == 0
