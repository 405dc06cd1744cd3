"""The discharger an authority trusts by URL (SPEC §10): keys fetched only over HTTPS or from a
loopback address, refreshed so a rotation reaches new mints without a restart, pinned when
configured, audited when they change, kept when a refresh fails."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import nacl.utils
import pytest

from authority.app import AUTHORITY
from authority.app import create_app as authority_app
from authority.config import AuthorityConfig
from authority.dischargers import KeyRefresh, check_url, fetch
from clients import tokens
from clients.errors import ConfigError
from clients.tickets import ticket_kid
from discharger.app import DISCHARGER
from discharger.app import create_app as discharger_app
from tests.support import free_port


@pytest.mark.parametrize("url", ["https://login.example.com", "http://127.0.0.1:8701", "http://[::1]:8701",
                                 "http://localhost:8701", "http://127.8.9.10"])
def test_urls_keys_may_come_from(url):
    check_url(url)


@pytest.mark.parametrize("url", ["http://login.example.com", "http://10.0.0.5:8701", "http://[2001:db8::1]",
                                 "ftp://127.0.0.1", "login.example.com", "http://"])
def test_urls_keys_may_not_come_from(url):
    with pytest.raises(ConfigError):
        check_url(url)


def test_plain_http_names_the_fix():
    with pytest.raises(ConfigError, match="use https, a loopback address, or give its keys in the config"):
        check_url("http://login.internal:8701")


@pytest.fixture
async def pair(aiohttp_server, aiohttp_client, discharger_config, db_location, admin_token):
    """A real discharger on a loopback port, and an authority that trusts it by URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = await aiohttp_server(discharger_app(replace(discharger_config, public_url=url)), port=port)
    trust = await fetch(url)
    config = AuthorityConfig(db_path=db_location("authority"), master_key=nacl.utils.random(32),
                             public_url="http://authority.test", dischargers=(trust,), discharger_url=url,
                             admin_token=admin_token)
    client = await aiohttp_client(authority_app(config))
    return server, client, config


async def mint_kid(client, admin_token) -> str:
    headers = {"Authorization": f"Bearer {admin_token}"}
    await client.post("/v1/orgs", json={"name": "acme"}, headers=headers)
    resp = await client.post("/v1/tokens", json={"org": "acme"}, headers=headers)
    assert resp.status == 201
    token = tokens.parse((await resp.json())["token"])
    return ticket_kid([c for c in token.caveats if c.third_party][0].cid)


async def test_a_rotation_reaches_new_mints_and_is_audited(pair, admin_token):
    server, client, config = pair
    authority = client.app[AUTHORITY]
    old_kid = await mint_kid(client, admin_token)
    new_kid = await server.app[DISCHARGER].keys.rotate()

    assert await authority.discharger_keys.refresh() is True
    assert await mint_kid(client, admin_token) == new_kid
    info = await (await client.get("/v1/info")).json()
    assert [k["kid"] for k in info["dischargers"][0]["public_keys"]] == [new_kid, old_kid]
    rows = await authority.store.audit_rows("discharger_keys")
    assert [r.detail for r in rows] == [{"discharger": config.discharger_url, "current": new_kid,
                                         "added": [new_kid], "removed": []}]
    assert await authority.discharger_keys.refresh() is False  # nothing new: nothing audited
    assert len(await authority.store.audit_rows("discharger_keys")) == 1


async def test_a_failed_refresh_keeps_the_last_keys(pair, admin_token):
    server, client, config = pair
    kid = await mint_kid(client, admin_token)
    await server.close()
    assert await client.app[AUTHORITY].discharger_keys.refresh() is False
    assert await mint_kid(client, admin_token) == kid


async def test_a_discharger_that_renames_itself_is_not_followed(pair, admin_token):
    server, client, config = pair
    kid = await mint_kid(client, admin_token)
    renamed = server.app[DISCHARGER]
    renamed.config = replace(renamed.config, public_url="http://elsewhere.test")
    await server.app[DISCHARGER].keys.rotate()
    assert await client.app[AUTHORITY].discharger_keys.refresh() is False
    assert await mint_kid(client, admin_token) == kid


async def test_the_refresh_runs_on_its_own(pair, admin_token):
    server, client, config = pair
    authority = client.app[AUTHORITY]
    refresh = KeyRefresh(authority.trust, config.discharger_url, authority.store, every=0.05)
    await refresh.start()
    try:
        new_kid = await server.app[DISCHARGER].keys.rotate()
        deadline = time.monotonic() + 2
        while authority.trust.current[0].public_keys[0][0] != new_kid:
            assert time.monotonic() < deadline, "the keys were never refreshed"
            await asyncio.sleep(0.02)
    finally:
        await refresh.stop()


async def test_configured_keys_are_pinned(authority, discharger):
    refresh = authority.service.discharger_keys
    assert authority.config.discharger_url is None
    await refresh.start()
    assert not refresh.running  # nothing to fetch: the configured keys stay
    assert authority.service.trust.current == (discharger.trust,)


async def test_create_app_learns_the_discharger_s_keys_by_itself(aiohttp_server, aiohttp_client, discharger_config,
                                                               db_location, admin_token):
    """`create_app(config)` starts an authority on its own: the keys of a discharger given by
    URL are fetched in its start-up, and the configuration is never written."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = await aiohttp_server(discharger_app(replace(discharger_config, public_url=url)), port=port)
    config = AuthorityConfig(db_path=db_location("authority"), master_key=nacl.utils.random(32),
                             public_url="http://authority.test", discharger_url=url, admin_token=admin_token)
    client = await aiohttp_client(authority_app(config))
    assert config.dischargers == ()
    assert client.app[AUTHORITY].trust.first().location == url
    kid = await mint_kid(client, admin_token)
    assert kid == server.app[DISCHARGER].keys.public_keys()[0]["kid"]
