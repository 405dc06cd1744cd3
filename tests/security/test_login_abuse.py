"""Attacker goal: guess passwords, enumerate users, or get discharges without the right."""

import asyncio

from clients.tickets import b64e
from tests.support import ticket_for


async def test_100_parallel_guesses(real_discharger):
    env = real_discharger
    await env.user()
    results = await asyncio.gather(*[
        env.post("/v1/sessions", {"username": "alice", "password": f"guess-{i}"}) for i in range(100)
    ])
    statuses = [r[0] for r in results]
    assert statuses.count(401) == 5 and statuses.count(429) == 95
    assert all(r[1]["error"] == "rate_limited" and r[2].headers["Retry-After"] for r in results if r[0] == 429)
    # Even the right password is refused while the throttle holds.
    status, body, _ = await env.post("/v1/sessions", {"username": "alice", "password": "correct horse"})
    assert status == 429


async def test_user_enumeration_gets_identical_answers(real_discharger):
    env = real_discharger
    await env.user()
    a = await env.post("/v1/sessions", {"username": "alice", "password": "wrong one"})
    b = await env.post("/v1/sessions", {"username": "nobody", "password": "wrong one"})
    c = await env.post("/v1/sessions", {"username": "bad name!", "password": "wrong one"})
    assert a[0] == b[0] == c[0] == 401 and a[1] == b[1] == c[1]


async def test_discharge_with_a_forged_session(real_discharger):
    env = real_discharger
    from clients import tokens
    status, body, _ = await env.discharge(tokens.encode(tokens.SESSION, bytes(32)), "AAAA")
    assert status == 401 and body["error"] == "unauthorized"


async def test_discharge_for_an_org_the_user_is_not_in(real_discharger):
    env = real_discharger
    await env.user(orgs=["acme"])
    session = await env.login()
    _, ticket = ticket_for(env, org="other")
    status, body, _ = await env.discharge(session, b64e(ticket))
    assert status == 403 and body["error"] == "denied"


async def test_admin_endpoints_with_a_session_credential(real_discharger):
    env = real_discharger
    await env.user()
    session = await env.login()
    status, body, _ = await env.post("/v1/users", {"username": "eve", "password": "long enough", "orgs": ["acme"]},
                                     {"Authorization": f"Bearer {session}"})
    assert status == 401 and body["error"] == "unauthorized"
