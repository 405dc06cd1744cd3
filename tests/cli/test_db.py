"""`sable db status|upgrade` on both backends, in-process through click's runner."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from click.testing import CliRunner

from authority.store import open_store as authority_store
from authority.store.sqlite import SqliteStore as AuthoritySqlite
from cli.main import main
from discharger.store import open_store as discharger_store
from discharger.store.sqlite import SqliteStore as DischargerSqlite

D = DischargerSqlite.schema_version()  # the discharger's schema grows with its features
A = AuthoritySqlite.schema_version()


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_status_of_a_fresh_postgres_database_then_upgrade(pg_url):
    r = run("db", "status", "--db", pg_url)
    assert r.exit_code == 0, r.output
    assert f"authority: schema version 0, this build {A}: empty" in r.output
    assert f"discharger: schema version 0, this build {D}: empty" in r.output

    r = run("db", "upgrade", "--db", pg_url)
    assert r.exit_code == 0, r.output
    assert f"authority: schema version 0 -> {A}" in r.output and f"discharger: schema version 0 -> {D}" in r.output
    r = run("db", "upgrade", "--db", pg_url, "--service", "authority")
    assert r.output.strip() == f"authority: schema version {A}, nothing to do"
    assert f"authority: schema version {A}, this build {A}: up to date" in run("db", "status", "--db", pg_url).output


def test_status_of_a_sqlite_file_knows_whose_it_is(tmp_path):
    async def make():
        for opener, name in ((authority_store, "a.db"), (discharger_store, "d.db")):
            store = await opener(str(tmp_path / name))
            await store.close()
    asyncio.run(make())
    r = run("db", "status", "--db", str(tmp_path / "a.db"))
    assert r.exit_code == 0 and f"authority: schema version {A}, this build {A}: up to date" in r.output
    r = run("db", "status", "--db", str(tmp_path / "d.db"))
    assert r.exit_code == 0 and f"discharger: schema version {D}, this build {D}: up to date" in r.output


def test_a_newer_schema_is_reported_and_refused(tmp_path):
    path = tmp_path / "authority.db"
    asyncio.run(_create(str(path)))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET v = '9' WHERE k = 'schema_version'")
    conn.commit()
    conn.close()
    r = run("db", "upgrade", "--db", str(path))
    assert r.exit_code != 0
    assert f"schema version 9, newer than this build's {A}" in r.output
    assert "Traceback" not in r.output


async def _create(path: str) -> None:
    store = await authority_store(path)
    await store.close()


@pytest.mark.parametrize("args", [["--db", "/no/such/file.db"], ["--db", "postgresql://u:pw-123@127.0.0.1:1/x"]])
def test_bad_locations_are_clear_errors(args):
    r = run("db", "status", *args)
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "pw-123" not in r.output


def test_admin_create_list_revoke(tmp_path):
    import asyncio as aio

    from clients import tokens as tk

    async def make():
        for opener, name in ((authority_store, "authority.db"), (discharger_store, "discharger.db")):
            store = await opener(str(tmp_path / name))
            await store.close()
    aio.run(make())
    r = run("admin", "create", "--data-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    credential = r.stdout.strip().splitlines()[0]
    admin_id = tk.secret_digest(credential).hex()[:12]
    r = run("admin", "list", "--data-dir", str(tmp_path))
    assert r.output.count(admin_id) == 2 and credential not in r.output  # in both databases, by id only

    async def accepted() -> list[bool]:
        out = []
        for opener, name in ((authority_store, "authority.db"), (discharger_store, "discharger.db")):
            store = await opener(str(tmp_path / name))
            out.append(await store.is_admin(credential))
            await store.close()
        return out
    assert aio.run(accepted()) == [True, True]
    r = run("admin", "revoke", admin_id[:10], "--authority-db", str(tmp_path / "authority.db"))
    assert r.exit_code == 0 and "removed admin" in r.output
    assert aio.run(accepted()) == [False, True]  # only where it was revoked
    r = run("admin", "revoke", admin_id, "--authority-db", str(tmp_path / "authority.db"))
    assert r.exit_code == 1
    r = run("admin", "revoke", "xyz", "--data-dir", str(tmp_path))
    assert r.exit_code == 2
