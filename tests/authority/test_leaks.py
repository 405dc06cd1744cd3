"""Leaks at the authority (SPEC §18): GitHub's secret-scanning reports, signed by keys the
tests publish on loopback as GitHub does, and public revocation. Exactly what leaked is
revoked; nothing else changes, and nothing says more than the labels."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authority.app import create_app
from authority.store import ConsoleSessionRow
from clients import offline, tokens
from server.audit import AuditRecord
from tests.conftest import AuthorityEnv
from tests.support import service_token, strip
from tests.support.github import KEYS_PATH, GitHub, key_id

REPORT = "/v1/secret-scanning/github"


@pytest.fixture
async def github(aiohttp_server):
    gh = GitHub()
    gh.server = await aiohttp_server(gh.app())
    return gh


@pytest.fixture
async def authority(aiohttp_client, authority_config, discharger, admin_token, github) -> AuthorityEnv:
    config = dataclasses.replace(authority_config, public_revocations_per_hour=3,
                                 secret_scanning_keys_url=str(github.server.make_url(KEYS_PATH)))
    client = await aiohttp_client(create_app(config))
    return AuthorityEnv(client, config, discharger, admin_token)


async def report(env, body: bytes, headers: dict):
    resp = await env.client.post(REPORT, data=body, headers=headers)
    return resp.status, await resp.json()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def leak_rows(env):
    return await env.service.store.audit_rows("leak")


async def test_a_leaked_service_token_is_revoked_and_the_answer_names_it_by_hash(authority, github):
    env = authority
    st = await service_token(env)
    expired = await env.mint(["apps orders"], expires_in=1)
    await asyncio.sleep(1.1)
    forged = st[:-12] + ("A" if st[-12] != "A" else "B") + st[-11:]
    junk = "sable_st_notatoken"
    body, headers = github.report(st, expired, forged, junk)
    status, answer = await report(env, body, headers)
    assert status == 200
    assert answer == [{"token_hash": sha(t), "token_type": "sable_token", "label": label}
                      for t, label in ((st, "true_positive"), (expired, "true_positive"),
                                       (forged, "false_positive"), (junk, "false_positive"))]
    assert st not in json.dumps(answer)
    assert not await env.allowed([st], app="orders", host="worker-7")
    rows = await leak_rows(env)  # a row for each genuine item; the rest only counted
    assert [r.detail["label"] for r in rows] == ["true_positive", "true_positive"]
    assert all(r.detail["url"] == "https://github.com/octo/repo/blob/abc/config.yml" and r.detail["via"] == "github"
               for r in rows)
    assert [r.token_id for r in rows] == [tokens.parse(st).token_id, tokens.parse(expired).token_id]
    [summary] = await env.service.store.audit_rows("leak_report")
    assert summary.detail == {"via": "github", "items": 4, "genuine": 2}


async def test_a_leaked_host_attenuation_revokes_only_itself(authority, github):
    env = authority
    pt = await env.mint(["apps orders"])
    st = (await strip(env, pt))["token"]
    here, there = offline.attenuate(st, ["hosts worker-7"]), offline.attenuate(st, ["hosts worker-8"])
    status, answer = await report(env, *github.report(here))
    assert status == 200 and answer[0]["label"] == "true_positive"
    assert not await env.allowed([here], app="orders", host="worker-7")
    assert await env.allowed([there], app="orders", host="worker-8")
    assert await env.allowed([st], app="orders", host="worker-8")


async def test_a_repeated_report_changes_nothing_more(authority, github):
    env = authority
    st = await service_token(env)
    body, headers = github.report(st)
    first = await report(env, body, headers)
    head = await env.service.store.revocation_head()
    assert await report(env, body, headers) == first
    assert await env.service.store.revocation_head() == head
    assert len([r for r in await env.service.store.audit_rows("revoke") if r.token_id]) == 1


async def test_reports_not_signed_by_github_change_nothing(authority, github):
    env = authority
    st = await service_token(env)
    body, headers = github.report(st)
    stranger = ec.generate_private_key(ec.SECP256R1())
    bad = [
        {},  # no signature
        {"Github-Public-Key-Identifier": headers["Github-Public-Key-Identifier"]},  # one of the two headers
        {"Github-Public-Key-Signature": headers["Github-Public-Key-Signature"]},
        {**headers, "Github-Public-Key-Signature": "not base64!"},
        github.sign(body + b" "),  # signed another body
        github.sign(body, stranger),  # an unknown key id
        github.sign(body, stranger, kid=key_id(github.current)),  # a key from another document
        github.sign(body, github.old, kid=key_id(github.current)),  # a listed key under another's id
    ]
    for h in bad:
        status, answer = await report(env, body, h)
        assert status == 401, answer
    assert await env.allowed([st], app="orders", host="worker-7")
    assert await leak_rows(env) == [] and await env.service.store.audit_rows("leak_report") == []
    # a listed key that is no longer current still verifies
    status, answer = await report(env, body, github.sign(body, github.old))
    assert status == 200 and answer[0]["label"] == "true_positive"


async def test_unknown_key_ids_refetch_the_keys_at_most_once_a_minute(authority, github):
    env = authority
    body, _ = github.report("sable_st_x")
    stranger = ec.generate_private_key(ec.SECP256R1())
    for _ in range(5):
        assert (await report(env, body, github.sign(body, stranger)))[0] == 401
    assert github.fetches == 1
    assert (await report(env, body, github.sign(body)))[0] == 200  # known since the first fetch
    assert github.fetches == 1


async def test_oversized_reports_are_413_and_change_nothing(authority, github):
    env = authority
    st = await service_token(env)
    junk = b"[" + b" " * (1 << 20) + b"]"
    assert (await report(env, junk, github.sign(junk)))[0] == 413
    many = json.dumps([{"token": "sable_st_x"}] * 10_000).encode()  # under 1 MiB: the count is too many
    assert len(many) < 1 << 20
    assert (await report(env, many, github.sign(many)))[0] == 413
    thousand_one = json.dumps([{"token": "sable_st_x", "type": "t", "url": "u", "source": "s"}] * 1001).encode()
    assert (await report(env, thousand_one, github.sign(thousand_one)))[0] == 413
    for garbage in (b"{}", b"not json", b'[{"token": 7}]', b'["sable_st_x"]'):
        assert (await report(env, garbage, github.sign(garbage)))[0] == 400
    assert await env.allowed([st], app="orders", host="worker-7")


async def test_a_leaked_user_token_is_refused_until_it_expires(authority, github):
    env = authority
    await env.create_org("acme")
    status, body = await env.post("/v1/user-tokens", {"org": "acme", "role": "admin"})
    ut = body["token"]
    dt = env.discharger.discharge(ut, user="alice")
    headers = {"Authorization": f"Bearer {ut},{dt}"}
    assert (await env.client.get("/v1/tokens", headers=headers)).status == 200
    store = env.service.store
    await store.create_console_session(b"alice-browser", ConsoleSessionRow("alice", "acme", "admin", 2**40), 1,
                                       AuditRecord("console_login"))
    await store.create_console_session(b"bob-browser", ConsoleSessionRow("bob", "acme", "admin", 2**40), 1,
                                       AuditRecord("console_login"))
    other = env.discharger.discharge(await env.mint(["apps orders"]), user="alice")  # not bound to ut
    status, answer = await report(env, *github.report(ut, dt, other))
    assert [a["label"] for a in answer] == ["true_positive", "true_positive", "false_positive"]
    # the discharge bound to the user token names whose console sessions end
    assert await store.console_session(b"alice-browser", 2) is None
    assert await store.console_session(b"bob-browser", 2) is not None
    resp = await env.client.get("/v1/tokens", headers=headers)
    assert resp.status == 401 and "leaked" in (await resp.json())["message"]


async def test_a_leaked_admin_credential_is_disabled_for_good(authority, github, admin_token):
    env = authority
    assert (await env.client.get("/v1/orgs", headers=env.admin)).status == 200
    status, answer = await report(env, *github.report(admin_token))
    assert answer[0]["label"] == "true_positive"
    assert (await env.client.get("/v1/orgs", headers=env.admin)).status == 401
    status, answer = await report(env, *github.report(admin_token))  # still known as genuine
    assert answer[0]["label"] == "true_positive"
    assert await env.service.store.credential_revoked("adm:" + tokens.secret_digest(admin_token).hex())


async def test_public_revocation_answers_alike_and_revokes_genuine_tokens(authority):
    env = authority
    st = await service_token(env)
    public = env.service.public_revocation
    await public.loop.stop()  # to look at the queue before it is worked off
    answers = []
    for found in ([st], ["sable_st_notatoken"], ["anything at all"]):
        resp = await env.client.post("/v1/credentials/revoke", json={"credentials": found})
        answers.append((resp.status, await resp.read()))
    assert answers == [(202, b"{}")] * 3
    queued = await env.service.store.claim_leak_reports(0, 0, 10)  # a lease of 0 s: still free for the loop
    assert len(queued) == 3 and not any(st.encode() in sealed or b"sable_st_" in sealed for _, sealed, _ in queued)
    public.loop.start()
    deadline = time.monotonic() + 5
    while await env.allowed([st], app="orders", host="worker-7"):
        assert time.monotonic() < deadline, "not revoked within 5 s"
        await asyncio.sleep(0.05)
    while await env.service.store.leak_queue_depth():
        assert time.monotonic() < deadline, "reports still queued after 5 s"
        await asyncio.sleep(0.05)
    [row] = await leak_rows(env)
    assert row.detail["label"] == "true_positive" and row.detail["via"] == "public"
    summaries = await env.service.store.audit_rows("leak_report")
    assert sorted(r.detail["genuine"] for r in summaries) == [0, 0, 1]
    # the fourth report this hour from this address (the test's limit is 3)
    resp = await env.client.post("/v1/credentials/revoke", json={"credentials": ["x"]})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


@pytest.mark.parametrize("body", [b"", b"[]", b'{"credentials": []}', b'{"credentials": [1]}',
                                  b'{"credentials": "sable_st_x"}', b"\xff\xfe"])
async def test_public_revocation_refuses_what_is_not_a_report(authority, body):
    resp = await authority.client.post("/v1/credentials/revoke", data=body)
    assert resp.status == 400


async def test_public_revocation_size_limits(authority):
    env = authority
    resp = await env.client.post("/v1/credentials/revoke", json={"credentials": ["x"] * 1001})
    assert resp.status == 413
    resp = await env.client.post("/v1/credentials/revoke", data=b"{" + b" " * (1 << 20) + b"}")
    assert resp.status == 413


async def test_a_leaked_configured_admin_token_stops_the_next_start(authority, github, admin_token, aiohttp_client):
    await report(authority, *github.report(admin_token))
    await authority.client.close()
    from clients.errors import ConfigError
    with pytest.raises(ConfigError, match="reported leaked"):
        await aiohttp_client(create_app(authority.config))


async def test_a_string_repeated_in_a_report_is_judged_once(authority, github):
    env = authority
    st = await service_token(env)
    body, headers = github.report(*[st] * 300, *["sable_dt_made_up"] * 300)
    status, answer = await report(env, body, headers)
    assert status == 200 and len(answer) == 600
    assert {a["label"] for a in answer[:300]} == {"true_positive"} and {a["label"] for a in answer[300:]} == {"false_positive"}
    assert len(await leak_rows(env)) == 1
    [summary] = await env.service.store.audit_rows("leak_report")
    assert summary.detail == {"via": "github", "items": 600, "genuine": 1}
