"""A data directory written by Sable 0.1.0 (tests/fixtures/v0.1.0, made by 0.1.0 itself: see
make_v0_1_0.py) opens with this build: schema upgraded in place, and every token, revocation,
user, session, key and audit row intact; its tokens keep verifying."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nacl.public
import nacl.utils
import pytest

from authority.app import AUTHORITY
from authority.app import create_app as authority_app
from authority.config import AuthorityConfig, TrustedDischarger
from authority.store import open_store as authority_store
from clients import offline, tokens
from clients.tickets import b64d, b64e, key_id
from discharger.app import DISCHARGER
from discharger.app import create_app as discharger_app
from discharger.config import DischargerConfig
from discharger.store import open_store as discharger_store
from server.masterkey import load_master_key

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


def legacy_public_keys(path: Path) -> tuple[tuple[str, bytes], ...]:
    """(kid, public key) of each key in a 0.1.0 key file."""
    privates = [nacl.public.PrivateKey(b64d(k["private"])) for k in json.loads(path.read_text())["keys"]]
    return tuple((key_id(bytes(k.public_key)), bytes(k.public_key)) for k in privates)


async def test_authority_data_upgrades_and_verifies(aiohttp_client, data, made):
    store = await authority_store(str(data / "authority.db"), migrate=False)
    assert await store.stored_version() == 1  # 0.1.0 recorded version 1: its schema is our v1
    await store.close()

    trust = TrustedDischarger(DISCHARGER_URL, legacy_public_keys(data / "discharger.keys"))
    dev = json.loads((data / "dev.json").read_text())
    config = AuthorityConfig(db_path=str(data / "authority.db"), master_key=load_master_key(str(data / "master.key")),
                             public_url=AUTHORITY_URL, dischargers=(trust,), admin_token=dev["admin_token"])
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
    # 0.1.0 rows get created_by: "@admin" for permission tokens, their user for service tokens.
    kinds = {t["kind"]: t["created_by"] for t in listed["tokens"]}
    assert kinds["permission"] == "@admin"
    assert kinds["service"] == next(t["user"] for t in listed["tokens"] if t["kind"] == "service") is not None
    feed = await (await client.get("/v1/revocations?after=0")).json()
    assert [e["id"] for e in feed["revoked"]] == [made["gone"]["id"], made["kept"]["id"]]

    store = client.app[AUTHORITY].store
    assert await store.stored_version() == store.schema_version()
    events = [r.event for r in await store.audit_rows()]
    assert events[:3] == ["org_create", "mint", "strip"] and "revoke" in events


async def test_discharger_data_upgrades_with_users_sessions_and_keys(aiohttp_client, data, made):
    old_keys = legacy_public_keys(data / "discharger.keys")
    config = DischargerConfig(db_path=str(data / "discharger.db"), master_key=nacl.utils.random(32),
                              keys_path=str(data / "discharger.keys"), public_url=DISCHARGER_URL)
    client = await aiohttp_client(discharger_app(config))
    # The plaintext key file moved into the database, sealed with the (new) master key.
    assert not (data / "discharger.keys").exists()
    info = await (await client.get("/v1/info")).json()
    assert [(k["kid"], b64d(k["key"])) for k in info["public_keys"]] == list(old_keys)
    sealed = await client.app[DISCHARGER].store.list_keys()
    assert [kid for kid, _ in sealed] == [kid for kid, _ in old_keys]
    raw = (FIXTURE / "discharger.keys").read_text()
    private = json.loads(raw)["keys"][0]["private"]
    assert all(b64d(private) not in blob for _, blob in sealed)
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
        assert [r.detail for r in await store.audit_rows("discharger_keys")] == [{"import": [old_keys[0][0]]}]
    finally:
        await store.close()


@pytest.mark.slow
def test_sable_dev_runs_on_a_0_1_0_data_dir(data, made):
    """`make run` after pulling: master.key becomes authority.key, the discharger gets its own
    master key, its key file moves into its database, and everything keeps working."""
    import subprocess
    import time
    import urllib.request

    from tests.support import SABLE

    old_dev = (data / "dev.json").read_text()
    before = os.stat(data / "dev.json").st_ino  # written again (atomically) once both services listen
    authority_key = (data / "master.key").read_text()
    proc = subprocess.Popen([SABLE, "dev", "--data-dir", str(data), "--authority-port", "18700",
                             "--discharger-port", "18701"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while os.stat(data / "dev.json").st_ino == before:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "sable dev did not come up"
            time.sleep(0.1)
        assert json.loads((data / "dev.json").read_text()) == json.loads(old_dev)  # same admin, same password
        assert (data / "authority.key").read_text() == authority_key and not (data / "master.key").exists()
        assert os.stat(data / "discharger.key").st_mode & 0o077 == 0
        assert not (data / "discharger.keys").exists()

        def post(url, body, headers=None):
            req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        access = {"org": "acme", "action": "r", "app": "orders", "host": "worker-7"}
        assert post(f"{AUTHORITY_URL}/v1/verify", {"tokens": [made["host_bound"]], "access": access})[0] == 200
        status, session = post(f"{DISCHARGER_URL}/v1/sessions", {"username": made["username"], "password": made["password"]})
        assert status == 201
        ticket = [c for c in tokens.parse(made["permission"]).caveats if c.third_party][0].cid
        status, body = post(f"{DISCHARGER_URL}/v1/discharges", {"ticket": b64e(ticket)},
                            {"Authorization": f"Bearer {session['session']}"})
        assert status == 201, body
        status, body = post(f"{AUTHORITY_URL}/v1/service-tokens", {"tokens": [made["permission"], offline.bind(made["permission"], body["discharge"])]})
        assert status == 201, body
    finally:
        proc.terminate()
        proc.wait(timeout=10)
