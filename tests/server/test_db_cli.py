"""`sable db status|upgrade` on both backends, in-process through click's runner."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from click.testing import CliRunner

from authority.store import open_store as authority_store
from clients.cli.main import main
from discharger.store import open_store as discharger_store


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_status_of_a_fresh_postgres_database_then_upgrade(pg_url):
    r = run("db", "status", "--db", pg_url)
    assert r.exit_code == 0, r.output
    assert "authority: schema version 0, this build 3: empty" in r.output
    assert "discharger: schema version 0, this build 3: empty" in r.output

    r = run("db", "upgrade", "--db", pg_url)
    assert r.exit_code == 0, r.output
    assert "authority: schema version 0 -> 3" in r.output and "discharger: schema version 0 -> 3" in r.output
    r = run("db", "upgrade", "--db", pg_url, "--service", "authority")
    assert r.output.strip() == "authority: schema version 3, nothing to do"
    assert "authority: schema version 3, this build 3: up to date" in run("db", "status", "--db", pg_url).output


def test_status_of_a_sqlite_file_knows_whose_it_is(tmp_path):
    async def make():
        for opener, name in ((authority_store, "a.db"), (discharger_store, "d.db")):
            store = await opener(str(tmp_path / name))
            await store.close()
    asyncio.run(make())
    r = run("db", "status", "--db", str(tmp_path / "a.db"))
    assert r.exit_code == 0 and "authority: schema version 3, this build 3: up to date" in r.output
    r = run("db", "status", "--db", str(tmp_path / "d.db"))
    assert r.exit_code == 0 and "discharger: schema version 3, this build 3: up to date" in r.output


def test_a_newer_schema_is_reported_and_refused(tmp_path):
    path = tmp_path / "authority.db"
    asyncio.run(_create(str(path)))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET v = '9' WHERE k = 'schema_version'")
    conn.commit()
    conn.close()
    r = run("db", "upgrade", "--db", str(path))
    assert r.exit_code != 0
    assert "schema version 9, newer than this build's 3" in r.output
    assert "Traceback" not in r.output


async def _create(path: str) -> None:
    store = await authority_store(path)
    await store.close()


@pytest.mark.parametrize("args", [["--db", "/no/such/file.db"], ["--db", "postgresql://u:pw-123@127.0.0.1:1/x"]])
def test_bad_locations_are_clear_errors(args):
    r = run("db", "status", *args)
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "pw-123" not in r.output
