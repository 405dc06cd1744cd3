"""The discharger's X25519 keys in its database (SPEC §10): sealed with the discharger's own
master key, shared by replicas, rotated through any of them (or the CLI) and picked up by the
others; a wrong master key is refused at start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from dataclasses import replace

import nacl.public
import pytest
from click.testing import CliRunner

from cli.main import main as cli
from clients.tickets import b64d, b64e
from discharger import ticket_keys as keys_module
from discharger.app import DISCHARGER, create_app
from discharger.store import StoreError, open_store
from discharger.ticket_keys import TicketKeys
from server.masterkey import MasterKey
from tests.support import SABLE, ticket_for


async def test_keys_are_sealed_with_the_master_key(real_discharger):
    env = real_discharger
    rows = await env.service.store.list_keys()
    assert len(rows) == 1
    kid, sealed = rows[0]
    private = bytes(dict(env.service.keys._keys)[kid])
    assert private not in sealed  # only ciphertext in the database
    assert MasterKey(bytes(32)).unseal(sealed) is None
    assert MasterKey(env.config.master_key).unseal(sealed) == private


async def test_a_rotation_through_another_replica_reaches_this_one(real_discharger, aiohttp_client):
    env = real_discharger
    await env.user()
    session = await env.login()
    _, old_ticket = ticket_for(env, keys=env.service.keys)
    # A second discharger on the same database (another replica, or `sable discharger keys`).
    other = await aiohttp_client(create_app(env.config))
    new_kid = await other.app[DISCHARGER].keys.rotate()

    # A ticket sealed to the new key opens here at once: an unknown kid makes it re-read.
    _, ticket = ticket_for(env, keys=other.app[DISCHARGER].keys)
    status, body, _ = await env.discharge(session, b64e(ticket))
    assert status == 201, body
    info = await (await env.client.get("/v1/info")).json()
    assert info["public_keys"][0]["kid"] == new_kid and len(info["public_keys"]) == 2

    # Retiring through the other replica: refused here once this replica re-reads.
    old_kid = info["public_keys"][1]["kid"]
    await other.app[DISCHARGER].keys.retire(new_kid)
    await asyncio.sleep(1.1)
    info = await (await env.client.get("/v1/info")).json()
    assert [k["kid"] for k in info["public_keys"]] == [old_kid]
    status, body, _ = await env.discharge(session, b64e(ticket))
    assert status == 400 and "unknown key" in body["message"]
    assert (await env.discharge(session, b64e(old_ticket)))[0] == 201
    events = [r.detail for r in await env.service.store.audit_rows("discharger_keys")]
    assert events[1:] == [{"rotate": new_kid}, {"retire": new_kid}]


async def test_the_background_reload_picks_up_a_rotation(real_discharger, monkeypatch):
    env = real_discharger
    keys = env.service.keys
    await keys.stop()
    keys._loop.every = 0.05  # instead of RELOAD_EVERY
    await keys.start()
    other = await TicketKeys.load(env.service.store, MasterKey(env.config.master_key))
    new_kid = await other.rotate()
    deadline = time.monotonic() + 2
    while keys.public_keys()[0]["kid"] != new_kid:
        assert time.monotonic() < deadline, "the running discharger never re-read its keys"
        await asyncio.sleep(0.02)


async def test_the_only_key_cannot_be_retired_and_unknown_kids_are_named(real_discharger):
    keys = real_discharger.service.keys
    with pytest.raises(keys_module.KeyChangeError, match="only key"):
        await keys.retire(keys.public_keys()[0]["kid"])
    with pytest.raises(keys_module.KeyChangeError, match="no key"):
        await keys.retire("0000000000000000")


async def test_replicas_starting_together_make_one_first_key(discharger_config):
    async def start():
        store = await open_store(discharger_config.db_path)
        try:
            keys = await TicketKeys.load(store, MasterKey(discharger_config.master_key))
            return keys.public_keys()
        finally:
            await store.close()
    results = await asyncio.gather(*[start() for _ in range(4)])
    assert all(r == results[0] for r in results) and len(results[0]) == 1


async def test_a_wrong_master_key_is_refused_at_start(discharger_config, aiohttp_client):
    await aiohttp_client(create_app(discharger_config))  # writes the check value and a key
    with pytest.raises(StoreError, match="master key"):
        await aiohttp_client(create_app(replace(discharger_config, master_key=bytes.fromhex("77" * 32))))


def test_a_key_file_that_others_can_read_is_not_imported(tmp_path):
    key = nacl.public.PrivateKey.generate()
    path = tmp_path / "discharger.keys"
    path.write_text(json.dumps({"keys": [{"kid": "x", "private": b64e(bytes(key))}]}))
    os.chmod(path, 0o644)
    r = subprocess.run([SABLE, "discharger", "keys", "list", "--data-dir", str(tmp_path)],
                       env={**os.environ, "SABLE_MASTER_KEY": "55" * 32}, capture_output=True, text=True)
    assert r.returncode == 2 and "readable by others" in r.stderr and "Traceback" not in r.stderr
    assert path.exists()


def test_cli_lists_rotates_and_retires_in_the_database(tmp_path, db_location, monkeypatch):
    monkeypatch.setenv("SABLE_MASTER_KEY", "55" * 32)
    db = db_location("discharger")
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["discharger", "keys", *args, "--db", db], catch_exceptions=False)
    first = run("list")
    assert first.exit_code == 0 and first.output.count("(current)") == 1
    old_kid = first.output.split()[0]
    rotated = run("rotate")
    assert rotated.exit_code == 0
    new_kid = rotated.output.strip()
    listed = run("list").output.splitlines()
    assert [line.split()[0] for line in listed] == [new_kid, old_kid] and "(current)" in listed[0]
    # --json is what an authority's [[authority.dischargers]] public_keys takes (deploy/compose.yaml)
    from authority.config import discharger_from_info
    keys = json.loads(run("list", "--json").output)
    assert [k["kid"] for k in keys] == [new_kid, old_kid]
    assert discharger_from_info({"location": "http://d", "public_keys": keys}).public_keys[0][0] == new_kid
    assert run("retire", old_kid).exit_code == 0
    r = run("retire", new_kid)
    assert r.exit_code == 1 and "only key" in r.output
    monkeypatch.setenv("SABLE_MASTER_KEY", "77" * 32)
    r = run("list")
    assert r.exit_code != 0 and "master key" in r.output


def test_cli_without_a_master_key_says_how_to_give_one(tmp_path, monkeypatch):
    monkeypatch.delenv("SABLE_MASTER_KEY", raising=False)
    monkeypatch.delenv("SABLE_MASTER_KEY_FILE", raising=False)
    r = CliRunner().invoke(cli, ["discharger", "keys", "list", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "no master key" in r.output


def test_public_keys_match_their_kids(real_discharger):
    from clients.tickets import key_id
    for k in real_discharger.service.keys.public_keys():
        assert key_id(b64d(k["key"])) == k["kid"]


async def test_a_key_file_beside_a_database_that_has_keys_is_not_imported_nor_deleted(real_discharger, tmp_path):
    env = real_discharger
    before = env.service.keys.public_keys()
    stray = nacl.public.PrivateKey.generate()
    path = tmp_path / "discharger.keys"
    path.write_text(json.dumps({"keys": [{"kid": "x", "private": b64e(bytes(stray))}]}))
    os.chmod(path, 0o600)
    keys = await TicketKeys.load(env.service.store, MasterKey(env.config.master_key), str(path))
    assert keys.public_keys() == before  # the database's keys win...
    assert path.exists()  # ...and a file holding a key they lack is left for the operator
