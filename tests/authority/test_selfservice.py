"""User tokens and self-service (SPEC §11) on the real authority: who may mint, list and
revoke which tokens with a user token and its discharge, and where user tokens are refused."""

from __future__ import annotations

import pytest

from clients import offline, tokens


async def user_token(env, org="acme", role="member") -> str:
    status, body = await env.post("/v1/user-tokens", {"org": org, "role": role})
    assert status == 201, body
    assert body["token"].startswith(tokens.USER) and body["expires_at"]
    return body["token"]


async def as_user(env, user="alice", org="acme", role="member") -> dict:
    ut = await user_token(env, org, role)
    dt = env.discharger.discharge(ut, user=user)
    return {"Authorization": f"Bearer {ut},{dt}"}


async def call(env, method, path, body=None, headers=None):
    resp = await env.client.request(method, path, json=body, headers=headers or {})
    return resp.status, await resp.json()


async def test_user_token_shape_and_inertness(authority):
    env = authority
    ut = await user_token(env, "not-yet-an-org", "admin")  # any well-formed org name
    parsed = tokens.parse(ut)
    assert tokens.user_claims(parsed) == ("not-yet-an-org", "admin")
    assert [c.cid.decode() for c in parsed.caveats if not c.third_party][0] == "org not-yet-an-org"
    assert sum(c.third_party for c in parsed.caveats) == 1
    # Where a user token is not accepted: verify, strip; revoke has nothing to revoke.
    dt = env.discharger.discharge(ut)
    status, body = await env.verify([ut, dt])
    assert status == 403 and body["message"] == "user tokens are not accepted here"
    status, body = await env.post("/v1/service-tokens", {"tokens": [ut, dt]})
    assert status == 400
    status, body = await env.post("/v1/revoke", {"tokens": [ut]})
    assert (status, body) == (200, {"revoked": []})
    for bad in ({"org": "a b"}, {"org": "acme", "role": "owner"}, {}):
        status, _ = await env.post("/v1/user-tokens", bad)
        assert status == 400, bad


async def test_member_mints_lists_and_revokes_own(authority):
    env = authority
    await env.create_org("acme")
    alice = await as_user(env, "alice")
    status, minted = await call(env, "POST", "/v1/tokens", {"org": "acme", "name": "ci", "caveats": ["apps orders"]},
                                alice)
    assert status == 201, minted
    status, listed = await call(env, "GET", "/v1/tokens", headers=alice)  # org defaults to the token's
    assert status == 200
    (row,) = listed["tokens"]
    assert row["created_by"] == "alice" and row["name"] == "ci" and row["expires_at"]
    assert row["caveats"] == minted["caveats"] and row["caveats"][0] == "org acme"
    status, body = await call(env, "POST", f"/v1/tokens/{minted['id']}/revoke", {}, alice)
    assert (status, body["revoked"]) == (200, [minted["id"]])
    assert not await env.allowed([minted["token"], env.discharger.discharge(minted["token"])], app="orders")


async def test_revoking_others_tokens_needs_admin(authority):
    env = authority
    admins = await env.mint(org="acme")  # made with the admin credential: created_by @admin
    admin_id = tokens.parse(admins).token_id
    bob = await as_user(env, "bob")
    status, body = await call(env, "POST", f"/v1/tokens/{admin_id}/revoke", {}, bob)
    assert status == 403 and "admin" in body["message"]
    boss = await as_user(env, "carol", role="admin")
    status, body = await call(env, "POST", f"/v1/tokens/{admin_id}/revoke", {}, boss)
    assert (status, body["revoked"]) == (200, [admin_id])
    # A service token stripped by bob is his to revoke (its user), though someone else minted the parent.
    pt = await env.mint(org="acme")
    status, st = await env.post("/v1/service-tokens", {"tokens": [pt, env.discharger.discharge(pt, user="bob")]})
    assert status == 201
    status, listed = await call(env, "GET", "/v1/tokens?org=acme", headers=bob)
    assert {r["id"]: r["created_by"] for r in listed["tokens"]}[st["id"]] == "bob"
    status, body = await call(env, "POST", f"/v1/tokens/{st['id']}/revoke", {}, bob)
    assert (status, body["revoked"]) == (200, [st["id"]])


async def test_another_orgs_tokens_are_out_of_reach(authority):
    env = authority
    beta_token = await env.mint(org="beta")
    beta_id = tokens.parse(beta_token).token_id
    await env.create_org("acme")
    alice = await as_user(env, "alice", role="admin")
    status, _ = await call(env, "GET", "/v1/tokens?org=beta", headers=alice)
    assert status == 403
    status, _ = await call(env, "POST", f"/v1/tokens/{beta_id}/revoke", {}, alice)
    assert status == 403
    status, _ = await call(env, "POST", "/v1/tokens", {"org": "beta"}, alice)
    assert status == 403
    # Appending `org beta` to an acme user token does not move it to beta: it only narrows.
    ut = await user_token(env, "acme")
    narrowed = offline.attenuate(ut, ["org beta"])
    dt = env.discharger.discharge(narrowed)
    status, _ = await call(env, "GET", "/v1/tokens?org=beta", headers={"Authorization": f"Bearer {narrowed},{dt}"})
    assert status in (401, 403)


@pytest.mark.parametrize("case", ["no discharge", "unbound", "other token's discharge", "expired discharge",
                                  "admin token", "garbage", "permission token"])
async def test_bad_user_credentials_are_401(authority, case):
    env = authority
    await env.create_org("acme")
    ut = await user_token(env)
    other = await user_token(env)
    value = {
        "no discharge": ut,
        "unbound": f"{ut},{env.discharger.discharge(ut, bind=False)}",
        "other token's discharge": f"{ut},{env.discharger.discharge(other)}",
        "expired discharge": f"{ut},{env.discharger.discharge(ut, ttl=-10)}",
        "admin token": "sable_adm_wrong",
        "garbage": "sable_ut_AAAA",
        "permission token": await env.mint(org="acme"),
    }[case]
    status, body = await call(env, "GET", "/v1/tokens?org=acme", headers={"Authorization": f"Bearer {value}"})
    assert status == 401, body


async def test_discharge_in_its_own_header_and_body_checked_after_auth(authority):
    env = authority
    await env.create_org("acme")
    ut = await user_token(env)
    headers = {"Authorization": f"Bearer {ut}", "Sable-Discharge": env.discharger.discharge(ut)}
    status, _ = await call(env, "GET", "/v1/tokens", headers=headers)
    assert status == 200
    status, _ = await call(env, "POST", "/v1/tokens", {"org": 5}, headers)
    assert status == 400
    status, _ = await call(env, "POST", "/v1/tokens", {"org": 5}, {"Authorization": f"Bearer {ut}"})
    assert status == 401  # authentication first


async def test_user_tokens_are_rate_limited_per_address(authority):
    env = authority
    for _ in range(10):
        status, _ = await env.post("/v1/user-tokens", {"org": "acme"})
        assert status == 201
    status, body = await env.post("/v1/user-tokens", {"org": "acme"})
    assert status == 429


async def test_a_token_under_another_kinds_prefix_is_refused(authority):
    env = authority
    ut = await user_token(env)
    pt = await env.mint(org="acme")
    for text, prefix in ((ut, tokens.PERMISSION), (pt, tokens.USER)):
        _, raw = tokens.split(text, tokens.MACAROON_PREFIXES)
        swapped = tokens.encode(prefix, raw)
        status, body = await env.verify([swapped, env.discharger.discharge(text)])
        assert status in (400, 403), body
    _, raw = tokens.split(pt, tokens.MACAROON_PREFIXES)
    swapped = tokens.encode(tokens.USER, raw)
    status, _ = await call(env, "GET", "/v1/tokens", headers={
        "Authorization": f"Bearer {swapped},{env.discharger.discharge(pt)}"})
    assert status == 401


async def test_offboarding_revokes_what_a_user_made_or_holds(authority):
    env = authority
    made_by_bob = await env.mint(org="acme")
    pt = await env.mint(org="acme")
    status, st = await env.post("/v1/service-tokens", {"tokens": [pt, env.discharger.discharge(pt, user="bob")]})
    assert status == 201
    bob = await as_user(env, "bob")
    status, mine = await call(env, "POST", "/v1/tokens", {"org": "acme", "name": "bob's"}, bob)
    assert status == 201
    status, body = await env.post("/v1/tokens/revoke", {"user": "bob"})
    assert status == 401  # admin only
    status, body = await env.post("/v1/tokens/revoke", {"user": "bob"}, env.admin)
    assert status == 200 and sorted(body["revoked"]) == sorted([st["id"], mine["id"]])
    assert tokens.parse(made_by_bob).token_id not in body["revoked"]  # made by the admin, held by nobody
    status, body = await env.post("/v1/tokens/revoke", {"user": "bob"}, env.admin)
    assert (status, body) == (200, {"revoked": []})
    status, _ = await env.post("/v1/tokens/revoke", {"user": "not a name"}, env.admin)
    assert status == 400


async def test_listing_an_unknown_org_is_404(authority):
    env = authority
    resp = await env.client.get("/v1/tokens?org=nope", headers=env.admin)
    assert resp.status == 404 and "does not exist" in (await resp.json())["message"]


async def test_one_token_by_id_for_the_admin_and_members_of_its_org_only(authority):
    """GET /v1/tokens/{id} (SPEC §19, `sable token show`): the admin sees any token; a member
    sees those of their org, and another org's answers as an unknown id does."""
    env = authority
    await env.create_org("acme")
    await env.create_org("beta")
    token_id = tokens.parse(await env.mint(org="acme")).token_id
    status, row = await call(env, "GET", f"/v1/tokens/{token_id}", headers=env.admin)
    assert status == 200 and row["id"] == token_id and row["org"] == "acme" and row["caveats"][0] == "org acme"
    status, row = await call(env, "GET", f"/v1/tokens/{token_id}", headers=await as_user(env, "alice"))
    assert status == 200 and row["id"] == token_id
    status, other = await call(env, "GET", f"/v1/tokens/{token_id}", headers=await as_user(env, "eve", org="beta"))
    status_unknown, unknown = await call(env, "GET", f"/v1/tokens/{'0' * 32}", headers=env.admin)
    assert (status, other) == (status_unknown, unknown) == (404, unknown)
    for bad in ("x" * 40, "..", "%00"):
        assert (await call(env, "GET", f"/v1/tokens/{bad}", headers=env.admin))[0] in (400, 404)  # a NUL: 400
    assert (await call(env, "GET", f"/v1/tokens/{token_id}"))[0] == 401
