"""The login throttle lives in the database (SPEC §10): replicas on one database count failures
together, and what it stores names no username (people paste passwords into that field)."""

from __future__ import annotations

import asyncio

from discharger.app import DISCHARGER, create_app


async def test_failures_through_two_replicas_count_together(real_discharger, aiohttp_client):
    env = real_discharger
    await env.user()
    other = await aiohttp_client(create_app(env.config))

    async def attempt(client, password="wrong guess"):
        resp = await client.post("/v1/sessions", json={"username": "alice", "password": password})
        return resp.status, resp.headers.get("Retry-After")

    statuses = [(await attempt(env.client if i % 2 else other))[0] for i in range(5)]
    assert statuses == [401] * 5
    for client in (env.client, other):
        status, retry_after = await attempt(client, "correct horse")
        assert status == 429 and 1 <= int(retry_after) <= 301


async def test_parallel_guesses_through_two_replicas_get_five_tries_in_total(real_discharger, aiohttp_client):
    env = real_discharger
    await env.user()
    other = await aiohttp_client(create_app(env.config))
    results = await asyncio.gather(*[
        (env.client if i % 2 else other).post("/v1/sessions", json={"username": "alice", "password": f"guess-{i}"})
        for i in range(40)])
    statuses = [r.status for r in results]
    assert statuses.count(401) == 5 and statuses.count(429) == 35


async def test_a_success_clears_the_username_count_on_every_replica(real_discharger, aiohttp_client):
    env = real_discharger
    await env.user()
    other = await aiohttp_client(create_app(env.config))
    for _ in range(4):
        assert (await env.post("/v1/sessions", {"username": "alice", "password": "wrong guess"}))[0] == 401
    await env.login()
    for _ in range(4):
        resp = await other.post("/v1/sessions", json={"username": "alice", "password": "wrong guess"})
        assert resp.status == 401  # the count started again


async def test_the_throttle_stores_no_username(real_discharger):
    env = real_discharger
    pasted = "my-secret-password-42"
    status, _, _ = await env.post("/v1/sessions", {"username": pasted, "password": "whatever"})
    assert status == 401
    store = env.client.app[DISCHARGER].store
    rows = (await store.snapshot([("login_failures", ("subject", "at"))]))["login_failures"]
    subjects = [r[0] for r in rows]
    assert len(subjects) == 2 and not any(pasted in s for s in subjects)
    assert any(s.startswith("addr:127.0.0.1") for s in subjects)
