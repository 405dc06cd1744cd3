"""Regenerate (SPEC §18) on the real authority: a new permission token like the old one, the
old one revoked with its cascade in the same transaction, for whoever may revoke it."""

from __future__ import annotations

import asyncio

import pytest

from clients import offline, tokens
from tests.support import strip


async def test_a_regenerated_token_keeps_name_caveats_and_lifetime_and_revokes_the_old(authority):
    env = authority
    old = await env.mint(["apps orders", "actions r"], name="deploy", expires_in=3600)
    st = (await strip(env, old))["token"]
    old_id = tokens.parse(old).token_id
    status, body = await env.post(f"/v1/tokens/{old_id}/regenerate", {}, env.admin)
    assert status == 201, body
    new = body["token"]
    assert sorted(body["revoked"]) == sorted([old_id, tokens.parse(st).token_id])
    assert not await env.allowed([st], app="orders")
    dt = env.discharger.discharge(new)
    assert await env.allowed([new, dt], app="orders")
    assert not await env.allowed([new, dt], app="billing")  # the same caveats
    resp = await env.client.get(f"/v1/tokens/{body['id']}", headers=env.admin)
    shown = await resp.json()
    assert shown["name"] == "deploy" and shown["revoked_at"] is None
    expires = [c for c in body["caveats"] if c.startswith("expires ")]
    assert len(expires) == 1 and body["caveats"][:3] == ["org acme", "apps orders", "actions r"]
    # a revoked id: 409; a service token: 400; unknown: 404
    assert (await env.post(f"/v1/tokens/{old_id}/regenerate", {}, env.admin))[0] == 409
    st_id = (await strip(env, new))["id"]
    assert (await env.post(f"/v1/tokens/{st_id}/regenerate", {}, env.admin))[0] == 400
    assert (await env.post(f"/v1/tokens/{'0' * 32}/regenerate", {}, env.admin))[0] == 404


async def test_two_regenerations_of_one_token_make_one_new_token(authority):
    env = authority
    old_id = tokens.parse(await env.mint(["apps orders"])).token_id
    results = await asyncio.gather(*(env.post(f"/v1/tokens/{old_id}/regenerate", {}, env.admin) for _ in range(4)))
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]
    listed = (await (await env.client.get("/v1/tokens?org=acme", headers=env.admin)).json())["tokens"]
    assert len([t for t in listed if t["revoked_at"] is None]) == 1


@pytest.mark.parametrize("role,who,allowed", [("member", "alice", True), ("member", "bob", False),
                                              ("admin", "carol", True)])
async def test_members_regenerate_what_they_may_revoke(authority, role, who, allowed):
    env = authority
    await env.create_org("acme")

    async def as_user(user, r):
        ut = (await env.post("/v1/user-tokens", {"org": "acme", "role": r}))[1]["token"]
        return {"Authorization": f"Bearer {ut},{env.discharger.discharge(ut, user=user)}"}
    status, minted = await env.post("/v1/tokens", {"org": "acme", "caveats": ["apps orders"]},
                                    await as_user("alice", "member"))
    assert status == 201
    status, body = await env.post(f"/v1/tokens/{minted['id']}/regenerate", {}, await as_user(who, role))
    assert status == (201 if allowed else 403), body
    if allowed:
        shown = await (await env.client.get(f"/v1/tokens/{body['id']}", headers=env.admin)).json()
        assert shown["created_by"] == who


async def test_regenerate_needs_a_user_token_that_may_mint_and_revoke_and_a_live_token(authority):
    env = authority
    await env.create_org("acme")
    ut = (await env.post("/v1/user-tokens", {"org": "acme", "role": "admin"}))[1]["token"]
    revoke_only = offline.attenuate(ut, ["actions d"])  # a revoking script's token must not mint
    headers = {"Authorization": f"Bearer {revoke_only},{env.discharger.discharge(revoke_only, user='carol')}"}
    old_id = tokens.parse(await env.mint(["apps orders"])).token_id
    status, _ = await env.post(f"/v1/tokens/{old_id}/regenerate", {}, headers)
    assert status in (401, 403)
    expired = tokens.parse(await env.mint(["apps orders"], expires_in=1)).token_id
    await asyncio.sleep(1.1)
    status, body = await env.post(f"/v1/tokens/{expired}/regenerate", {}, env.admin)
    assert status == 409 and "expired" in body["message"]
