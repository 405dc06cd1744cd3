
"""The real discharger on loopback: users, logins, throttling, discharges and key rotation."""

import asyncio
import time
from dataclasses import replace

import pytest

from clients import caveats, tokens
from clients.tickets import b64d, b64e
from tests.support import sealed_ticket, ticket_for


async def test_info_publishes_keys(real_discharger):
    resp = await real_discharger.client.get("/v1/info")
    body = await resp.json()
    assert body["service"] == "sable-discharger" and body["location"] == "http://discharger.test"
    assert len(body["public_keys"]) == 1 and len(b64d(body["public_keys"][0]["key"])) == 32


async def test_users_need_admin_and_valid_input(real_discharger):
    env = real_discharger
    status, body, _ = await env.post("/v1/users", {"username": "alice", "password": "correct horse", "orgs": ["acme"]})
    assert status == 401
    await env.user()
    status, body, _ = await env.post("/v1/users", {"username": "alice", "password": "correct horse"}, env.admin)
    assert status == 409
    for bad in ({"username": "a b", "password": "correct horse"}, {"username": "bob", "password": "short"},
                {"username": "bob", "password": "correct horse", "orgs": "acme"}, {"username": 5}):
        status, body, _ = await env.post("/v1/users", bad, env.admin)
        assert status == 400, bad


async def test_login_and_logout(real_discharger):
    env = real_discharger
    await env.user()
    session = await env.login()
    assert session.startswith(tokens.SESSION)
    resp = await env.client.delete("/v1/sessions/current", headers={"Authorization": f"Bearer {session}"})
    assert resp.status == 204
    _, ticket = ticket_for(env)
    status, body, _ = await env.discharge(session, b64e(ticket))
    assert status == 401


async def test_unknown_user_and_wrong_password_look_the_same(real_discharger):
    env = real_discharger
    await env.user()
    s1, b1, _ = await env.post("/v1/sessions", {"username": "alice", "password": "wrong password"})
    s2, b2, _ = await env.post("/v1/sessions", {"username": "mallory", "password": "wrong password"})
    assert s1 == s2 == 401 and b1 == b2


async def test_login_throttle_per_username(real_discharger):
    env = real_discharger
    await env.user()
    for _ in range(5):
        status, _, _ = await env.post("/v1/sessions", {"username": "alice", "password": "nope nope"})
        assert status == 401
    status, body, resp = await env.post("/v1/sessions", {"username": "alice", "password": "correct horse"})
    assert status == 429 and body["error"] == "rate_limited" and int(resp.headers["Retry-After"]) > 0


async def test_login_throttle_per_address(real_discharger):
    env = real_discharger
    for i in range(20):
        status, _, _ = await env.post("/v1/sessions", {"username": f"user{i}", "password": "nope nope"})
        assert status == 401
    status, body, resp = await env.post("/v1/sessions", {"username": "someone-else", "password": "x"})
    assert status == 429 and "Retry-After" in resp.headers


async def test_only_failed_logins_count_toward_the_address_limit(real_discharger):
    env = real_discharger
    await env.user()
    for _ in range(25):  # more good logins than the per-address limit (20): a NAT's users
        await env.login()
    for _ in range(4):
        status, _, _ = await env.post("/v1/sessions", {"username": "mallory", "password": "nope nope"})
        assert status == 401
    await env.login()  # still fine: 4 failures, not 29 attempts
    for name in ("m1", "m2", "m3", "m4"):
        for _ in range(4):
            await env.post("/v1/sessions", {"username": name, "password": "nope nope"})
    status, body, resp = await env.post("/v1/sessions", {"username": "alice", "password": "correct horse"})
    assert status == 429 and f"try again in {resp.headers['Retry-After']} s" in body["message"]


async def test_parallel_guesses_cannot_outrun_the_throttle(real_discharger):
    env = real_discharger
    await env.user()
    results = await asyncio.gather(*[
        env.post("/v1/sessions", {"username": "alice", "password": f"guess {i}"}) for i in range(30)
    ])
    statuses = [r[0] for r in results]
    assert statuses.count(401) == 5 and statuses.count(429) == 25


async def test_logins_in_flight_do_not_block_healthz(real_discharger):
    env = real_discharger
    await env.user()
    logins = [asyncio.create_task(env.post("/v1/sessions", {"username": "alice", "password": "correct horse"}))
              for _ in range(4)]
    await asyncio.sleep(0.01)
    resp = await env.client.get("/healthz")
    assert resp.status == 200
    # The health check answered while argon2id was still running in the thread pool.
    assert not all(t.done() for t in logins)
    assert [r[0] for r in await asyncio.gather(*logins)] == [201] * 4


async def test_discharge_contents(real_discharger):
    env = real_discharger
    await env.user()
    session = await env.login()
    pt, ticket = ticket_for(env, ttl=120)
    status, body, _ = await env.discharge(session, b64e(ticket))
    assert status == 201
    dt = tokens.parse(body["discharge"], (tokens.DISCHARGE,))
    assert dt.identifier == ticket and dt.location == "http://discharger.test"
    texts = [c.cid.decode() for c in dt.caveats]
    assert texts[0] == "user alice" and texts[1].startswith("expires ")
    expiry = caveats.parse_time(texts[1].split(" ", 1)[1])
    assert int(time.time()) + 118 <= expiry <= int(time.time()) + 120  # the ticket's 120 s, not 300
    assert body["expires_at"] == texts[1].split(" ", 1)[1]


async def test_disabled_user_and_non_member_get_403(real_discharger):
    env = real_discharger
    await env.user("alice", orgs=["acme"])
    await env.user("bob", orgs=["acme"])
    bob = await env.login("bob")
    alice = await env.login("alice")
    _, ticket = ticket_for(env, org="beta")
    status, body, _ = await env.discharge(alice, b64e(ticket))
    assert status == 403 and "member" in body["message"]
    status, _, _ = await env.post("/v1/users/bob/disable", {}, env.admin)
    assert status == 200
    _, ticket = ticket_for(env, org="acme")
    status, body, _ = await env.discharge(bob, b64e(ticket))
    assert status == 403 and "disabled" in body["message"]
    status, _, _ = await env.post("/v1/sessions", {"username": "bob", "password": "correct horse"})
    assert status == 401
    # Membership changes apply to the next discharge.
    status, _, _ = await env.post("/v1/users/alice/orgs", {"orgs": ["beta"]}, env.admin)
    _, ticket = ticket_for(env, org="beta")
    status, _, _ = await env.discharge(alice, b64e(ticket))
    assert status == 201


async def test_roles_in_memberships_and_in_discharges(real_discharger):
    env = real_discharger
    status, body, _ = await env.post("/v1/users", {"username": "alice", "password": "correct horse",
                                                   "orgs": ["beta", {"org": "acme", "role": "admin"}]}, env.admin)
    assert status == 201
    assert body == {"username": "alice", "orgs": ["acme", "beta"], "roles": {"acme": "admin", "beta": "member"}}
    for bad in (["acme", {"org": "acme", "role": "owner"}], [{"org": "acme", "extra": 1}], [{"role": "admin"}], [3]):
        status, _, _ = await env.post("/v1/users/alice/orgs", {"orgs": bad}, env.admin)
        assert status == 400, bad
    alice = await env.login("alice")
    for org, role, expected in (("acme", "admin", 201), ("acme", "member", 201), ("beta", "member", 201),
                                ("beta", "admin", 403)):
        status, body, _ = await env.discharge(alice, b64e(sealed_ticket(env, org, role, "user")))
        assert status == expected, (org, role, body)
    status, body, _ = await env.discharge(alice, b64e(sealed_ticket(env, "beta", "admin")))
    assert "needs role admin" in body["message"]
    # Demoted: the next discharge needing admin is refused.
    status, body, _ = await env.post("/v1/users/alice/orgs", {"orgs": ["acme"]}, env.admin)
    assert body["roles"] == {"acme": "member"}
    status, _, _ = await env.discharge(alice, b64e(sealed_ticket(env, "acme", "admin")))
    assert status == 403


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + bytes([t[-1] ^ 1]),  # tampered ciphertext
    lambda t: t[:20],  # truncated
    lambda t: bytes([2]) + t[1:],  # unknown version
    lambda t: t[:1] + bytes(8) + t[9:],  # unknown key id
])
async def test_tampered_ticket_is_400(real_discharger, mutate):
    env = real_discharger
    await env.user()
    session = await env.login()
    _, ticket = ticket_for(env)
    status, body, _ = await env.discharge(session, b64e(mutate(ticket)))
    assert status == 400 and body["error"] == "bad_request"


async def test_garbage_ticket_and_missing_session(real_discharger):
    env = real_discharger
    await env.user()
    session = await env.login()
    for ticket in ("!!!", 5, None, "A" * 30000):
        status, body, _ = await env.discharge(session, ticket)
        assert status in (400, 413), ticket
    status, body, _ = await env.discharge("sable_ss_nope", "AAAA")
    assert status == 401
    status, body, _ = await env.post("/v1/discharges", {"ticket": "AAAA"})
    assert status == 401


async def test_key_rotation(real_discharger):
    env = real_discharger
    await env.user()
    session = await env.login()
    keys = env.service.keys
    old_kid = keys.public_keys()[0]["kid"]
    _, old_ticket = ticket_for(env, keys=keys)
    new_kid = await keys.rotate()
    body = await (await env.client.get("/v1/info")).json()
    assert [k["kid"] for k in body["public_keys"]] == [new_kid, old_kid]
    _, new_ticket = ticket_for(env, keys=keys)
    for ticket in (old_ticket, new_ticket):  # both accepted during the rotation
        status, _, _ = await env.discharge(session, b64e(ticket))
        assert status == 201
    await keys.retire(old_kid)
    status, body, _ = await env.discharge(session, b64e(old_ticket))
    assert status == 400 and "unknown key" in body["message"]
    status, _, _ = await env.discharge(session, b64e(new_ticket))
    assert status == 201


async def test_lone_surrogates_in_login_are_400(real_discharger):
    env = real_discharger
    for body in (b'{"username": "\\ud800", "password": "x"}', b'{"username": "alice", "password": "\\udfff"}'):
        resp = await env.client.post("/v1/sessions", data=body)
        assert resp.status == 400


async def test_deeply_nested_ticket_payload_is_400(real_discharger):
    import nacl.public
    env = real_discharger
    await env.user()
    session = await env.login()
    keys = env.service.keys
    kid, key = keys.public_keys()[0]["kid"], b64d(keys.public_keys()[0]["key"])
    ticket = bytes([1]) + bytes.fromhex(kid) + nacl.public.SealedBox(nacl.public.PublicKey(key)).encrypt(b"[" * 5000)
    status, body, _ = await env.discharge(session, b64e(ticket))
    assert status == 400


async def test_failed_login_never_records_a_pasted_secret(real_discharger):
    env = real_discharger
    pasted = tokens.encode(tokens.ADMIN, bytes(32))
    status, _, _ = await env.post("/v1/sessions", {"username": pasted, "password": "whatever"})
    assert status == 401
    from discharger.app import DISCHARGER
    rows = [(r.user,) for r in await env.client.app[DISCHARGER].store.audit_rows("login")]
    assert rows == [("<unknown>",)]


async def test_failures_before_a_user_existed_do_not_lock_them_out(real_discharger):
    env = real_discharger
    for _ in range(5):  # someone probes the name before the account exists
        status, _, _ = await env.post("/v1/sessions", {"username": "newcomer", "password": "nope nope"})
        assert status == 401
    status, _, _ = await env.post("/v1/sessions", {"username": "newcomer", "password": "nope nope"})
    assert status == 429
    await env.user("newcomer")
    assert (await env.login("newcomer")).startswith(tokens.SESSION)


@pytest.mark.parametrize("reachable", [True, False])
async def test_role_is_added_only_once_every_configured_authority_lists_it(
        aiohttp_client, discharger_config, admin_token, authority, reachable):
    """SPEC §16/§19: an earlier authority denies unknown caveats, so `role` goes into discharges
    only once every configured authority's /v1/info lists it; one that does not answer holds it
    back (and none configured adds nothing)."""
    from clients import offline
    from discharger.app import create_app
    from tests.conftest import DischargerEnv
    from tests.support import authority_url, free_port

    urls = (authority_url(authority),) + (() if reachable else (f"http://127.0.0.1:{free_port()}",))
    discharger_config = replace(discharger_config, authority_urls=urls)
    env = DischargerEnv(await aiohttp_client(create_app(discharger_config)), discharger_config, admin_token)
    await env.user(orgs=[{"org": "acme", "role": "admin"}])
    session = await env.login()
    status, body, _ = await env.discharge(session, b64e(sealed_ticket(env)))
    assert status == 201, body
    said = offline.inspect(body["discharge"])["caveats"]
    assert ("role admin" in said) == reachable, said


async def test_a_username_may_not_hold_a_colon(real_discharger):
    env = real_discharger
    status, body, _ = await env.post("/v1/users", {"username": "ci:deploy", "password": "correct horse"}, env.admin)
    assert status == 400 and "no ':'" in body["message"]


async def test_a_database_holding_a_username_with_a_colon_is_refused_at_start_naming_it(discharger_config):
    from clients.errors import ConfigError
    from discharger.service import Discharger
    from discharger.store import open_store
    from server.audit import AuditRecord

    store = await open_store(discharger_config.db_path)
    await store.create_user("ci:deploy", b"x", {}, 1, AuditRecord("user_create"))  # as an old version could
    await store.close()
    with pytest.raises(ConfigError, match="'ci:deploy'"):
        await Discharger.open(discharger_config)


async def test_sessions_and_discharges_say_how_they_were_made(real_discharger):
    env = real_discharger
    await env.user()
    status, body, _ = await env.post("/v1/sessions", {"username": "alice", "password": "correct horse"})
    assert status == 201 and body["auth_method"] == "password"
    session = body["session"]
    resp = await env.client.get("/v1/sessions/current", headers={"Authorization": f"Bearer {session}"})
    assert (await resp.json())["auth_method"] == "password"
    status, body, _ = await env.discharge(session, b64e(sealed_ticket(env)))
    assert status == 201 and body["auth_method"] == "password"


async def test_with_passwords_off_no_password_signs_in(aiohttp_client, discharger_config, admin_token):
    from discharger.app import create_app

    client = await aiohttp_client(create_app(replace(discharger_config, passwords=False)))
    admin = {"Authorization": f"Bearer {admin_token}"}
    resp = await client.post("/v1/users", json={"username": "alice", "password": "correct horse"}, headers=admin)
    assert resp.status == 201  # break-glass accounts may still be made
    resp = await client.post("/v1/sessions", json={"username": "alice", "password": "correct horse"})
    body = await resp.json()
    assert resp.status == 403 and body["reason"] == "passwords_off" and "--web" in body["message"]
    page = await (await client.get("/login")).text()
    assert 'name="password"' not in page
