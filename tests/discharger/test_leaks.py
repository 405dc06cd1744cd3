"""The discharger's own secrets reported leaked through GitHub's secret scanning (SPEC §18):
reports signed by keys the tests publish on loopback as GitHub does. A session ends, an admin
credential is disabled for good; nothing else changes."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from clients.errors import ConfigError
from discharger.app import create_app
from tests.conftest import DischargerEnv
from tests.support.github import KEYS_PATH, GitHub

REPORT = "/v1/secret-scanning/github"


@pytest.fixture
async def github(aiohttp_server):
    gh = GitHub()
    gh.server = await aiohttp_server(gh.app())
    return gh


@pytest.fixture
async def discharger(aiohttp_client, discharger_config, admin_token, github) -> DischargerEnv:
    config = dataclasses.replace(discharger_config, secret_scanning_keys_url=str(github.server.make_url(KEYS_PATH)))
    return DischargerEnv(await aiohttp_client(create_app(config)), config, admin_token)


async def report(env, body, headers):
    resp = await env.client.post(REPORT, data=body, headers=headers)
    return resp.status, await resp.json()


async def test_a_leaked_session_ends_and_others_do_not(discharger, github):
    env = discharger
    await env.user("alice")
    leaked, kept = await env.login(), await env.login()
    body, headers = github.report(leaked, "sable_ss_made_up", "sable_pt_not_ours")
    status, answer = await report(env, body, headers)
    assert status == 200
    assert [a["label"] for a in answer] == ["true_positive", "false_positive", "false_positive"]
    assert answer[0]["token_hash"] == hashlib.sha256(leaked.encode()).hexdigest() and leaked not in str(answer)
    whoami = "/v1/sessions/current"
    resp = await env.client.get(whoami, headers={"Authorization": f"Bearer {leaked}"})
    assert resp.status == 401
    assert (await env.client.get(whoami, headers={"Authorization": f"Bearer {kept}"})).status == 200
    assert await report(env, body, headers) == (status, answer)  # repeated: the same labels
    rows = await env.service.store.audit_rows("leak")
    assert len(rows) == 2 and rows[0].detail["kind"] == "session"  # one per genuine item, per report


async def test_a_leaked_admin_credential_is_disabled_and_stops_the_next_start(discharger, github, admin_token,
                                                                              aiohttp_client):
    env = discharger
    assert (await env.client.post("/v1/users", json={"username": "bob", "password": "pw pw pw pw",
                                                      "orgs": ["acme"]}, headers=env.admin)).status == 201
    status, answer = await report(env, *github.report(admin_token))
    assert answer[0]["label"] == "true_positive"
    assert (await env.client.post("/v1/users", json={"username": "carol", "password": "pw pw pw pw",
                                                      "orgs": ["acme"]}, headers=env.admin)).status == 401
    await env.client.close()
    with pytest.raises(ConfigError, match="reported leaked"):
        await aiohttp_client(create_app(env.config))


async def test_reports_not_signed_by_github_change_nothing(discharger, github):
    env = discharger
    await env.user("alice")
    session = await env.login()
    body, headers = github.report(session)
    for h in ({}, github.sign(body + b"x"), github.sign(body, ec.generate_private_key(ec.SECP256R1()))):
        assert (await report(env, body, h))[0] == 401
    assert (await env.client.get("/v1/sessions/current", headers={"Authorization": f"Bearer {session}"})).status == 200
