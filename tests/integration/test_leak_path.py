"""The leak path end to end (SPEC §18), as README's "When a token leaks" tells it: a service
token is committed to a pretend repository, a GitHub stand-in scans the push for Sable's
prefixes and reports what it found, signed; the token stops working, its sibling on another
host keeps working, and the org's webhook hears `token.leaked` with where it was found."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time

import pytest

from authority.app import create_app
from authority.webhooks import Webhooks
from clients import offline
from tests.conftest import AuthorityEnv
from tests.support import strip
from tests.support.github import KEYS_PATH, GitHub
from tests.support.receiver import Receiver

FOUND = re.compile(r"sable_(?:pt|st|ut|dt|adm)_[A-Za-z0-9_-]+")


@pytest.fixture
async def stack(aiohttp_server, aiohttp_client, authority_config, discharger, admin_token, monkeypatch):
    monkeypatch.setattr(Webhooks, "POLL", 0.05)
    github, receiver = GitHub(), Receiver()
    keys = await aiohttp_server(github.app())
    hooks = await aiohttp_server(receiver.app())
    config = dataclasses.replace(authority_config, webhook_allow_private=True,
                                 secret_scanning_keys_url=str(keys.make_url(KEYS_PATH)))
    env = AuthorityEnv(await aiohttp_client(create_app(config)), config, discharger, admin_token)
    return env, github, receiver, str(hooks.make_url("/hook"))


async def test_a_token_pushed_to_a_repository_is_revoked_and_announced(stack, tmp_path):
    env, github, receiver, hook_url = stack
    await env.create_org("acme")
    status, hook = await env.post("/v1/webhooks", {"org": "acme", "url": hook_url, "events": ["token.leaked"]},
                                  env.admin)
    receiver.secret = hook["secret"]
    st = (await strip(env, await env.mint(["apps orders"])))["token"]
    here, there = offline.attenuate(st, ["hosts worker-7"]), offline.attenuate(st, ["hosts worker-8"])
    repo = tmp_path / "repo"
    (repo / "deploy").mkdir(parents=True)
    (repo / "deploy" / "values.yaml").write_text(f"replicas: 2\nenv:\n  SABLE_TOKEN: {here}\n")

    # GitHub's side: scan the push, report each match to the partner endpoint, signed
    found = [(path, m.group(0)) for path in repo.rglob("*") if path.is_file()
             for m in FOUND.finditer(path.read_text())]
    body = json.dumps([{"token": text, "type": "sable_service_token", "source": "content",
                        "url": f"https://github.com/octo/app/blob/abc123/{path.relative_to(repo)}"}
                       for path, text in found]).encode()
    resp = await env.client.post("/v1/secret-scanning/github", data=body, headers=github.sign(body))
    assert resp.status == 200
    assert [a["label"] for a in await resp.json()] == ["true_positive"]

    assert not await env.allowed([here], app="orders", host="worker-7")  # what leaked stops
    assert await env.allowed([there], app="orders", host="worker-8")  # its sibling on another host does not
    deadline = time.monotonic() + 5
    while not receiver.of_type("token.leaked"):
        assert time.monotonic() < deadline, "no token.leaked webhook within 5 s"
        await asyncio.sleep(0.05)
    data = receiver.of_type("token.leaked")[0]["event"]["data"]
    assert data["url"] == "https://github.com/octo/app/blob/abc123/deploy/values.yaml"
    assert data["source"] == "content" and data["kind"] == "service"
    metrics = await (await env.client.get("/metrics")).text()
    assert 'sable_webhook_deliveries_total{result="delivered"}' in metrics
    assert "sable_webhook_outbox_depth" in metrics
