"""The SQLite base both services' stores build on: connections, durable group commit,
versioned migrations, and the tables every service has (meta, admins, audit).

Writes go through one plain sqlite3 connection on its own thread, in WAL mode with
synchronous=FULL: a whole batch of queued writes runs there in one call and one commit, and
each caller resumes only after that commit is on disk. Reads use an aiosqlite connection and
see only committed data. Write functions take the sqlite3 connection and are synchronous.

This is the only module, with the services' `store/sqlite.py`, that speaks SQLite.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiosqlite

from clients.tokens import ADMIN, secret_digest
from server.audit import AuditFor, AuditRecord, AuditRow
from server.groupcommit import GroupCall
from server.store import RESEAL_PAGE, Resealed, Resealing, StoreError

T = TypeVar("T")
Change = TypeVar("Change")

# Version 1 is the schema Sable 0.1.0 created, so its databases need no change.
COMMON_V1 = """
CREATE TABLE IF NOT EXISTS admins (hash BLOB PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT,
    client TEXT,
    token_id TEXT,
    parent TEXT,
    org TEXT,
    user TEXT,
    detail TEXT
);
"""




def table_names(path: str | Path) -> set[str]:
    """The tables a SQLite file holds (which service's data it is). Opened read-write, so
    closing the last connection removes the -shm file (a read-only one leaves it, and the
    file would then look open by a service)."""
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def _statements(script: str) -> list[str]:
    """A migration script as single statements (executescript would commit on its own).
    A `;` ends a statement only where SQLite agrees it is complete (not inside a string or
    a trigger body)."""
    out, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n\t;"):
                out.append(current.strip())
            current = ""
    if current.strip(" \n\t;"):
        out.append(current.strip())
    return out


def _wal(conn: sqlite3.Connection, timeout: float = 10.0) -> None:
    """Switch to WAL. SQLite applies no busy timeout to this switch, so wait here while a
    process starting beside us holds the new file's lock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Database:
    """Subclasses list their schema as `MIGRATIONS`: entry N-1 takes the database to version N."""

    MIGRATIONS: ClassVar[Sequence[str]] = ()

    def __init__(self, writer: sqlite3.Connection, pool: ThreadPoolExecutor, reader: aiosqlite.Connection,
                 path: str):
        self.path = path
        self._w = writer
        self._pool = pool  # one thread: the writer connection is only ever used from it
        self._r = reader
        self._writes: GroupCall[Callable[[sqlite3.Connection], Any], Any] = GroupCall(self._run_batch)
        self._open_elsewhere = False
        self.commit_observer: Callable[[float], None] | None = None  # told each COMMIT's duration (metrics)

    @classmethod
    def schema_version(cls) -> int:
        return len(cls.MIGRATIONS)

    @classmethod
    async def open(cls: type[T], path: str, migrate: bool = True) -> T:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        db_cls: Any = cls
        # A WAL database keeps its -shm file while any process has it open (and after a
        # crash, until it is next opened and closed): look before we open it ourselves.
        open_elsewhere = Path(path + "-shm").exists()

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout=10000")
                _wal(conn)
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                db_cls._migrate(conn, path, apply=migrate)
            except BaseException:
                conn.close()
                raise
            return conn

        reader = None
        try:
            writer = await loop.run_in_executor(pool, connect)
        except StoreError:
            pool.shutdown()
            raise
        except Exception as e:  # sqlite3.Error and OSError alike: say which file
            pool.shutdown()
            folder = Path(path).parent
            if not folder.is_dir():  # not made for you: a mistyped folder would start an empty database
                raise StoreError(f"cannot open database {path}: the folder {folder} does not exist "
                                 "(create it, or choose another with --data-dir or --db)") from None
            raise StoreError(f"cannot open database {path}: {e}") from None
        try:
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute("PRAGMA query_only=ON")
        except Exception as e:
            if reader is not None:
                await reader.close()
            await loop.run_in_executor(pool, writer.close)
            pool.shutdown()
            raise StoreError(f"cannot open database {path}: {e}") from None
        db = db_cls(writer, pool, reader, path)
        db._open_elsewhere = open_elsewhere
        return db

    @classmethod
    def _migrate(cls, conn: sqlite3.Connection, path: str, apply: bool = True) -> tuple[int, int]:
        """Bring the schema to this build's version in one transaction (only check it unless
        `apply`). BEGIN IMMEDIATE takes SQLite's write lock, so processes starting together
        upgrade it exactly once. Returns (version found, version now)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
            row = conn.execute("SELECT v FROM meta WHERE k = 'schema_version'").fetchone()
            current, wanted = (int(row[0]) if row else 0), cls.schema_version()
            if current > wanted:
                raise StoreError(f"database {path} has schema version {current}, newer than this build's "
                                 f"{wanted}: upgrade Sable")
            if not apply:
                wanted = current
            for script in cls.MIGRATIONS[current:wanted]:
                for statement in _statements(script):
                    conn.execute(statement)
            if current != wanted:
                conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema_version', ?)", (str(wanted).encode(),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return current, wanted

    async def migrate(self) -> tuple[int, int]:
        """Upgrade the open database to this build's schema. Returns (from, to)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._migrate, self._w, self.path)

    async def stored_version(self) -> int:
        """The schema version the file records (0 when it holds nothing of ours)."""
        try:
            row = await self._one("SELECT v FROM meta WHERE k = 'schema_version'")
        except sqlite3.OperationalError:  # no meta table yet
            return 0
        return int(row[0]) if row else 0

    async def ping(self) -> bool:
        """Whether the database answers and holds the schema this build serves."""
        try:
            return await self.stored_version() == self.schema_version()
        except (sqlite3.Error, OSError):
            return False

    async def watch(self, channel: str, wake: Callable[[], None]) -> None:
        """No notifications on SQLite: every process on the file polls (see the feed)."""

    def listening(self) -> bool:
        return False

    async def close(self) -> None:
        await self._writes.drained()
        await self._r.close()
        await asyncio.get_running_loop().run_in_executor(self._pool, self._w.close)
        self._pool.shutdown()

    # --- writes: group commit ----------------------------------------------------------------

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` (synchronous, on the writer thread) in a write transaction; its commit
        is durable when this returns.

        Group commit: writes that arrive while a transaction is committing are queued, and the
        next transaction runs them all, so one fsync serves many writers. If one of them raises,
        the batch is rolled back and each is run again on its own, so only that one fails.
        """
        return await self._writes(fn)

    async def _run_batch(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._batch_sync, fns)

    def _batch_sync(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list:
        """On the writer thread: the whole batch in one transaction, one fsync at its COMMIT."""
        self._w.execute("BEGIN IMMEDIATE")
        try:
            results = [fn(self._w) for fn in fns]
        except BaseException:
            self._w.execute("ROLLBACK")
            raise
        started = time.perf_counter()
        self._w.execute("COMMIT")
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - started)
        return results

    # --- reads -------------------------------------------------------------------------------

    async def _one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        async with self._r.execute(sql, tuple(args)) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list:
        async with self._r.execute(sql, tuple(args)) as cur:
            return list(await cur.fetchall())

    # --- what every service stores -------------------------------------------------------------

    @classmethod
    def _audit_for(cls, conn: sqlite3.Connection, audit: AuditFor[Change], change: Change) -> None:
        """Store the record `audit` makes of `change` (if any) in this transaction."""
        record = audit(change)
        if record is not None:
            cls._audit(conn, [record])

    @staticmethod
    def _audit(conn: sqlite3.Connection, records: list[AuditRecord]) -> None:
        conn.executemany(
            "INSERT INTO audit (at, event, outcome, request_id, client, token_id, parent, org, user, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.at, r.event, r.outcome, r.request_id, r.client, r.token_id, r.parent, r.org, r.user,
                 json.dumps(r.detail) if r.detail else None)
                for r in records
            ],
        )

    async def write_audit(self, records: list[AuditRecord]) -> None:
        if records:
            await self._tx(lambda c: self._audit(c, records))

    async def audit_rows(self, event: str | None = None) -> list[AuditRow]:
        """The audit trail, oldest first; only `event` rows if given."""
        cols = "seq, at, event, outcome, request_id, client, token_id, parent, org, user, detail"
        if event is None:
            rows = await self._all(f"SELECT {cols} FROM audit ORDER BY seq")
        else:
            rows = await self._all(f"SELECT {cols} FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10]) if r[10] else None)
                for r in rows]

    async def get_meta(self, key: str) -> bytes | None:
        row = await self._one("SELECT v FROM meta WHERE k = ?", (key,))
        return row[0] if row else None

    async def ensure_meta(self, key: str, value: bytes) -> bytes:
        """Store `value` under `key` unless one is there already; return the stored value.
        Atomic, so two processes starting together agree on one value."""
        def run(c: sqlite3.Connection) -> bytes:
            c.execute("INSERT OR IGNORE INTO meta (k, v) VALUES (?, ?)", (key, value))
            return c.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()[0]
        return await self._tx(run)

    async def add_admin(self, digest: bytes, now: int) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR IGNORE INTO admins (hash, created_at) VALUES (?, ?)", (digest, now))
        await self._tx(run)

    async def list_admins(self) -> list[tuple[bytes, int]]:
        return [(bytes(r[0]), r[1]) for r in await self._all("SELECT hash, created_at FROM admins ORDER BY created_at")]

    async def remove_admin(self, digest: bytes) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM admins WHERE hash = ?", (digest,)).rowcount == 1
        return await self._tx(run)

    async def is_admin(self, credential: str | None) -> bool:
        """Whether this is a registered admin credential (`sable_adm_...`), compared by digest."""
        if not credential or not credential.startswith(ADMIN):
            return False
        digest = secret_digest(credential)
        return await self._one("SELECT 1 FROM admins WHERE hash = ?", (digest,)) is not None

    # --- operations ------------------------------------------------------------------------------

    async def snapshot(self, tables: Sequence[tuple[str, Sequence[str]]]) -> dict[str, list[tuple]]:
        """Every row of `tables`, read in one transaction: one consistent snapshot (WAL)."""
        out: dict[str, list[tuple]] = {}
        await self._r.execute("BEGIN")
        try:
            for name, cols in tables:
                quoted = ", ".join(f'"{c}"' for c in cols)
                out[name] = [tuple(r) for r in await self._all(f"SELECT {quoted} FROM {name}")]
        finally:
            await self._r.execute("COMMIT")
        return out

    async def load(self, tables: Sequence[tuple[str, Sequence[str]]], data: dict[str, list[tuple]]) -> None:
        """Insert rows as given (ids, sequence numbers and all) in one transaction."""
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM meta WHERE k = 'schema_version'")  # the source's comes with the data
            for name, cols in tables:
                quoted = ", ".join(f'"{c}"' for c in cols)
                marks = ", ".join("?" * len(cols))
                c.executemany(f"INSERT INTO {name} ({quoted}) VALUES ({marks})", data[name])
        await self._tx(run)

    async def row_count(self, tables: Sequence[tuple[str, Sequence[str]]]) -> int:
        """Rows in `tables`, not counting the schema version."""
        total = 0
        for name, _ in tables:
            where = " WHERE k <> 'schema_version'" if name == "meta" else ""
            total += (await self._one(f"SELECT COUNT(*) FROM {name}{where}"))[0]
        return total

    async def in_use(self) -> bool:
        """Whether another process had the file open when we opened it."""
        return self._open_elsewhere

    async def reseal(self, columns, fn, audit: AuditRecord, progress=None) -> Resealed:
        """Every value in `columns` replaced by `fn(column, value)`, in one transaction that
        holds SQLite's write lock throughout (see `server.store.ServiceStore.reseal`). Pages go
        in rowid order, the order rows lie in the file."""
        def run(c: sqlite3.Connection) -> Resealed:
            work = Resealing(fn, progress)
            for col in columns:
                where = f" AND ({col.where})" if col.where else ""
                work.column(col, c.execute(f"SELECT COUNT(*) FROM {col.table} WHERE 1 = 1{where}").fetchone()[0])
                last = -1
                while page := c.execute(f"SELECT rowid, {col.key}, {col.column} FROM {col.table}"
                                        f" WHERE rowid > ?{where} ORDER BY rowid LIMIT {RESEAL_PAGE}", (last,)).fetchall():
                    c.executemany(f"UPDATE {col.table} SET {col.column} = ? WHERE rowid = ?", work.page(page))
                    last = page[-1][0]
            resealed = work.finish(audit)
            self._audit(c, [audit])
            return resealed
        # Not through group commit: a failure must not run the whole pass a second time.
        return (await self._run_batch([run]))[0]

    async def integrity_ok(self) -> bool:
        row = await self._one("PRAGMA integrity_check")
        return row is not None and row[0] == "ok"

    async def backup(self, path: str) -> None:
        """An online, consistent copy of the database file at `path`."""
        def run() -> None:
            dst = sqlite3.connect(path)
            try:
                self._w.backup(dst)
            finally:
                dst.close()
        await asyncio.get_running_loop().run_in_executor(self._pool, run)
