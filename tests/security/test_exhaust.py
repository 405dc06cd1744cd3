"""Attacker goal: exhaust resources with small requests."""

import asyncio

from clients import tokens
from tests.security.helpers import expect


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
    import sqlite3
    pt = await authority.mint()
    await asyncio.gather(*[authority.verify([pt]) for _ in range(120)])
    await asyncio.sleep(1.3)
    db = sqlite3.connect(authority.config.db_path)
    (count,) = db.execute("SELECT COUNT(*) FROM audit WHERE event = 'verify_denied'").fetchone()
    assert count == 120


async def test_many_unknown_ids_do_not_grow_the_cache(authority, aiohttp_client):
    from pymacaroons import MACAROON_V2, Macaroon
    import os
    from tests.helpers import pm_to_string
    for _ in range(50):
        m = Macaroon(location=authority.config.public_url, identifier=b"\x01" + os.urandom(16), key=b"k", version=MACAROON_V2)
        expect(await authority.verify([pm_to_string(tokens.SERVICE, m)]), 403, "denied")
    from authority.app import AUTHORITY
    assert len(authority.client.app[AUTHORITY].cache) == 0
