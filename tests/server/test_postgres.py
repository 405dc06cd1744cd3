"""`server.postgres` against a real throwaway cluster: start-up errors that name the URL
without its password, schema versions under a lock, durable commits, LISTEN, and an outage
turning into `StoreError` (503) rather than a hang."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from authority.store.postgres import PostgresStore
from server.postgres import redact
from server.store import StoreError
from tests.support import free_port
from tests.support.postgres import PASSWORD, PASSWORD_ROLE


def test_driver_errors_are_described_without_class_names():
    """SPEC §12: no exception class name in a message. A pooler answering with a protocol
    error at start-up was shown as `ProtocolViolationError: ...`."""
    from server.postgres import _describe

    violation = asyncpg.ProtocolViolationError("unsupported startup parameter: search_path")
    cases = [violation, asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
             asyncpg.InternalClientError("cannot switch to state 11"), OSError(), RuntimeError("x")]
    for error in cases:
        said = _describe(error)
        assert said and "Error" not in said and type(error).__name__ not in said, said
    assert "unsupported startup parameter: search_path" in _describe(violation)


def test_redact_hides_only_the_password():
    assert redact("postgresql://bob:hunter2@db:5432/x?sslmode=require") == "postgresql://bob:***@db:5432/x?sslmode=require"
    assert redact("postgresql://bob@db/x") == "postgresql://bob@db/x"
    assert redact("postgresql://db/x") == "postgresql://db/x"


async def test_unreachable_host_is_a_clear_error_fast():
    free_tcp_port = free_port()
    url = f"postgresql://bob:{PASSWORD}@127.0.0.1:{free_tcp_port}/x"
    started = time.monotonic()
    with pytest.raises(StoreError) as e:
        await PostgresStore.open(url)
    assert time.monotonic() - started < 5
    assert f"postgresql://bob:***@127.0.0.1:{free_tcp_port}/x" in e.value.message
    assert PASSWORD not in str(e.value)


async def test_wrong_password_is_named_and_not_shown(pg_cluster):
    url = f"postgresql://{PASSWORD_ROLE}:wrong-{PASSWORD}@127.0.0.1:{pg_cluster.port}/postgres"
    with pytest.raises(StoreError) as e:
        await PostgresStore.open(url)
    assert "password authentication failed" in e.value.message
    assert PASSWORD not in str(e.value) and "***" in e.value.message


async def test_missing_database_is_named(pg_cluster):
    with pytest.raises(StoreError, match="no such database"):
        await PostgresStore.open(pg_cluster.dsn("nope"))


async def test_right_password_works(pg_cluster):
    name = pg_cluster.new_database().rsplit("/", 1)[1]
    pg_cluster.psql(f"GRANT ALL ON DATABASE {name} TO {PASSWORD_ROLE}")
    pg_cluster.psql(f"ALTER DATABASE {name} OWNER TO {PASSWORD_ROLE}")
    store = await PostgresStore.open(f"postgresql://{PASSWORD_ROLE}:{PASSWORD}@127.0.0.1:{pg_cluster.port}/{name}")
    try:
        assert store.path.endswith(f"{PASSWORD_ROLE}:***@127.0.0.1:{pg_cluster.port}/{name}")
        assert await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize("source", ["PGPASSWORD", "PGPASSFILE", "~/.pgpass"])
async def test_the_password_may_come_from_the_environment_or_a_pgpass_file(pg_cluster, tmp_path, monkeypatch, source):
    name = pg_cluster.new_database().rsplit("/", 1)[1]
    pg_cluster.psql(f"ALTER DATABASE {name} OWNER TO {PASSWORD_ROLE}")
    url = f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{pg_cluster.port}/{name}"  # no password in it
    for var in ("PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(StoreError, match="password"):
        await PostgresStore.open(url)
    line = f"127.0.0.1:{pg_cluster.port}:{name}:{PASSWORD_ROLE}:{PASSWORD}\n"
    if source == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", PASSWORD)
    else:
        path = tmp_path / (".pgpass" if source == "~/.pgpass" else "elsewhere.pgpass")
        path.write_text(line)
        path.chmod(0o600)
        if source == "PGPASSFILE":
            monkeypatch.setenv("PGPASSFILE", str(path))
    store = await PostgresStore.open(url)
    try:
        assert await store.ping() and PASSWORD not in store.path
    finally:
        await store.close()


async def test_schema_is_created_once_by_concurrent_starts(pg_url):
    stores = await asyncio.gather(*[PostgresStore.open(pg_url) for _ in range(4)])
    try:
        version = PostgresStore.schema_version()
        assert [await s.stored_version() for s in stores] == [version] * 4
        assert await stores[0].migrate() == (version, version)  # nothing left to do
    finally:
        for s in stores:
            await s.close()


async def test_a_newer_schema_is_refused_naming_both_versions(pg_url):
    store = await PostgresStore.open(pg_url)
    async with store._tx() as c:
        await c.execute("UPDATE authority.meta SET v = '99' WHERE k = 'schema_version'")
    await store.close()
    with pytest.raises(StoreError, match=f"schema version 99, newer than this build's {PostgresStore.schema_version()}"):
        await PostgresStore.open(pg_url)


async def test_each_service_keeps_to_its_own_schema(pg_url):
    from discharger.store.postgres import PostgresStore as DischargerStore
    a, d = await PostgresStore.open(pg_url), await DischargerStore.open(pg_url)
    try:
        async with a._conn() as c:
            tables = {(r[0], r[1]) for r in await c.fetch(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('authority', 'discharger')")}
        assert ("authority", "tokens") in tables and ("discharger", "users") in tables
        assert ("authority", "users") not in tables and ("discharger", "tokens") not in tables
    finally:
        await a.close()
        await d.close()


async def test_commits_are_durable_even_when_the_database_default_is_not(pg_cluster, pg_url):
    name = pg_url.rsplit("/", 1)[1]
    pg_cluster.psql(f"ALTER DATABASE {name} SET synchronous_commit = off")
    store = await PostgresStore.open(pg_url)
    try:
        async with store._conn() as c:
            assert await c.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await store.close()
    pg_cluster.psql(f"ALTER DATABASE {name} SET synchronous_commit = remote_apply")
    store = await PostgresStore.open(pg_url)
    try:
        async with store._conn() as c:  # a stronger default is kept
            assert await c.fetchval("SHOW synchronous_commit") == "remote_apply"
    finally:
        await store.close()


async def test_notify_wakes_a_watcher_and_a_reconnect_wakes_it_too(pg_cluster, pg_url):
    store = await PostgresStore.open(pg_url)
    woken = asyncio.Event()
    try:
        await store.watch_feed(woken.set)
        await asyncio.wait_for(woken.wait(), 5)  # the first connect wakes (catch-up)
        woken.clear()
        conn = await asyncpg.connect(pg_url)
        await conn.execute("SELECT pg_notify('sable_feed', '')")
        await conn.close()
        await asyncio.wait_for(woken.wait(), 5)
        assert store.listening()

        woken.clear()
        pg_cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = 'sable-authority-service' AND pid <> pg_backend_pid()")
        await asyncio.wait_for(woken.wait(), 10)  # reconnected, and woke to catch up
    finally:
        await store.close()
