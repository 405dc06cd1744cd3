"""The discharger's events for the authorities (SPEC §18), between a real discharger and a
real authority on loopback: a user disabled or removed from an org and a principal disabled
reach the authority's POST /v1/events, queued in the transaction of the change and sent
again until the authority takes them."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from discharger.app import create_app
from discharger.events import EventSender
from tests.conftest import DischargerEnv


@pytest.fixture
async def linked(aiohttp_client, discharger_config, admin_token, authority, monkeypatch) -> tuple[DischargerEnv, object]:
    monkeypatch.setattr(EventSender, "POLL", 0.05)
    monkeypatch.setattr(EventSender, "RETRIES", (1, 1, 1, 1, 1))
    url = str(authority.client.make_url("")).rstrip("/")
    config = dataclasses.replace(discharger_config, authority_urls=(url,), authority_admin_token=admin_token)
    return DischargerEnv(await aiohttp_client(create_app(config)), config, admin_token), authority


async def taken(authority, n: int, seconds: float = 5.0) -> list:
    deadline = time.monotonic() + seconds
    while len(rows := await authority.service.store.audit_rows("discharger_event")) < n:
        assert time.monotonic() < deadline, f"{len(rows)} of {n} events taken"
        await asyncio.sleep(0.05)
    return rows


async def test_user_and_principal_changes_reach_the_authority(linked):
    d, authority = linked
    await d.user("alice", orgs=("acme", "beta"))
    assert (await d.post("/v1/users/alice/orgs", {"orgs": ["acme"]}, d.admin))[0] == 200
    assert (await d.post("/v1/users/alice/disable", {}, d.admin))[0] in (200, 204)
    assert (await d.post("/v1/principals", {"name": "ci:deploy", "org": "acme"}, d.admin))[0] == 201
    assert (await d.post("/v1/principals/ci:deploy/disable", {}, d.admin))[0] == 200
    rows = await taken(authority, 3)
    assert [(r.detail["type"], r.detail["subject"], r.detail["orgs"]) for r in rows] == [
        ("user.removed_from_org", "alice", ["beta"]), ("user.disabled", "alice", ["acme"]),
        ("principal.disabled", "ci:deploy", ["acme"])]
    assert await d.service.store.events_pending() == 0
    # changing a role, or disabling twice, is no event
    await d.post("/v1/users/alice/orgs", {"orgs": [{"org": "acme", "role": "admin"}]}, d.admin)
    await d.post("/v1/users/alice/disable", {}, d.admin)
    await asyncio.sleep(0.3)
    assert len(await authority.service.store.audit_rows("discharger_event")) == 3


async def test_events_wait_for_an_authority_that_is_down(linked):
    d, authority = linked
    await d.user("bob")
    sender = d.service.events
    sender.urls = ("http://127.0.0.1:9",)  # nobody listens
    assert (await d.post("/v1/users/bob/disable", {}, d.admin))[0] in (200, 204)
    await asyncio.sleep(0.3)
    assert await d.service.store.events_pending() == 1
    sender.urls = (str(authority.client.make_url("")).rstrip("/"),)
    rows = await taken(authority, 1)
    assert rows[0].detail["type"] == "user.disabled"
