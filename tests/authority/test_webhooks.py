"""Webhooks (SPEC §18) from the real authority to a receiver on loopback that checks every
delivery with the `standardwebhooks` package: events written with the change, signed,
retried with the same id, never redirected, and given up on after three days."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from authority.app import create_app
from authority.webhooks import Webhooks
from clients import offline, tokens
from tests.conftest import AuthorityEnv
from tests.support import strip
from tests.support.receiver import Receiver


@pytest.fixture
async def receiver(aiohttp_server):
    r = Receiver()
    r.server = await aiohttp_server(r.app())
    r.url = str(r.server.make_url("/hook"))
    return r


@pytest.fixture
async def authority(aiohttp_client, authority_config, discharger, admin_token, monkeypatch) -> AuthorityEnv:
    monkeypatch.setattr(Webhooks, "POLL", 0.05)
    config = dataclasses.replace(authority_config, webhook_allow_private=True)  # the receiver is on loopback
    return AuthorityEnv(await aiohttp_client(create_app(config)), config, discharger, admin_token)


async def subscribe(env, receiver, events=("token.created", "token.revoked", "token.leaked"), org="acme"):
    await env.create_org(org)
    status, body = await env.post("/v1/webhooks", {"org": org, "url": receiver.url, "events": list(events)}, env.admin)
    assert status == 201, body
    assert body["secret"].startswith("whsec_") and body["state"] == "active"
    receiver.secret = body["secret"]
    return body


async def until(check, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def test_token_events_reach_the_receiver_signed_and_without_token_strings(authority, receiver):
    env = authority
    hook = await subscribe(env, receiver)
    pt = await env.mint(["apps orders"], name="deploy")
    st = (await strip(env, pt))["token"]
    await until(lambda: len(receiver.of_type("token.created")) == 2)
    minted, stripped = (r["event"]["data"] for r in receiver.of_type("token.created"))
    assert minted["kind"] == "permission" and minted["org"] == "acme" and minted["created_by"] == "@admin"
    assert minted["name"] == "deploy" and minted["expires_at"].endswith("Z")
    assert stripped["kind"] == "service" and stripped["token_id"] == tokens.parse(st).token_id
    status, _ = await env.post("/v1/revoke", {"tokens": [offline.attenuate(st, ["hosts worker-7"])]})
    await until(lambda: receiver.of_type("token.revoked"))
    one = receiver.of_type("token.revoked")[0]["event"]["data"]
    assert one["scope"] == "attenuation" and one["token_id"] == stripped["token_id"] and one["revoked"] == []
    status, _ = await env.post("/v1/revoke", {"tokens": [pt]})  # the permission token, with its cascade
    await until(lambda: len(receiver.of_type("token.revoked")) == 2)
    revoked = receiver.of_type("token.revoked")[1]["event"]
    assert sorted(revoked["data"]["revoked"]) == sorted([minted["token_id"], stripped["token_id"]])
    assert revoked["timestamp"].endswith("Z") and "scope" not in revoked["data"]
    ids = [r["id"] for r in receiver.received]
    assert len(set(ids)) == len(ids) == 4
    assert receiver.unverified == 0
    assert not any(st.encode() in r["raw"] or b"sable_" in r["raw"] for r in receiver.received)
    # the secret is sealed in the database, and never listed
    row = await env.service.store.webhook(hook["id"])
    assert row.sealed_secret and receiver.secret.removeprefix("whsec_").encode() not in row.sealed_secret
    resp = await env.client.get("/v1/webhooks", headers=env.admin)
    listed = (await resp.json())["webhooks"]
    assert [w["id"] for w in listed] == [hook["id"]] and "secret" not in listed[0] and listed[0]["pending"] == 0


async def test_other_orgs_and_unsubscribed_events_are_not_sent(authority, receiver):
    env = authority
    await subscribe(env, receiver, events=("token.revoked",))
    await env.create_org("other")
    await env.mint(["apps orders"], org="other")
    await env.mint(["apps orders"])  # token.created: not subscribed
    await asyncio.sleep(0.3)
    assert receiver.attempts == 0 and await env.service.store.outbox_depth() == 0


async def test_a_failed_delivery_is_retried_with_the_same_id(authority, receiver, monkeypatch):
    env = authority
    monkeypatch.setattr(Webhooks, "RETRIES", (1, 1, 1, 1, 1))
    await subscribe(env, receiver)
    receiver.fail_times = 2
    await env.mint(["apps orders"])
    await until(lambda: receiver.received, seconds=6)
    assert receiver.attempts == 3 and len(receiver.received) == 1
    assert await env.service.store.outbox_depth() == 0


@pytest.mark.parametrize("mode", ["redirect", "hang", "fail"])
async def test_redirects_timeouts_and_errors_are_failures_and_three_days_disable_the_endpoint(
        authority, receiver, monkeypatch, mode):
    env = authority
    monkeypatch.setattr(Webhooks, "TIMEOUT", 0.5)
    monkeypatch.setattr(Webhooks, "GIVE_UP_AFTER", 0)  # three days, compressed
    env.service.webhooks._http = None  # made again with the shorter timeout on each send
    hook = await subscribe(env, receiver)
    receiver.mode = mode
    await env.mint(["apps orders"])
    await until(lambda: receiver.attempts >= 1)
    deadline = time.monotonic() + 5
    while (await env.service.store.webhook(hook["id"])).state != "disabled":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert receiver.followed == 0 and receiver.received == []
    [row] = await env.service.store.audit_rows("webhook_disabled")
    assert row.detail["id"] == hook["id"] and "127.0.0.1" not in str(row.detail)
    resp = await env.client.get("/v1/webhooks", headers=env.admin)
    [listed] = (await resp.json())["webhooks"]
    assert listed["state"] == "disabled" and listed["pending"] == 1


async def test_the_test_endpoint_says_delivered_or_failed(authority, receiver):
    env = authority
    hook = await subscribe(env, receiver)
    resp = await env.client.post(f"/v1/webhooks/{hook['id']}/test", headers=env.admin)
    assert (await resp.json()) == {"result": "delivered"}
    assert receiver.received[-1]["event"]["type"] == "webhook.test"
    receiver.mode = "fail"
    resp = await env.client.post(f"/v1/webhooks/{hook['id']}/test", headers=env.admin)
    assert (await resp.json()) == {"result": "failed"}
    rows = await env.service.store.audit_rows("webhook_test")
    assert [r.outcome for r in rows] == ["ok", "failed"] and rows[1].detail["problem"] == "the receiver answered 500"


async def test_removing_an_endpoint_drops_what_is_queued_for_it(authority, receiver):
    env = authority
    hook = await subscribe(env, receiver)
    receiver.mode = "fail"
    await env.mint(["apps orders"])
    await until(lambda: receiver.attempts >= 1)
    resp = await env.client.delete(f"/v1/webhooks/{hook['id']}", headers=env.admin)
    assert resp.status == 200
    assert await env.service.store.outbox_depth() == 0 and await env.service.store.webhooks() == []


@pytest.mark.parametrize("url", ["http://example.com/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook",
                                 "https://[::1]/hook", "https://localhost/hook", "https://169.254.169.254/x",
                                 "https://[::ffff:10.0.0.1]/hook", "https://100.64.0.1/hook", "ftp://example.com/",
                                 "https://user:pw@example.com/hook", "not a url"])
async def test_private_targets_are_refused_in_production(aiohttp_client, authority_config, discharger, admin_token,
                                                         url):
    env = AuthorityEnv(await aiohttp_client(create_app(authority_config)), authority_config, discharger, admin_token)
    await env.create_org("acme")
    status, body = await env.post("/v1/webhooks", {"org": "acme", "url": url, "events": ["token.created"]}, env.admin)
    assert status == 400, body
    assert "pw" not in body["message"]


async def test_bad_requests_and_who_may_manage_webhooks(authority, receiver):
    env = authority
    await env.create_org("acme")
    for bad in ({"org": "acme", "url": receiver.url, "events": []},
                {"org": "acme", "url": receiver.url, "events": ["token.nope"]},
                {"org": "acme", "url": 7, "events": ["token.created"]}):
        assert (await env.post("/v1/webhooks", bad, env.admin))[0] == 400
    assert (await env.post("/v1/webhooks", {"org": "nope", "url": receiver.url, "events": ["token.created"]},
                           env.admin))[0] == 404
    assert (await env.post("/v1/webhooks", {"org": "acme", "url": receiver.url, "events": ["token.created"]}))[0] == 401
    # an org member who is not an admin
    ut = (await env.post("/v1/user-tokens", {"org": "acme", "role": "member"}))[1]["token"]
    member = {"Authorization": f"Bearer {ut},{env.discharger.discharge(ut, user='bob')}"}
    assert (await env.post("/v1/webhooks", {"org": "acme", "url": receiver.url, "events": ["token.created"]},
                           member))[0] == 403
    # an org admin, through self-service
    ut = (await env.post("/v1/user-tokens", {"org": "acme", "role": "admin"}))[1]["token"]
    boss = {"Authorization": f"Bearer {ut},{env.discharger.discharge(ut, user='carol')}"}
    status, body = await env.post("/v1/webhooks", {"org": "acme", "url": receiver.url, "events": ["token.created"]},
                                  boss)
    assert status == 201, body
    resp = await env.client.get("/v1/webhooks", headers=boss)
    assert [w["id"] for w in (await resp.json())["webhooks"]] == [body["id"]]


async def test_a_leaked_token_is_announced_with_where_it_was_found(authority, receiver):
    env = authority
    await subscribe(env, receiver, events=("token.leaked",))
    pt = await env.mint(["apps orders"])
    resp = await env.client.post("/v1/credentials/revoke", json={"credentials": [pt]})
    assert resp.status == 202
    await until(lambda: receiver.of_type("token.leaked"))
    data = receiver.of_type("token.leaked")[0]["event"]["data"]
    assert data["token_id"] == tokens.parse(pt).token_id and data["revoked"] == [data["token_id"]]
    assert data["source"] == "public" and data["kind"] == "permission"
    assert pt.encode() not in receiver.received[0]["raw"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_replicas_share_the_outbox_and_send_each_event_once(authority, receiver, aiohttp_client):
    env = authority
    other = await aiohttp_client(create_app(env.config))  # a second replica on the same database
    await subscribe(env, receiver, events=("token.created",))
    assert (await other.get("/healthz")).status == 200
    for _ in range(20):
        await env.mint(["apps orders"])
    await until(lambda: len(receiver.received) >= 20, seconds=10)
    await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
    ids = [r["id"] for r in receiver.received]
    assert len(ids) == 20 and len(set(ids)) == 20
    from authority.app import AUTHORITY
    sent = [env.service.webhooks.results["delivered"], other.app[AUTHORITY].webhooks.results["delivered"]]
    assert sum(sent) == 20, sent


async def test_expiry_notices_come_a_week_and_a_day_ahead_and_not_for_revoked_tokens(authority, receiver):
    env = authority
    await subscribe(env, receiver, events=("token.expiring",))
    week = 7 * 86400
    soon = await env.mint(["apps orders"], expires_in=week + 2)  # its week notice is due in 2 s
    gone = await env.mint(["apps orders"], expires_in=week + 2)
    await env.mint(["apps orders"], expires_in=3600)  # both notices already past: none
    assert (await env.post("/v1/revoke", {"tokens": [gone]}))[0] == 200
    assert await env.service.store.outbox_depth() == 4  # two notices each for the first two
    await until(lambda: receiver.of_type("token.expiring"), seconds=6)
    await until(lambda: env.service.webhooks.results["delivered"] >= 1)
    await asyncio.sleep(0.3)
    [notice] = receiver.of_type("token.expiring")
    assert notice["event"]["data"]["token_id"] == tokens.parse(soon).token_id
    assert notice["event"]["data"]["expires_at"].endswith("Z")
    assert await env.service.store.outbox_depth() == 2  # the day-ahead notices, due in 6 days


async def test_made_up_attenuations_of_one_token_are_one_leak_event(authority, receiver):
    env = authority
    await subscribe(env, receiver, events=("token.leaked",))
    st = (await strip(env, await env.mint(["apps orders"])))["token"]
    copies = [offline.attenuate(st, [f"hosts h{i}"]) for i in range(5)]
    resp = await env.client.post("/v1/credentials/revoke", json={"credentials": copies})
    assert resp.status == 202
    await until(lambda: receiver.of_type("token.leaked"))
    await asyncio.sleep(0.5)
    assert len(receiver.of_type("token.leaked")) == 1
    resp = await env.client.post("/v1/credentials/revoke", json={"credentials": copies})  # nothing new: none
    await asyncio.sleep(1.5)
    assert len(receiver.of_type("token.leaked")) == 1


async def test_an_org_has_at_most_twenty_webhooks(authority, receiver, monkeypatch):
    env = authority
    await env.create_org("acme")
    for n in range(20):
        status, _ = await env.post("/v1/webhooks", {"org": "acme", "url": receiver.url, "events": ["token.created"]},
                                   env.admin)
        assert status == 201, n
    status, body = await env.post("/v1/webhooks", {"org": "acme", "url": receiver.url, "events": ["token.created"]},
                                  env.admin)
    assert status == 400 and "at most 20" in body["message"]
