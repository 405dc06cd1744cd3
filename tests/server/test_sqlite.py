"""Unit tests for `server.sqlite.Database`: migrations, group commit, meta, admins, audit and
operations, on real SQLite files under `tmp_path`."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from clients import tokens
from clients.tokens import secret_digest
from server.audit import AuditRecord
from server.sqlite import COMMON_V1, Database
from server.store import StoreError

V1 = COMMON_V1 + "CREATE TABLE t (x INTEGER);"
V2 = "ALTER TABLE t ADD COLUMN y INTEGER NOT NULL DEFAULT 7;"


class OneTable(Database):
    MIGRATIONS = (V1,)


class TwoVersions(Database):
    MIGRATIONS = (V1, V2)


class ThreeVersions(Database):
    MIGRATIONS = (V1, V2, "CREATE TABLE u (z INTEGER);")


class CountsRuns(Database):
    """Its migration leaves one row in `runs` each time it runs."""

    MIGRATIONS = (COMMON_V1 + "CREATE TABLE runs (n INTEGER); INSERT INTO runs (n) VALUES (1);",)


class Batches(OneTable):
    """Records the size of each batch the writer thread commits (instrumentation only)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []

    def _batch_sync(self, fns):
        self.batch_sizes.append(len(fns))
        return super()._batch_sync(fns)


def insert(x: int):
    """A write function that inserts `x` and returns it doubled."""
    def run(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return 2 * x
    return run


def insert_then_fail(x: int):
    def run(c: sqlite3.Connection) -> int:
        c.execute("INSERT INTO t (x) VALUES (?)", (x,))
        raise ValueError(f"write {x} fails")
    return run


async def xs(db: Database) -> list[int]:
    return [r[0] for r in await db._all("SELECT x FROM t ORDER BY x")]


def admin_credential() -> str:
    return tokens.encode(tokens.ADMIN, os.urandom(32))


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "test.db")


@pytest.fixture
async def db(path):
    database = await OneTable.open(path)
    yield database
    await database.close()


# --- migrations ------------------------------------------------------------------------------


async def test_new_file_gets_schema_version_of_this_build(path):
    for cls in (OneTable, TwoVersions, ThreeVersions):
        p = f"{path}.{cls.__name__}"
        database = await cls.open(p)
        assert await database.get_meta("schema_version") == str(len(cls.MIGRATIONS)).encode()
        assert cls.schema_version() == len(cls.MIGRATIONS)
        await database.close()


async def test_reopen_is_a_no_op(path):
    first = await CountsRuns.open(path)
    await first.close()
    again = await CountsRuns.open(path)
    assert await again.get_meta("schema_version") == b"1"
    assert await again._all("SELECT n FROM runs") == [(1,)]
    await again.close()


async def test_newer_database_is_refused_naming_both_versions(path):
    await (await ThreeVersions.open(path)).close()
    with pytest.raises(StoreError) as info:
        await OneTable.open(path)
    assert "schema version 3" in info.value.message
    assert "build's 1" in info.value.message
    reopened = await ThreeVersions.open(path)  # the refusal changed nothing
    assert await reopened.get_meta("schema_version") == b"3"
    await reopened.close()


async def test_second_migration_upgrades_in_place_and_keeps_rows(path):
    old = await OneTable.open(path)
    await asyncio.gather(*(old._tx(insert(x)) for x in (1, 2, 3)))
    await old.close()

    new = await TwoVersions.open(path)
    assert await new.get_meta("schema_version") == b"2"
    assert await new._all("SELECT x, y FROM t ORDER BY x") == [(1, 7), (2, 7), (3, 7)]
    await new.close()


def empty_wal_file(path: str) -> None:
    """A database file with no schema yet, already in WAL mode (a brand-new file is covered below)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


async def test_concurrent_opens_migrate_once(path):
    empty_wal_file(path)
    a, b = await asyncio.gather(CountsRuns.open(path), CountsRuns.open(path))
    try:
        assert await a._all("SELECT n FROM runs") == [(1,)]
        assert await b.get_meta("schema_version") == b"1"
    finally:
        await a.close()
        await b.close()


async def test_open_of_a_new_file_waits_for_another_writer(path):
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.1, other.execute, "COMMIT")
    try:
        database = await CountsRuns.open(path)
        assert await database._all("SELECT n FROM runs") == [(1,)]
        await database.close()
    finally:
        await asyncio.sleep(0.15)  # let the timer commit before closing
        other.close()


async def test_missing_directory_is_a_store_error_naming_the_path(tmp_path):
    path = str(tmp_path / "no-such-dir" / "x.db")
    with pytest.raises(StoreError) as info:
        await OneTable.open(path)
    assert path in info.value.message and "no-such-dir does not exist" in info.value.message
    assert "--data-dir" in info.value.message and info.value.code == "unavailable"


async def test_migration_statement_may_contain_semicolons(path):
    class WithTrigger(Database):
        MIGRATIONS = (V1 + "CREATE TABLE log (x INTEGER);"
                      "CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO log (x) VALUES (new.x); END;",)

    database = await WithTrigger.open(path)
    try:
        await database._tx(insert(5))
        assert await database._all("SELECT x FROM log") == [(5,)]
    finally:
        await database.close()


# --- group commit ----------------------------------------------------------------------------


async def test_concurrent_writes_all_land_and_answer_their_callers(path):
    database = await Batches.open(path)
    try:
        results = await asyncio.gather(*(database._tx(insert(x)) for x in range(50)))
        assert results == [2 * x for x in range(50)]
        assert await xs(database) == list(range(50))
        assert max(database.batch_sizes) > 1, "writes queued together should share a commit"
        assert sum(database.batch_sizes) == 50
    finally:
        await database.close()


async def test_failing_write_fails_only_its_caller(path):
    database = await Batches.open(path)
    try:
        results = await asyncio.gather(
            database._tx(insert(1)), database._tx(insert_then_fail(2)), database._tx(insert(3)),
            return_exceptions=True,
        )
        assert results[0] == 2 and results[2] == 6
        assert isinstance(results[1], ValueError) and str(results[1]) == "write 2 fails"
        assert await xs(database) == [1, 3]  # the failing write's own insert was rolled back
        assert database.batch_sizes[0] == 3  # they did share a batch
    finally:
        await database.close()


async def test_writer_keeps_working_after_a_failure(db):
    with pytest.raises(ValueError):
        await db._tx(insert_then_fail(1))
    assert await db._tx(insert(2)) == 4
    assert await xs(db) == [2]


# --- meta, admins, audit ---------------------------------------------------------------------


async def test_ensure_meta_keeps_the_first_value(db):
    assert await db.get_meta("k") is None
    assert await db.ensure_meta("k", b"first") == b"first"
    assert await db.ensure_meta("k", b"second") == b"first"
    assert await db.get_meta("k") == b"first"


async def test_ensure_meta_concurrent_callers_agree(db):
    values = await asyncio.gather(*(db.ensure_meta("k", bytes([i])) for i in range(10)))
    assert len(set(values)) == 1
    assert await db.get_meta("k") == values[0]


async def test_admins_are_matched_by_digest(db):
    admin, other = admin_credential(), admin_credential()
    await db.add_admin(secret_digest(admin), now=100)
    await db.add_admin(secret_digest(admin), now=200)  # idempotent
    assert await db.is_admin(admin)
    assert not await db.is_admin(other)
    assert not await db.is_admin(None)
    assert not await db.is_admin("")
    assert await db._all("SELECT created_at FROM admins") == [(100,)]


async def test_only_admin_prefixed_credentials_count(db):
    session = tokens.encode(tokens.SESSION, os.urandom(32))
    await db.add_admin(secret_digest(session), now=1)
    assert not await db.is_admin(session)


async def test_audit_round_trip(db):
    mint = AuditRecord("mint", request_id="r1", client="10.0.0.1", token_id="a" * 32, parent="b" * 32,
                       org="acme", user="alice", detail={"caveats": 2, "names": ["x", "y"]}, at=123.5)
    revoke = AuditRecord("revoke", outcome="denied")
    await db.write_audit([mint, revoke])
    await db.write_audit([])

    rows = await db.audit_rows()
    assert [r.event for r in rows] == ["mint", "revoke"]
    assert rows[0].seq < rows[1].seq
    (got,) = await db.audit_rows("mint")
    assert (got.at, got.event, got.outcome, got.request_id, got.client, got.token_id, got.parent, got.org,
            got.user) == (123.5, "mint", "ok", "r1", "10.0.0.1", "a" * 32, "b" * 32, "acme", "alice")
    assert got.detail == {"caveats": 2, "names": ["x", "y"]}
    (other,) = await db.audit_rows("revoke")
    assert other.outcome == "denied" and other.detail is None
    assert await db.audit_rows("nothing") == []


# --- operations ------------------------------------------------------------------------------


async def test_backup_opens_with_the_same_rows(db, tmp_path):
    await asyncio.gather(*(db._tx(insert(x)) for x in (4, 5, 6)))
    await db.ensure_meta("k", b"v")
    copy_path = str(tmp_path / "copy.db")
    await db.backup(copy_path)

    copy = await OneTable.open(copy_path)
    try:
        assert await xs(copy) == [4, 5, 6]
        assert await copy.get_meta("k") == b"v"
        assert await copy.integrity_ok()
    finally:
        await copy.close()


async def test_integrity_ok(db):
    assert await db.integrity_ok() is True
