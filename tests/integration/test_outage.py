"""The database goes away under a running authority and discharger (PostgreSQL stopped with
`-m immediate`), then comes back: prompt 503s with Retry-After, never a 500 or a hang; verify
from memory only while the revocation view is fresh; recovery without a restart."""

from __future__ import annotations

import asyncio
import time

import pytest

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


async def timed(coro):
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


async def test_authority_fails_closed_and_recovers(authority, pg_cluster):
    pt = await authority.mint(["apps orders"])
    assert await authority.allowed([pt, authority.discharger.discharge(pt)], app="orders")
    assert (await authority.client.get("/readyz")).status == 200

    pg_cluster.stop("immediate")
    try:
        # Writes and reads that need the database: 503 + Retry-After, within 5 s.
        (status, body), took = await timed(authority.post("/v1/orgs", {"name": "beta"}, authority.admin))
        assert (status, body["error"]) == (503, "unavailable") and took < 5
        resp, took = await timed(authority.client.post("/v1/tokens", json={"org": "acme"}, headers=authority.admin))
        assert resp.status == 503 and resp.headers["Retry-After"] and took < 5
        assert "password" not in (await resp.text())
        # RFC 8693's front door says it in OAuth's words (SPEC §16)
        resp = await authority.client.post("/v1/oauth/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": pt,
            "subject_token_type": "urn:sable:token-type:permission",
            "actor_token": authority.discharger.discharge(pt), "actor_token_type": "urn:sable:token-type:discharge"})
        body = await resp.json()
        assert (resp.status, body["error"]) == (503, "temporarily_unavailable") and resp.headers["Retry-After"]
        assert body["error_description"]
        resp = await authority.client.get("/readyz")
        assert resp.status == 503 and resp.headers["Retry-After"]
        assert (await authority.client.get("/healthz")).status == 200  # alive, just not ready

        # A known token verifies from memory while the revocation view is fresh...
        status, _ = await authority.verify([pt, authority.discharger.discharge(pt)], app="orders")
        assert status in (200, 503)
        # ...and not once it is older than 5 s.
        await asyncio.sleep(5.5)
        (status, body), took = await timed(authority.verify([pt, authority.discharger.discharge(pt)], app="orders"))
        assert (status, body["error"]) == (503, "unavailable") and took < 5
    finally:
        pg_cluster.pg_ctl_start()

    # Back by itself: no restart.
    deadline = time.monotonic() + 15
    while (await authority.client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "the authority did not become ready again"
        await asyncio.sleep(0.2)
    assert await authority.allowed([pt, authority.discharger.discharge(pt)], app="orders")
    await authority.create_org("beta")


async def test_discharger_fails_closed_and_recovers(real_discharger, pg_cluster):
    env = real_discharger
    await env.user()
    pg_cluster.stop("immediate")
    try:
        status, body, resp = await env.post("/v1/sessions", {"username": "alice", "password": "correct horse"})
        assert (status, body["error"]) == (503, "unavailable") and resp.headers["Retry-After"]
        # An anonymous client learns that the database is down, not where it is (SPEC §19).
        said = body["message"]
        assert "database" in said and "postgres" not in said and "127.0.0.1" not in said
        assert str(pg_cluster.port) not in said
        assert (await env.client.get("/readyz")).status == 503
    finally:
        pg_cluster.pg_ctl_start()
    deadline = time.monotonic() + 15
    while (await env.client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert await env.login()
