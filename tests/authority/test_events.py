"""Events from the discharger at the authority (SPEC §18): taken once by id, ending the
user's console sessions in the same transaction, and fanned out to the webhooks of each org
named, checked by a receiver with the `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from authority.app import create_app
from authority.store import ConsoleSessionRow
from authority.webhooks import Webhooks
from server.audit import AuditRecord
from tests.conftest import AuthorityEnv
from tests.support.receiver import Receiver


@pytest.fixture
async def receiver(aiohttp_server):
    r = Receiver()
    r.server = await aiohttp_server(r.app())
    return r


@pytest.fixture
async def authority(aiohttp_client, authority_config, discharger, admin_token, monkeypatch) -> AuthorityEnv:
    monkeypatch.setattr(Webhooks, "POLL", 0.05)
    config = dataclasses.replace(authority_config, webhook_allow_private=True)
    return AuthorityEnv(await aiohttp_client(create_app(config)), config, discharger, admin_token)


async def session(env, name: bytes, user: str, org: str):
    await env.service.store.create_console_session(name, ConsoleSessionRow(user, org, "admin", 2**40), 1,
                                                   AuditRecord("console_login"))


async def test_a_disabled_user_is_announced_and_their_console_sessions_end(authority, receiver):
    env = authority
    for org in ("acme", "beta"):
        await env.create_org(org)
    status, hook = await env.post("/v1/webhooks", {"org": "beta", "url": str(receiver.server.make_url("/hook")),
                                                   "events": ["user.disabled", "user.removed_from_org"]}, env.admin)
    receiver.secret = hook["secret"]
    await session(env, b"a", "alice", "acme")
    await session(env, b"b", "alice", "beta")
    await session(env, b"c", "bob", "beta")
    event = {"id": "http://discharger.test#1", "type": "user.removed_from_org", "timestamp": "2026-12-03T00:00:00Z",
             "data": {"user": "alice", "orgs": ["beta"]}}
    assert await env.post("/v1/events", event, env.admin) == (200, {"taken": True})
    store = env.service.store
    assert await store.console_session(b"b", 2) is None and await store.console_session(b"a", 2) is not None
    event = {**event, "id": "http://discharger.test#2", "type": "user.disabled",
             "data": {"user": "alice", "orgs": ["acme", "beta"]}}
    assert await env.post("/v1/events", event, env.admin) == (200, {"taken": True})
    assert await env.post("/v1/events", event, env.admin) == (200, {"taken": False})  # the same id: nothing more
    assert await store.console_session(b"a", 2) is None and await store.console_session(b"c", 2) is not None
    deadline = time.monotonic() + 5
    while len(receiver.received) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert [r["event"]["type"] for r in receiver.received] == ["user.removed_from_org", "user.disabled"]
    # only the receiving org: beta's receiver does not learn that alice is in acme too
    assert receiver.received[1]["event"]["data"] == {"user": "alice", "orgs": ["beta"]}
    rows = await store.audit_rows("discharger_event")
    assert [r.detail["sessions_ended"] for r in rows] == [1, 1]


@pytest.mark.parametrize("body", [{}, {"id": "x", "type": "user.deleted", "data": {"user": "a", "orgs": []}},
                                  {"id": "x", "type": "user.disabled", "data": {"user": "a", "orgs": ["Bad Org"]}},
                                  {"id": "x", "type": "user.disabled", "data": {"orgs": []}},
                                  {"id": "", "type": "user.disabled", "data": {"user": "a", "orgs": []}}])
async def test_events_that_are_refused(authority, body):
    assert (await authority.post("/v1/events", body, authority.admin))[0] == 400


async def test_events_need_the_admin_credential(authority):
    body = {"id": "x", "type": "user.disabled", "data": {"user": "a", "orgs": []}}
    assert (await authority.post("/v1/events", body))[0] == 401
