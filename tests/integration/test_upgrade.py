"""A data directory written by Sable 0.1.0 (tests/fixtures/v0.1.0, made by 0.1.0 itself: see
make_v0_1_0.py) opens with this build: schema upgraded in place, and every token, revocation,
user, session, key and audit row intact; its tokens keep verifying."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from authority.app import AUTHORITY
from authority.app import create_app as authority_app
from authority.config import AuthorityConfig, TrustedDischarger, load_master_key
from authority.store import open_store as authority_store
from clients import offline, tokens
from clients.tickets import b64d, b64e
from discharger.app import create_app as discharger_app
from discharger.config import DischargerConfig
from discharger.keys import DischargerKeys
from discharger.store import open_store as discharger_store

FIXTURE = Path(__file__).parents[1] / "fixtures" / "v0.1.0"
AUTHORITY_URL, DISCHARGER_URL = "http://127.0.0.1:18700", "http://127.0.0.1:18701"


@pytest.fixture
def data(tmp_path) -> Path:
    out = tmp_path / "var"
    shutil.copytree(FIXTURE, out)
    for f in out.iterdir():
        os.chmod(f, 0o600)  # git keeps no modes; 0.1.0 wrote these 0600 and the services insist
    return out


@pytest.fixture
def made(data) -> dict:
    return json.loads((data / "tokens.json").read_text())


async def test_authority_data_upgrades_and_verifies(aiohttp_client, data, made):
    store = await authority_store(str(data / "authority.db"), migrate=False)
    assert await store.stored_version() == 1  # 0.1.0 recorded version 1: its schema is our v1
    await store.close()

    keys = DischargerKeys.load_or_create(str(data / "discharger.keys"))
    trust = TrustedDischarger(DISCHARGER_URL, tuple((k["kid"], b64d(k["key"])) for k in keys.public_keys()))
    dev = json.loads((data / "dev.json").read_text())
    config = AuthorityConfig(db_path=str(data / "authority.db"), master_key=load_master_key(str(data / "master.key")),
                             public_url=AUTHORITY_URL, dischargers=[trust], admin_token=dev["admin_token"])
    client = await aiohttp_client(authority_app(config))

    async def verify(token, host="worker-7"):
        resp = await client.post("/v1/verify", json={"tokens": [token], "access": {
            "org": "acme", "action": "r", "app": "orders", "host": host}})
        return resp.status, await resp.json()

    assert (await verify(made["host_bound"]))[0] == 200
    assert (await verify(made["kept"]["token"]))[0] == 200
    status, body = await verify(made["gone"]["token"])
    assert status == 403 and "revoked" in body["message"]
    status, body = await verify(made["revoked_attenuation"], host="worker-9")
    assert status == 403 and "attenuation" in body["message"] and "revoked" in body["message"]

    admin = {"Authorization": f"Bearer {dev['admin_token']}"}  # 0.1.0's admin credential still works
    listed = await (await client.get("/v1/tokens?org=acme", headers=admin)).json()
    by_id = {t["id"]: t for t in listed["tokens"]}
    assert by_id[made["kept"]["id"]]["revoked_at"] is None and by_id[made["gone"]["id"]]["revoked_at"]
    assert by_id[made["kept"]["id"]]["last_used_at"]  # 0.1.0 recorded the verify it was made with
    feed = await (await client.get("/v1/revocations?after=0")).json()
    assert [e["id"] for e in feed["revoked"]] == [made["gone"]["id"], made["kept"]["id"]]

    store = client.app[AUTHORITY].store
    assert await store.stored_version() == store.schema_version()
    events = [r.event for r in await store.audit_rows()]
    assert events[:3] == ["org_create", "mint", "strip"] and "revoke" in events


async def test_discharger_data_upgrades_with_users_sessions_and_keys(aiohttp_client, data, made):
    config = DischargerConfig(db_path=str(data / "discharger.db"), keys_path=str(data / "discharger.keys"),
                              public_url=DISCHARGER_URL)
    client = await aiohttp_client(discharger_app(config))
    resp = await client.post("/v1/sessions", json={"username": made["username"], "password": made["password"]})
    assert resp.status == 201
    session = (await resp.json())["session"]

    # A ticket sealed to 0.1.0's key opens: the key file came along.
    ticket = [c for c in tokens.parse(made["permission"]).caveats if c.third_party][0].cid
    resp = await client.post("/v1/discharges", json={"ticket": b64e(ticket)},
                             headers={"Authorization": f"Bearer {session}"})
    assert resp.status == 201
    assert offline.bind(made["permission"], (await resp.json())["discharge"]).startswith(tokens.DISCHARGE)

    store = await discharger_store(str(data / "discharger.db"), migrate=False)
    try:
        assert await store.stored_version() == store.schema_version()
        assert (await store.get_user(made["username"])).orgs == frozenset({"acme"})
        assert [r.event for r in await store.audit_rows()][:2] == ["user_create", "login"]
    finally:
        await store.close()
