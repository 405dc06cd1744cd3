"""`sable db copy` between SQLite and PostgreSQL, starting from the 0.1.0 fixture: every row
and feed position survives the round trip, tokens keep verifying, and a feed reader's
cursor stays valid; non-empty targets and open sources are refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

from click.testing import CliRunner

from authority.store import TABLES, open_store
from cli.main import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "v0.1.0"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def source(tmp_path) -> str:
    path = tmp_path / "authority.db"
    shutil.copy(FIXTURE / "authority.db", path)
    os.chmod(path, 0o600)
    assert run("db", "upgrade", "--db", str(path)).exit_code == 0  # copy wants this build's schema
    return str(path)


async def everything(location: str) -> dict:
    store = await open_store(location, migrate=False, role="tool")
    try:
        return {name: sorted(map(repr, rows)) for name, rows in (await store.snapshot(TABLES)).items()}
    finally:
        await store.close()


def test_round_trip_sqlite_postgres_sqlite_keeps_every_row(tmp_path, pg_url):
    src = source(tmp_path)
    r = run("db", "copy", "--from", src, "--to", pg_url)
    assert r.exit_code == 0, r.output
    assert "last feed cursor copied: 2" in r.output and "2 revocations" in r.output
    assert f"reading {src} (one snapshot)..." in r.output and "rows to postgresql://" in r.output  # progress
    back = str(tmp_path / "back" / "authority.db")
    (tmp_path / "back").mkdir()
    r = run("db", "copy", "--from", pg_url, "--to", back, "--service", "authority")
    assert r.exit_code == 0, r.output
    original, via_pg, returned = (asyncio.run(everything(x)) for x in (src, pg_url, back))
    assert original == via_pg == returned
    assert len(original["tokens"]) == 3 and len(original["audit"]) == 6


async def test_copied_database_serves_the_same_feed_and_tokens(tmp_path, pg_url, aiohttp_client):
    from authority.app import create_app
    from authority.config import AuthorityConfig
    from server.masterkey import load_master_key

    src = await asyncio.to_thread(source, tmp_path)
    assert (await asyncio.to_thread(run, "db", "copy", "--from", src, "--to", pg_url)).exit_code == 0
    made = json.loads((FIXTURE / "tokens.json").read_text())
    key = FIXTURE / "master.key"
    shutil.copy(key, tmp_path / "master.key")
    os.chmod(tmp_path / "master.key", 0o600)
    config = AuthorityConfig(db_path=pg_url, master_key=load_master_key(str(tmp_path / "master.key")),
                             public_url="http://127.0.0.1:18700")
    client = await aiohttp_client(create_app(config))
    resp = await client.post("/v1/verify", json={"tokens": [made["host_bound"]], "access": {
        "org": "acme", "action": "r", "app": "orders", "host": "worker-7"}})
    assert resp.status == 200
    # A reader that had consumed entry 1 on the old database gets exactly entry 2 here.
    page = await (await client.get("/v1/revocations?after=1")).json()
    assert page["cursor"] == 2 and [e["id"] for e in page["revoked"]] == [made["kept"]["id"]]
    # New revocations continue the numbering.
    resp = await client.post("/v1/revoke", json={"tokens": [made["host_bound"]]})  # by value: no admin needed
    assert resp.status == 200
    page = await (await client.get("/v1/revocations?after=2")).json()
    assert page["cursor"] == 3


def test_refuses_a_non_empty_target_and_an_open_source(tmp_path, pg_url):
    src = source(tmp_path)
    assert run("db", "copy", "--from", src, "--to", pg_url).exit_code == 0
    r = run("db", "copy", "--from", src, "--to", pg_url)
    assert r.exit_code != 0 and "not empty" in r.output
    r = run("db", "copy", "--from", src, "--to", src)
    assert r.exit_code != 0 and "exists" in r.output

    Path(src + "-shm").write_bytes(b"")  # what a running service leaves beside the file
    r = run("db", "copy", "--from", src, "--to", str(tmp_path / "new.db"))
    assert r.exit_code != 0 and "--force" in r.output
    r = run("db", "copy", "--from", src, "--to", str(tmp_path / "new.db"), "--force")
    assert r.exit_code == 0, r.output


def test_postgres_source_needs_a_service_name(pg_url):
    r = run("db", "copy", "--from", pg_url, "--to", "/tmp/x.db")
    assert r.exit_code != 0 and "--service" in r.output
