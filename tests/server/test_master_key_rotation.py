"""`sable admin rotate-master-key` (SPEC §8, §10; deploy/README "Rotating a master key"):
everything a service's master key seals is re-sealed with a new key in one transaction, so
every token, discharge and session made before keeps working under the new key, the old key
is refused afterwards, and a crash or a refusal leaves the database as it was."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from authority.root_keys import RootKeys
from authority.store import SEALED as AUTHORITY_SEALED
from authority.store import TokenRow
from authority.store import open_store as authority_store
from discharger.store import SEALED as DISCHARGER_SEALED
from discharger.store import open_store as discharger_store
from discharger.ticket_keys import TicketKeys
from server.masterkey import CHECK_KEY, MasterKey, create_key_file, read_key_file
from tests.support import SABLE, free_port
from tests.support.devstack import running_dev

pytestmark = pytest.mark.slow


def sable(env, *args, stdin=None, timeout=120):
    return subprocess.run([SABLE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


def clean_env(**extra) -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SABLE_")}, **extra}


def sealed_values(db: Path, columns) -> dict[tuple[str, str], bytes]:
    """Every sealed value in a SQLite database, by (table, key)."""
    conn = sqlite3.connect(db)
    try:
        out = {}
        for col in columns:
            where = f" WHERE {col.where}" if col.where else ""
            for key, value in conn.execute(f"SELECT {col.key}, {col.column} FROM {col.table}{where}"):
                out[(col.table, key.hex() if isinstance(key, bytes) else key)] = bytes(value)
        return out
    finally:
        conn.close()


def test_rotated_keys_keep_every_token_discharge_and_session_working(tmp_path):
    var, log, config_home = tmp_path / "var", tmp_path / "dev.log", tmp_path / "dev-config"
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    access = ("--org", "acme", "--action", "r", "--app", "orders")
    with running_dev(var, log, config_home) as dev:
        env.update(SABLE_AUTHORITY_URL=dev["a"], SABLE_DISCHARGER_URL=dev["d"])
        admin = {**env, "SABLE_ADMIN_TOKEN": dev["admin"]}
        assert sable(env, "login", "-u", "alice", "--password-stdin", stdin=dev["password"] + "\n").returncode == 0
        pt = json.loads(sable(admin, "token", "create", "--org", "acme", "--apps", "orders", "--json").stdout)["token"]
        discharge = sable(env, "discharge", pt).stdout.strip()
        st = json.loads(sable(env, "strip", pt, "--json").stdout)["token"]
        mine = json.loads(sable(env, "token", "create", "--json").stdout)  # through alice's user token
        gone = json.loads(sable(admin, "token", "create", "--org", "acme", "--json").stdout)
        assert sable(admin, "token", "revoke", gone["id"]).returncode == 0
        assert sable(env, "verify", st, *access).returncode == 0
        ports = dev["ports"]
    before = {"authority": sealed_values(var / "authority.db", AUTHORITY_SEALED),
              "discharger": sealed_values(var / "discharger.db", DISCHARGER_SEALED)}
    assert len([k for k in before["authority"] if k[0] == "tokens"]) == 4

    for service in ("authority", "discharger"):
        old, new = var / f"{service}.key", tmp_path / f"{service}.key.new"
        r = sable(env, "admin", "rotate-master-key", "--service", service, "--data-dir", str(var),
                  "--master-key-file", str(old), "--new-key-file", str(new))
        assert r.returncode == 0, r.stderr
        assert f"wrote a new master key to {new} (mode 0600)" in r.stderr
        assert os.stat(new).st_mode & 0o077 == 0
        # Every sealed value changed, and opens with the new key only, to the same plaintext.
        after = sealed_values(var / f"{service}.db", AUTHORITY_SEALED if service == "authority" else DISCHARGER_SEALED)
        assert after.keys() == before[service].keys()
        old_key, new_key = MasterKey(read_key_file(old)), MasterKey(read_key_file(new))
        for k, value in after.items():
            assert value != before[service][k]
            assert old_key.unseal(value) is None
            assert new_key.unseal(value) == old_key.unseal(before[service][k]) is not None
        shutil.move(old, tmp_path / f"{service}.key.old")
        shutil.move(new, old)  # `sable dev` keeps its keys in the data dir
        # Running it again finds the work done.
        r = sable(env, "admin", "rotate-master-key", "--service", service, "--data-dir", str(var),
                  "--master-key-file", str(tmp_path / f"{service}.key.old"), "--new-key-file", str(old))
        assert r.returncode == 0 and "sealed with the new key already: nothing to do" in r.stdout

    audit = sqlite3.connect(var / "authority.db").execute(
        "SELECT detail FROM audit WHERE event = 'master_key_rotated'").fetchall()
    assert [json.loads(d) for (d,) in audit] == [{"resealed": {"meta": 2, "tokens": 4}, "left": {}}]

    with running_dev(var, log, config_home, ports) as dev:
        assert sable(env, "verify", st, *access).returncode == 0  # root key re-sealed
        assert sable(env, "verify", pt, discharge, *access).returncode == 0  # the discharge from before
        # alice's session from before; the ticket in pt was sealed to the discharger's re-sealed key
        fresh = sable(env, "discharge", pt)
        assert fresh.returncode == 0, fresh.stderr
        assert sable(env, "verify", pt, fresh.stdout.strip(), *access).returncode == 0
        r = sable(env, "token", "list", "--json")  # alice's cached user token: the user-token key re-sealed
        assert r.returncode == 0, r.stderr
        assert mine["id"] in {t["id"] for t in json.loads(r.stdout)}
        r = sable(env, "verify", gone["token"], "--org", "acme", "--action", "r")
        assert r.returncode == 1  # revoked stays revoked
        assert sable(env, "strip", pt).returncode == 0  # new root keys are sealed with the new key

    # The old key no longer opens the database: the service refuses to start, naming the cause.
    r = subprocess.run([SABLE, "authority", "serve", "--data-dir", str(var), "--port", str(free_port()),
                        "--master-key-file", str(tmp_path / "authority.key.old")],
                       env=clean_env(), capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "written with another master key" in r.stderr


async def _authority_db(location: str, key: bytes, tokens: int, junk: int = 0, distinct: bool = True) -> list[str]:
    """An authority database sealed with `key`: `tokens` tokens with sealed keys (each its own
    unless not `distinct`), plus `junk` whose sealed keys open with no key (damaged rows).
    Returns the junk ids."""
    keys = RootKeys(key)
    store = await authority_store(location)
    try:
        await keys.master.check(store, location)
        await keys.load_user_key(store)
        now = int(time.time())
        rows, junk_ids = [], []
        shared = keys.new_token_key(f"{0:032x}", b"id")[0]
        for i in range(tokens + junk):
            tid = f"{i:032x}"
            sealed = (keys.new_token_key(tid, b"id")[0] if distinct else shared) if i < tokens else b"\0" * 72
            if i >= tokens:
                junk_ids.append(tid)
            rows.append(TokenRow(tid, "permission", None, "acme", None, None, 1, sealed, now))
        for start in range(0, len(rows), 20_000):
            await store.insert_tokens(rows[start:start + 20_000])
        return junk_ids
    finally:
        await store.close()


def _rotate(db: str, old: Path, new: Path, service: str = "authority") -> subprocess.CompletedProcess:
    return sable(clean_env(), "admin", "rotate-master-key", "--service", service, "--db", db,
                 "--master-key-file", str(old), "--new-key-file", str(new))


def test_refusals_change_nothing(tmp_path):
    db, old, new, other = (tmp_path / "authority.db", tmp_path / "old.key", tmp_path / "new.key",
                           tmp_path / "other.key")
    key = create_key_file(old)
    create_key_file(other)
    junk = asyncio.run(_authority_db(str(db), key, tokens=3, junk=1))
    before = sealed_values(db, AUTHORITY_SEALED)

    r = _rotate(str(db), other, new)  # not the key the database was written with
    assert r.returncode == 2 and "the current master key does not open database" in r.stderr
    assert not new.exists()  # no new key is made until the current one is known to be right
    r = _rotate(str(db), old, old)
    assert r.returncode == 2 and "the new key is the current key" in r.stderr
    r = _rotate(str(tmp_path / "nope.db"), old, new)
    assert r.returncode == 2 and "no database file" in r.stderr
    Path(str(db) + "-shm").write_bytes(b"")  # what a running service keeps beside the file
    r = _rotate(str(db), old, new)
    assert r.returncode == 2 and "stop every authority process first" in r.stderr and "sable db status" in r.stderr
    Path(str(db) + "-shm").unlink(missing_ok=True)  # (closing the refused tool cleared it already)

    # A required value that does not open (the user-token key, damaged) stops it: nothing changes.
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET v = ? WHERE k = 'user_token_key'", (b"\1" * 72,))
    conn.close()
    damaged = sealed_values(db, AUTHORITY_SEALED)
    r = _rotate(str(db), old, new)
    assert r.returncode == 2 and "a value in meta.v does not open with the current master key" in r.stderr
    assert sealed_values(db, AUTHORITY_SEALED) == damaged
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET v = ? WHERE k = 'user_token_key'", (before[("meta", "user_token_key")],))
    conn.close()

    # A token whose key was unusable already is left as it was and named; the rest move on.
    r = _rotate(str(db), old, new)
    assert r.returncode == 0, r.stderr
    assert "1 value(s) in tokens did not open with the current key and were left as they were" in r.stderr
    assert junk[0] in r.stderr and "3 in tokens" in r.stdout
    assert sealed_values(db, AUTHORITY_SEALED)[("tokens", junk[0])] == before[("tokens", junk[0])]


def test_kill_9_mid_rotation_leaves_the_old_key_working(tmp_path):
    db, old, new = tmp_path / "authority.db", tmp_path / "old.key", tmp_path / "new.key"
    key = create_key_file(old)
    asyncio.run(_authority_db(str(db), key, tokens=150_000, distinct=False))
    proc = subprocess.Popen([SABLE, "admin", "rotate-master-key", "--service", "authority", "--db", str(db),
                             "--master-key-file", str(old), "--new-key-file", str(new)],
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The new key file is written (and synced) before the pass starts: wait for it, then a little.
    deadline = time.monotonic() + 30
    while not new.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (out, err)  # it was still re-sealing

    r = sable(clean_env(), "db", "status", "--db", str(db))  # a crashed process leaves -shm; this clears it
    assert r.returncode == 0, r.stderr
    conn = sqlite3.connect(db)
    check = conn.execute("SELECT v FROM meta WHERE k = ?", (CHECK_KEY,)).fetchone()[0]
    sample = [bytes(v) for (v,) in conn.execute("SELECT sealed_key FROM tokens ORDER BY rowid")]
    events = conn.execute("SELECT COUNT(*) FROM audit WHERE event = 'master_key_rotated'").fetchone()[0]
    conn.close()
    old_key = MasterKey(key)
    assert old_key.matches(check) and events == 0
    assert all(old_key.unseal(v) is not None for v in sample)  # not one row half-moved

    r = _rotate(str(db), old, new)  # the same command again finishes the job with the same new key
    assert r.returncode == 0, r.stderr
    assert "150000 in tokens" in r.stdout and "wrote a new master key" not in r.stderr


async def _service_connected(location: str):
    return await authority_store(location)  # role "service": what a running authority looks like


def test_postgres_rotation_for_both_services(tmp_path, pg_url):
    old_a, new_a = tmp_path / "a.key", tmp_path / "a.new"
    old_d, new_d = tmp_path / "d.key", tmp_path / "d.new"
    a_key, d_key = create_key_file(old_a), create_key_file(old_d)
    asyncio.run(_authority_db(pg_url, a_key, tokens=5000))

    async def discharger_keys() -> list[str]:
        store = await discharger_store(pg_url)
        try:
            master = MasterKey(d_key)
            await master.check(store, pg_url)
            keys = await TicketKeys.load(store, master)
            await keys.rotate()
            return [k["kid"] for k in keys.public_keys()]
        finally:
            await store.close()
    kids = asyncio.run(discharger_keys())

    async def refused_while_connected() -> subprocess.CompletedProcess:
        store = await _service_connected(pg_url)
        try:
            return await asyncio.to_thread(_rotate, pg_url, old_a, new_a)
        finally:
            await store.close()
    r = asyncio.run(refused_while_connected())
    assert r.returncode == 2 and "a running authority has" in r.stderr and "stop every authority process" in r.stderr

    r = _rotate(pg_url, old_a, new_a)
    assert r.returncode == 0, r.stderr
    assert "2 in meta, 5000 in tokens" in r.stdout and "***" not in r.stdout
    r = _rotate(pg_url, old_d, new_d, service="discharger")
    assert r.returncode == 0, r.stderr
    assert "1 in meta, 2 in keys" in r.stdout

    async def opens_with(service: str, key: bytes) -> bool:
        opener = authority_store if service == "authority" else discharger_store
        store = await opener(pg_url)
        try:
            await MasterKey(key).check(store, pg_url)
            if service == "discharger":
                keys = await TicketKeys.load(store, MasterKey(key))
                assert [k["kid"] for k in keys.public_keys()] == kids
            else:
                ks = RootKeys(key)
                await ks.load_user_key(store)
                row = (await store.load_token(f"{4999:032x}"))
                assert row is not None and ks.initial_signature(row[0].id, row[0].sealed_key, b"id") is not None
            return True
        except Exception:
            return False
        finally:
            await store.close()
    assert asyncio.run(opens_with("authority", read_key_file(new_a)))
    assert not asyncio.run(opens_with("authority", a_key))
    assert asyncio.run(opens_with("discharger", read_key_file(new_d)))
    assert not asyncio.run(opens_with("discharger", d_key))
