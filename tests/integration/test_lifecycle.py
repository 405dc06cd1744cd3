"""Admin, strip, revocation (by id and by value), the feed, listing, audit and restarts."""

import asyncio
import dataclasses
import json
import time

import nacl.utils
import pytest

from authority.app import create_app
from authority.records import TokenCache
from authority.root_keys import RootKeys
from authority.service import Authority
from authority.store import StoreError, open_store
from clients import offline, tokens
from tests.support import strip

# --- admin -----------------------------------------------------------------------------------


async def test_admin_endpoints_need_the_credential(authority):
    for headers in ({}, {"Authorization": "Bearer nope"},
                    {"Authorization": "Bearer " + tokens.encode(tokens.ADMIN, bytes(32))}):
        status, body = await authority.post("/v1/orgs", {"name": "x"}, headers)
        assert status == 401 and body["error"] == "unauthorized"
        resp = await authority.client.get("/v1/tokens?org=acme", headers=headers)
        assert resp.status == 401


async def test_credentials_are_checked_before_the_body(authority):
    resp = await authority.client.post("/v1/orgs", data=b"not json")
    assert resp.status == 401
    resp = await authority.client.post("/v1/orgs", data=b"not json", headers=authority.admin)
    assert resp.status == 400


async def test_orgs(authority):
    status, body = await authority.post("/v1/orgs", {"name": "acme"}, authority.admin)
    assert status == 201 and body["name"] == "acme" and body["created_at"].endswith("Z")
    status, body = await authority.post("/v1/orgs", {"name": "acme"}, authority.admin)
    assert status == 409 and body["error"] == "conflict"
    status, body = await authority.post("/v1/orgs", {"name": "bad name"}, authority.admin)
    assert status == 400
    resp = await authority.client.get("/v1/orgs", headers=authority.admin)
    assert [o["name"] for o in (await resp.json())["orgs"]] == ["acme"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"org": "nowhere"}, 404),
        ({}, 400),
        ({"org": "acme", "caveats": ["apps *"]}, 400),
        ({"org": "acme", "caveats": ["user alice"]}, 400),
        ({"org": "acme", "caveats": "apps a"}, 400),
        ({"org": "acme", "expires_in": 0}, 400),
        ({"org": "acme", "expires_in": 31_536_001}, 400),
        ({"org": "acme", "expires_in": "60"}, 400),
        ({"org": "acme", "expires_in": 31_536_000}, 201),
    ],
)
async def test_mint_validation(authority, body, status):
    await authority.create_org()
    got, out = await authority.post("/v1/tokens", body, authority.admin)
    assert got == status, out


# --- strip -----------------------------------------------------------------------------------


async def test_strip_gives_a_non_expiring_service_token(authority):
    pt = await authority.mint(["apps orders"])
    pt = offline.attenuate(pt, ["hosts worker-7"])
    out = await strip(authority, pt, name="deploy")
    assert out["token"].startswith(tokens.SERVICE) and out["parent"] == tokens.parse(pt).token_id
    assert out["user"] == "alice" and out["id"] != out["parent"]
    assert out["caveats"] == ["org acme", "apps orders", "hosts worker-7"]
    st = tokens.parse(out["token"])
    assert not any(c.third_party for c in st.caveats)
    status, body = await authority.verify([out["token"]], app="orders", host="worker-7")
    assert status == 200 and body["kind"] == "service" and body["user"] == "alice"
    assert "user alice" not in body["caveats"]
    status, body = await authority.verify([out["token"]], app="orders", host="worker-7", user="bob")
    assert status == 403


async def test_strip_with_fresh_expiry(authority):
    pt = await authority.mint()
    out = await strip(authority, pt, expires_in=3600)
    assert out["caveats"][-1].startswith("expires ")


async def test_strip_refusals(authority):
    pt = await authority.mint()
    dt = authority.discharger.discharge(pt)
    st = (await strip(authority, pt))["token"]
    cases = [
        ([pt], 400),
        ([pt, dt, dt], 400),
        ([st, dt], 400),
        ([dt, dt], 400),
        ([pt, authority.discharger.discharge(pt, bind=False)], 403),
        ([pt, authority.discharger.discharge(pt, now=time.time() - 400)], 403),
    ]
    for presented, status in cases:
        got, body = await authority.post("/v1/service-tokens", {"tokens": presented})
        assert got == status, (presented, body)


# --- revocation ------------------------------------------------------------------------------


async def test_revoke_by_id_cascades(authority):
    pt = await authority.mint()
    st = await strip(authority, pt)
    host = offline.attenuate(st["token"], ["hosts worker-7"])
    assert await authority.allowed([host], host="worker-7")
    status, body = await authority.post(f"/v1/tokens/{st['parent']}/revoke", {}, authority.admin)
    assert status == 200 and sorted(body["revoked"]) == sorted([st["parent"], st["id"]])
    assert not await authority.allowed([host], host="worker-7")
    assert not await authority.allowed([st["token"]])
    status, body = await authority.verify([pt, authority.discharger.discharge(pt)])
    assert status == 403 and "revoked" in body["message"]
    status, body = await authority.post(f"/v1/tokens/{st['parent']}/revoke", {}, authority.admin)
    assert body == {"revoked": []}
    status, body = await authority.post(f"/v1/tokens/{'0' * 32}/revoke", {}, authority.admin)
    assert status == 404
    # A revoked permission token can no longer be stripped.
    got, body = await authority.post("/v1/service-tokens", {"tokens": [pt, authority.discharger.discharge(pt)]})
    assert got == 403


async def test_revoke_by_value_one_attenuation(authority):
    pt = await authority.mint()
    st = (await strip(authority, pt))["token"]
    a = offline.attenuate(st, ["hosts worker-a"])
    b = offline.attenuate(st, ["hosts worker-b"])
    a_more = offline.attenuate(a, ["actions r"])
    status, body = await authority.post("/v1/revoke", {"tokens": [a]})
    assert status == 200 and body == {"revoked": [{"id": tokens.parse(st).token_id, "scope": "attenuation"}]}
    assert not await authority.allowed([a], host="worker-a")
    status, body = await authority.verify([a_more], host="worker-a")
    assert status == 403 and "attenuation" in body["message"]
    assert await authority.allowed([b], host="worker-b")
    assert await authority.allowed([st], host="worker-a")
    status, body = await authority.post("/v1/revoke", {"tokens": [a]})
    assert body == {"revoked": []}


async def test_revoke_by_value_whole_token(authority):
    pt = await authority.mint()
    out = await strip(authority, pt)
    status, body = await authority.post("/v1/revoke", {"tokens": [out["token"]]})
    assert body == {"revoked": [{"id": out["id"], "scope": "token"}]}
    assert not await authority.allowed([out["token"]])
    status, body = await authority.post("/v1/revoke", {"tokens": [pt]})  # the holder of pt kills it too
    assert body == {"revoked": [{"id": out["parent"], "scope": "token"}]}


async def test_revoke_by_value_refusals(authority):
    pt = await authority.mint()
    tok = tokens.parse(pt)
    forged = tokens.Token(tok.prefix, tok.location, tok.identifier, tok.caveats, bytes(32)).encode()
    status, body = await authority.post("/v1/revoke", {"tokens": [forged]})
    assert status == 403
    status, body = await authority.post("/v1/revoke", {"tokens": [authority.discharger.discharge(pt)]})
    assert status == 400
    status, body = await authority.post("/v1/revoke", {"tokens": [pt, pt]})
    assert status == 400
    assert await authority.allowed([pt, authority.discharger.discharge(pt)])


async def test_revoke_by_value_is_rate_limited(authority):
    for _ in range(100):
        resp = await authority.client.post("/v1/revoke", json={"tokens": ["x"]})
        assert resp.status == 400
    resp = await authority.client.post("/v1/revoke", json={"tokens": ["x"]})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"] == "rate_limited"


# --- feed ------------------------------------------------------------------------------------


async def test_feed_head_and_long_poll(authority):
    resp = await authority.client.get("/v1/revocations")
    head = (await resp.json())["cursor"]
    pt = await authority.mint()
    st = await strip(authority, pt)

    async def revoke_later():
        await asyncio.sleep(0.2)
        await authority.post(f"/v1/tokens/{st['parent']}/revoke", {}, authority.admin)

    task = asyncio.create_task(revoke_later())
    started = time.monotonic()
    resp = await authority.client.get(f"/v1/revocations?after={head}&wait=10")
    elapsed = time.monotonic() - started
    body = await resp.json()
    await task
    assert elapsed < 1.0
    assert sorted(r["id"] for r in body["revoked"]) == sorted([st["parent"], st["id"]])
    assert body["cursor"] > head
    # Nothing newer: a short wait answers with the same cursor.
    resp = await authority.client.get(f"/v1/revocations?after={body['cursor']}&wait=0.1")
    assert (await resp.json()) == {"cursor": body["cursor"], "revoked": []}


async def test_feed_attenuation_entries_carry_the_base_id(authority):
    pt = await authority.mint()
    head = (await (await authority.client.get("/v1/revocations")).json())["cursor"]
    a = offline.attenuate(pt, ["hosts h"])
    await authority.post("/v1/revoke", {"tokens": [a]})
    body = await (await authority.client.get(f"/v1/revocations?after={head}")).json()
    assert [r["id"] for r in body["revoked"]] == [tokens.parse(pt).token_id]


@pytest.mark.parametrize("query", ["after=x", "after=-1", "after=0&wait=61", "after=0&wait=abc"])
async def test_feed_bad_parameters(authority, query):
    resp = await authority.client.get(f"/v1/revocations?{query}")
    assert resp.status == 400


# --- listing and audit -----------------------------------------------------------------------


async def test_token_listing_with_last_used(authority):
    pt = await authority.mint(name="ci")
    st = await strip(authority, pt, name="svc")
    assert await authority.allowed([st["token"]])
    resp = await authority.client.get("/v1/tokens?org=acme", headers=authority.admin)
    listed = {t["id"]: t for t in (await resp.json())["tokens"]}
    assert listed[st["id"]]["parent"] == st["parent"] and listed[st["id"]]["user"] == "alice"
    assert listed[st["id"]]["kind"] == "service" and listed[st["parent"]]["name"] == "ci"
    assert listed[st["id"]]["last_used_at"] is not None
    assert set(listed[st["id"]]) == {"id", "kind", "name", "org", "parent", "user", "created_by", "created_at",
                                     "expires_at", "revoked_at", "last_used_at", "caveats", "for", "strip_once"}
    assert listed[st["id"]]["created_by"] == "alice" and listed[st["parent"]]["created_by"] == "@admin"
    resp = await authority.client.get("/v1/tokens", headers=authority.admin)
    assert resp.status == 400


async def test_last_used_is_written_off_the_hot_path(authority):
    pt = await authority.mint()
    st = await strip(authority, pt)
    usage = authority.service.usage
    await usage._loop.stop()  # hold the background flush (every 50 ms here), so a slow run can't race it
    for _ in range(5):
        assert await authority.allowed([st["token"]])
    row, _ = await authority.service.store.load_token(st["id"])
    assert row.last_used_at is None  # not written by the verify itself...
    await usage.start()  # ...but by the next flush
    deadline = time.monotonic() + 5
    while (row := (await authority.service.store.load_token(st["id"]))[0]).last_used_at is None:
        assert time.monotonic() < deadline, "the flush never wrote last_used_at"
        await asyncio.sleep(0.02)
    assert abs(row.last_used_at - time.time()) < 5


async def test_audit_rows_hold_no_secrets(authority, capsys):
    pt = await authority.mint()
    st = await strip(authority, pt)
    await authority.verify([st["token"]], org="other")
    await authority.post("/v1/revoke", {"tokens": [st["token"]]})
    await authority.service.usage.flush()
    rows = await authority.service.store.audit_rows()
    events = [r.event for r in rows]
    for event in ("org_create", "mint", "strip", "verify_denied", "revoke"):
        assert event in events
    assert all(r.request_id and r.client for r in rows)
    dump = json.dumps([dataclasses.asdict(r) for r in rows]) + capsys.readouterr().out
    for secret in (pt, st["token"], authority.admin["Authorization"][7:]):
        assert secret[9:40] not in dump


# --- restarts and the master key -------------------------------------------------------------


async def test_restart_keeps_keys_and_revocations(aiohttp_client, authority_config, discharger, admin_token):
    from tests.conftest import AuthorityEnv
    first = AuthorityEnv(await aiohttp_client(create_app(authority_config)), authority_config, discharger, admin_token)
    pt = await first.mint()
    st = await strip(first, pt)
    st2 = await strip(first, pt)
    await first.post("/v1/revoke", {"tokens": [st2["token"]]})
    await first.client.close()

    second = AuthorityEnv(await aiohttp_client(create_app(authority_config)), authority_config, discharger, admin_token)
    assert await second.allowed([st["token"]])
    assert await second.allowed([pt, discharger.discharge(pt)])
    assert not await second.allowed([st2["token"]])


async def test_database_copy_without_the_master_key_verifies_nothing(authority, authority_config, tmp_path):
    pt = await authority.mint()
    st = await strip(authority, pt)
    if authority_config.db_path.startswith("postgresql://"):
        stolen = authority_config.db_path  # a copy of the data is the data: the same checks apply
    else:
        stolen = str(tmp_path / "stolen.db")
        await authority.service.store.backup(stolen)
    # The service refuses to start on it with another key...
    config = type(authority_config)(**{**authority_config.__dict__, "db_path": stolen, "master_key": nacl.utils.random(32)})
    with pytest.raises(StoreError, match="master key"):
        await Authority.open(config)
    # ...and even bypassing that check, no sealed root key opens.
    store = await open_store(stolen)
    try:
        rec = await TokenCache(store, RootKeys(nacl.utils.random(32))).get(st["id"])
        assert rec is not None and rec.sig0 is None
    finally:
        await store.close()


async def test_feed_cursor_out_of_range_is_400(authority):
    resp = await authority.client.get(f"/v1/revocations?after={10**30}")
    assert resp.status == 400


async def test_strip_refuses_a_discharge_for_another_token(authority):
    pt1 = await authority.mint()
    pt2 = await authority.mint()
    got, body = await authority.post("/v1/service-tokens", {"tokens": [pt1, authority.discharger.discharge(pt2)]})
    assert got == 403 and "no discharge" in body["message"]
    rebound = offline.bind(pt1, authority.discharger.discharge(pt2, bind=False))
    got, body = await authority.post("/v1/service-tokens", {"tokens": [pt1, rebound]})
    assert got == 403


async def test_revoking_an_attenuated_permission_token_revokes_what_was_stripped_from_it(authority):
    pt = await authority.mint(["apps orders"])
    narrow = offline.attenuate(pt, ["hosts ci-1"])
    narrower = offline.attenuate(narrow, ["actions r"])
    from_narrow = await strip(authority, narrow)
    from_narrower = await strip(authority, narrower)
    from_pt = await strip(authority, pt)
    status, body = await authority.post("/v1/revoke", {"tokens": [narrow]})
    assert status == 200
    assert body["revoked"][0] == {"id": from_pt["parent"], "scope": "attenuation"}
    assert sorted(r["id"] for r in body["revoked"][1:]) == sorted([from_narrow["id"], from_narrower["id"]])
    assert not await authority.allowed([from_narrow["token"]], app="orders", host="ci-1")
    assert not await authority.allowed([from_narrower["token"]], app="orders", host="ci-1")
    assert await authority.allowed([from_pt["token"]], app="orders")  # the parent's other lineage lives
    got, body = await authority.post("/v1/service-tokens", {"tokens": [narrow, authority.discharger.discharge(narrow)]})
    assert got == 403 and "revoked" in body["message"]


@pytest.mark.parametrize("field", ["name"])
async def test_lone_surrogates_are_400_not_500(authority, field):
    pt = await authority.mint()
    raw = ('{"tokens": ["%s", "%s"], "name": "\\ud800"}' % (pt, authority.discharger.discharge(pt))).encode()
    resp = await authority.client.post("/v1/service-tokens", data=raw)
    assert resp.status == 400
    resp = await authority.client.post("/v1/tokens", data=b'{"org": "acme", "name": "\\uDC00"}', headers=authority.admin)
    assert resp.status == 400
